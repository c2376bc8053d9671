#include "agent/checkpoint_witness.h"

#include <filesystem>

#include "agent/receipt_check.h"
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
  LATCH_RETURN_IF_ERROR(CheckShownCheckpoint(key_, note_.empty() ? nullptr : &held_, note,
                                             proof_from, proof, &cp, alarm));
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
