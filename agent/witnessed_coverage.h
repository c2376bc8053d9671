// WitnessedCoverage (issue 18): whether what the collector acknowledged to
// this agent is also in a checkpoint that witnesses the agent trusts
// cosigned. A receipt proves a record is in the collector's signed tree; it
// cannot prove that the tree is the one everybody else is shown. A
// witnessed checkpoint (a quorum of the agent's own witness keys) covering
// the record can: the witnesses cosign only checkpoints consistent with
// everything they cosigned before, for every collector that asks them. So
// records acknowledged but still not covered after `bound` (a collector
// that cannot get its history witnessed: a split view, or witnesses down),
// and a witnessed checkpoint inconsistent with the one the agent holds, are
// alarms.
//
// Plain logic, no I/O: CollectorLink feeds it and raises the alarms.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lib/status/status.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/cosignature.h"
#include "lib/tlog/sha256.h"
#include "lib/tlog/signed_note.h"

namespace latch::agent {

struct WitnessingOptions {
  std::vector<tlog::CosignatureVerifier> witnesses;  // empty: nothing demanded
  size_t quorum = 1;
  std::chrono::milliseconds bound{30000};
};

class WitnessedCoverage {
 public:
  using Clock = std::chrono::steady_clock;
  WitnessedCoverage(tlog::NoteVerifier ledger_key, WitnessingOptions options);

  bool enabled() const { return !options_.witnesses.empty(); }

  // A witnessed checkpoint the collector sent, with the consistency proof
  // between `proof_from` and its size, checked against `held` (the
  // checkpoint the agent holds; size 0: none yet). OK: it counts, and what
  // it covers is no longer waited for. Otherwise *alarm names an alarm
  // ("bad_checkpoint_signature", "bad_witness_cosignature",
  // "inconsistent_witnessed_checkpoint"), or is empty when the message
  // proves nothing either way (too few cosignatures by this agent's
  // witnesses, a proof from a size it does not hold).
  Status Offer(std::string_view note, uint64_t proof_from, std::span<const tlog::Hash> proof,
               const tlog::Checkpoint& held, std::string* alarm);
  // The collector acknowledged every record up to ledger index `index`.
  void Acknowledged(uint64_t index, Clock::time_point now);
  // Whether an acknowledged record has waited longer than the bound for a
  // witnessed checkpoint; *detail says which and how long.
  bool Overdue(Clock::time_point now, std::string* detail) const;

  uint64_t witnessed_size() const { return witnessed_size_; }
  uint64_t accepted() const { return accepted_; }
  uint64_t ignored() const { return ignored_; }

 private:
  void Prune();
  const tlog::NoteVerifier ledger_key_;
  const WitnessingOptions options_;
  uint64_t witnessed_size_ = 0;  // the largest witnessed checkpoint accepted
  // Acknowledgements not yet covered, oldest first: (through index, when).
  std::deque<std::pair<uint64_t, Clock::time_point>> waiting_;
  uint64_t accepted_ = 0, ignored_ = 0;
};

}  // namespace latch::agent
