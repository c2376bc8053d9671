#include "agent/witnessed_coverage.h"

#include "lib/tlog/proof.h"

namespace latch::agent {

WitnessedCoverage::WitnessedCoverage(tlog::NoteVerifier ledger_key, WitnessingOptions options)
    : ledger_key_(std::move(ledger_key)), options_(std::move(options)) {}

Status WitnessedCoverage::Offer(std::string_view note, uint64_t proof_from,
                                std::span<const tlog::Hash> proof, const tlog::Checkpoint& held,
                                std::string* alarm) {
  alarm->clear();
  tlog::Checkpoint w;
  Status s = tlog::OpenCheckpoint(note, ledger_key_, &w);
  if (!s.ok()) {
    *alarm = "bad_checkpoint_signature";
    return s;
  }
  std::vector<size_t> cosigned;
  s = tlog::FindCosignatures(note, options_.witnesses, &cosigned);
  if (!s.ok()) {
    *alarm = "bad_witness_cosignature";
    return s;
  }
  if (cosigned.size() < options_.quorum) {
    ignored_++;
    return Status::FailedPrecondition("witnessed checkpoint of size " + std::to_string(w.size) +
                                      " has " + std::to_string(cosigned.size()) + " of the " +
                                      std::to_string(options_.quorum) +
                                      " cosignatures this agent requires");
  }
  // Consistent with the checkpoint held: one is a prefix of the other.
  if (held.size > 0) {
    if (proof_from != held.size) {
      ignored_++;
      return Status::FailedPrecondition("witnessed checkpoint's proof is from size " +
                                        std::to_string(proof_from) + ", held size is " +
                                        std::to_string(held.size));
    }
    if (w.size == held.size) {
      s = w.root == held.root ? Status::Ok()
                              : Status::VerifyFailed(
                                    "the witnessed checkpoint has another root "
                                    "at the held size " +
                                    std::to_string(held.size));
    } else if (w.size < held.size) {
      s = tlog::VerifyConsistency(w.size, held.size, proof, w.root, held.root);
    } else {
      s = tlog::VerifyConsistency(held.size, w.size, proof, held.root, w.root);
    }
    if (!s.ok()) {
      *alarm = "inconsistent_witnessed_checkpoint";
      return s.WithContext("witnessed checkpoint of size " + std::to_string(w.size));
    }
  }
  accepted_++;
  if (w.size > witnessed_size_) witnessed_size_ = w.size;
  Prune();
  return Status::Ok();
}

void WitnessedCoverage::Acknowledged(uint64_t index, Clock::time_point now) {
  if (!enabled() || index < witnessed_size_) return;
  if (!waiting_.empty() && waiting_.back().first >= index) return;
  waiting_.emplace_back(index, now);
}

void WitnessedCoverage::Prune() {
  while (!waiting_.empty() && waiting_.front().first < witnessed_size_) waiting_.pop_front();
}

bool WitnessedCoverage::Overdue(Clock::time_point now, std::string* detail) const {
  if (waiting_.empty() || now - waiting_.front().second <= options_.bound) return false;
  const auto waited =
      std::chrono::duration_cast<std::chrono::seconds>(now - waiting_.front().second);
  *detail = "ledger index " + std::to_string(waiting_.front().first) + ", acknowledged " +
            std::to_string(waited.count()) +
            " s ago, is in no checkpoint this agent's witnesses cosigned (witnessed size " +
            std::to_string(witnessed_size_) + ")";
  return true;
}

}  // namespace latch::agent
