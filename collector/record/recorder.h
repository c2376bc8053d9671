// Recorder: turns the collector's own actions into ledger records, and keeps
// the ledger's write side healthy. Three ways in, by what waits on them:
//
//  - An action (a request, a review with its grant and decision, a revoke):
//    its records are gathered between Open and Close, then Commit appends
//    them as one batch with one sync on the committer thread and tells the
//    loop when they are durable. Nothing of an action takes effect before
//    that (promise 7, docs/DESIGN.md), and the loop never waits for a sync.
//  - A record of what happened (an agent connected, an alarm, refusals):
//    RecordLater appends it without anyone waiting; while the ledger refuses
//    writes it is kept (up to kMaxUnwritten) and written once it takes them
//    again, and what was dropped past that goes on the record as a count.
//  - Submissions made elsewhere (agents' batches) go to batcher() directly
//    and say so with CommitStarted/CommitEnded, so the ledger is recovered
//    only with no commit outstanding that could land after it.
//
// Owned by the loop thread (checked), except the unwritten records that the
// committer thread keeps (under unwritten_mu_) and the pending count.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "collector/ledger/batcher.h"
#include "collector/ledger/entry_batch.h"
#include "collector/ledger/ledger.h"
#include "collector/loop/dispatcher.h"
#include "collector/record/ledger_health.h"
#include "lib/status/status.h"
#include "lib/sync/mutex.h"

namespace latch::collector {

class Recorder {
 public:
  // `dir`: where LedgerHealth probes the disk (the data directory).
  Recorder(ledger::Ledger& ledger, const ledger::BatcherOptions& options, std::string dir,
           Dispatcher& loop);
  // Commits what is submitted; Commit's callbacks are then not run.
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  ledger::Batcher& batcher() { return *batcher_; }
  bool writable() const { return health_.writable(); }
  // Why writes are refused ("" while they are not).
  const std::string& reason() const { return health_.reason(); }
  const LedgerHealth& health() const { return health_; }
  // A commit failed: writes are refused until Maintain recovers the ledger.
  void NoteFailure(const Status& why) { health_.Failed(why); }

  // One workflow record, durable when this returns: for the start, before
  // the loop runs (the grant key in use).
  Status RecordNow(const std::string& action, const std::string& host, int64_t at_ns);

  // An action's records. Record adds one to the open action (refused while
  // the ledger refuses writes); Close hands the batch back.
  void Open();
  bool open() const { return open_.has_value(); }
  Status Record(const std::string& action, const std::string& host, int64_t at_ns);
  ledger::EntryBatch Close();
  // Appends `batch` with one sync (urgent: an action's grant waits for it),
  // off the loop; `done` runs on the loop with the outcome. A failure also
  // stops writes until the ledger is recovered.
  void Commit(ledger::EntryBatch batch, std::function<void(const Status&)> done);

  // A record nobody waits for: appended in the next batch, or kept while the
  // ledger refuses writes.
  void RecordLater(const std::string& action, const std::string& host);

  // A submission to batcher() made elsewhere, until its outcome is taken in.
  void CommitStarted() { pending_++; }
  void CommitEnded() { pending_--; }
  // Submissions whose outcome has not been taken in yet (a snapshot waits
  // for none: its state must be the ledger's at its size).
  int pending() const { return pending_.load(); }

  // Each turn of the loop: notices a failed commit, and while writes are
  // refused tries (once a second, with nothing pending) to take the ledger
  // back; true when it did, and the kept records are submitted again.
  bool Maintain();

  size_t unwritten() const;
  uint64_t unwritten_dropped() const { return unwritten_dropped_.load(); }
  static constexpr size_t kMaxUnwritten = 10000;

 private:
  struct UnwrittenRecord {
    std::string action, host;
  };
  // From either thread: a record that could not be written waits.
  void KeepUnwritten(UnwrittenRecord r);
  void WriteUnwritten();

  ledger::Ledger& ledger_;
  Dispatcher& loop_;
  LedgerHealth health_;
  std::unique_ptr<ledger::Batcher> batcher_;
  std::optional<ledger::EntryBatch> open_;
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> unwritten_dropped_{0};  // past kMaxUnwritten, all told
  mutable Mutex unwritten_mu_;
  std::deque<UnwrittenRecord> unwritten_ LATCH_GUARDED_BY(unwritten_mu_);
  // Dropped and not yet on the record (an ownRecordsDropped record says so
  // once writes resume).
  uint64_t dropped_unrecorded_ LATCH_GUARDED_BY(unwritten_mu_) = 0;
  int64_t first_dropped_ns_ LATCH_GUARDED_BY(unwritten_mu_) = 0;
  int64_t last_dropped_ns_ LATCH_GUARDED_BY(unwritten_mu_) = 0;
};

// The ledger envelope of a workflow record (a canonical WorkflowAction),
// added to `out`.
Status AddWorkflowRecord(const std::string& action, const std::string& host, int64_t at_ns,
                         ledger::EntryBatch* out);

// The wall clock, Unix ns: the time records carry.
int64_t WallClockNs();

}  // namespace latch::collector
