#include "agent/checkpoint_witness.h"

#include <filesystem>

#include "lib/storage/append_file.h"
#include "lib/tlog/proof.h"

namespace latch::agent {

Status CheckpointWitness::Open(const std::string& path, const tlog::NoteVerifier& ledger_key,
                               std::unique_ptr<CheckpointWitness>* out) {
  std::unique_ptr<CheckpointWitness> w(new CheckpointWitness());
  w->path_ = path;
  w->key_ = ledger_key;
  w->held_.origin = ledger_key.name();
  std::string note;
  Status s = storage::ReadWholeFile(path, &note);
  if (s.ok()) {
    LATCH_RETURN_IF_ERROR(
        tlog::OpenCheckpoint(note, ledger_key, &w->held_).WithContext("saved checkpoint " + path));
    w->note_ = note;
  } else if (s.code() != Status::Code::kNotFound) {
    return s;
  }
  *out = std::move(w);
  return Status::Ok();
}

Status CheckpointWitness::Advance(std::string_view note, uint64_t proof_from,
                                  std::span<const tlog::Hash> proof, tlog::Checkpoint* shown,
                                  std::string* alarm) {
  tlog::Checkpoint cp;
  Status s = tlog::OpenCheckpoint(note, key_, &cp);
  if (!s.ok()) {
    *alarm = "bad_checkpoint_signature";
    return s;
  }
  if (!note_.empty()) {
    if (cp.size < held_.size) {
      *alarm = "rolled_back";
      return Status::VerifyFailed("shown checkpoint of size " + std::to_string(cp.size) +
                                  " is older than the held one of size " +
                                  std::to_string(held_.size));
    }
    if (cp.size == held_.size) {
      if (cp.root != held_.root) {
        *alarm = "inconsistent_checkpoint";
        return Status::VerifyFailed("two different roots signed for size " +
                                    std::to_string(cp.size));
      }
    } else {
      if (proof_from != held_.size) {
        // Not evidence of anything: the collector guessed the size we hold
        // wrong (receipts crossed a reconnection). No alarm; ask again.
        alarm->clear();
        return Status::FailedPrecondition("consistency proof from size " +
                                          std::to_string(proof_from) + ", held size is " +
                                          std::to_string(held_.size));
      }
      s = tlog::VerifyConsistency(held_.size, cp.size, proof, held_.root, cp.root);
      if (!s.ok()) {
        *alarm = "inconsistent_checkpoint";
        return s;
      }
    }
  }
  if (cp.size != held_.size || note_.empty()) dirty_ = true;
  held_ = cp;
  note_ = std::string(note);
  *shown = cp;
  return Status::Ok();
}

Status CheckpointWitness::Save() {
  if (!dirty_) return Status::Ok();
  std::filesystem::path p(path_);
  LATCH_RETURN_IF_ERROR(
      storage::WriteFileAtomically(p.parent_path().string(), p.filename().string(), note_, 0644));
  dirty_ = false;
  return Status::Ok();
}

}  // namespace latch::agent
