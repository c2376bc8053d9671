// CheckpointWitness: the latest ledger checkpoint this agent has verified,
// and the check that every checkpoint it is shown extends it (promise 8:
// every host is a witness). A collector whose ledger was rolled back or
// rewritten cannot show a checkpoint that passes, so the agent raises an
// alarm instead of forgetting spooled records.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "lib/status/status.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/signed_note.h"

namespace latch::agent {

class CheckpointWitness {
 public:
  // Loads the checkpoint saved at `path` if there is one (checked again).
  static Status Open(const std::string& path, const tlog::NoteVerifier& ledger_key,
                     std::unique_ptr<CheckpointWitness>* out);

  uint64_t size() const { return held_.size; }
  const tlog::NoteVerifier& key() const { return key_; }
  const std::string& note() const { return note_; }
  const tlog::Checkpoint& held() const { return held_; }

  // Checks `note` against the held checkpoint; `proof` is a consistency proof
  // from size `proof_from` to the note's size. OK: *shown is the note's
  // checkpoint and is now held. Otherwise nothing changes and *alarm names
  // what is wrong: "bad_checkpoint_signature", "rolled_back",
  // "inconsistent_checkpoint"; or *alarm is empty (FailedPrecondition) when
  // the proof starts at another size than the held one, which proves nothing
  // either way.
  Status Advance(std::string_view note, uint64_t proof_from, std::span<const tlog::Hash> proof,
                 tlog::Checkpoint* shown, std::string* alarm);
  // Writes the held checkpoint to disk if it changed since the last Save().
  Status Save();

 private:
  CheckpointWitness() = default;
  std::string path_;
  tlog::NoteVerifier key_;
  std::string note_;  // empty: none held yet
  tlog::Checkpoint held_;
  bool dirty_ = false;
};

}  // namespace latch::agent
