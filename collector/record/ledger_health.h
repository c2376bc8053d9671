// LedgerHealth: whether the ledger takes writes, and getting it back when it
// does not. A failed commit (a full or failing disk) used to stop the
// collector; now the collector stays up answering reads, refuses writes with
// the reason, and this retries about once a second: a probe write with sync
// under the ledger's directory, then Ledger::Recover(), which cuts the failed
// tail. The outage is logged once as an alert when it starts and once when it
// ends, and counted (issue 14; docs/OPERATIONS.md, "Faults").
//
// Owned by the collector's loop thread; not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "collector/ledger/ledger.h"
#include "lib/status/status.h"

namespace latch::collector {

class LedgerHealth {
 public:
  using Clock = std::chrono::steady_clock;
  explicit LedgerHealth(std::string dir) : dir_(std::move(dir)) {}

  bool writable() const { return writable_; }
  // Why writes are refused, for /healthz and API errors ("" while writable).
  const std::string& reason() const { return reason_; }
  uint64_t failures() const { return failures_; }  // failed commits
  uint64_t outages() const { return outages_; }    // times it stopped taking writes

  // A commit failed: from now on writes are refused until TryRecover succeeds.
  void Failed(const Status& why);
  // While not writable and at most once a second: when `idle` (no commit
  // outstanding that could still land after the ledger is taken back), probes
  // the disk and recovers the ledger. True when it takes writes again.
  bool TryRecover(ledger::Ledger& ledger, bool idle, Clock::time_point now = Clock::now());

 private:
  Status Probe() const;

  std::string dir_;
  bool writable_ = true;
  std::string reason_;
  uint64_t failures_ = 0;
  uint64_t outages_ = 0;
  Clock::time_point since_{};
  Clock::time_point next_try_{};
  std::string last_retry_error_;
};

}  // namespace latch::collector
