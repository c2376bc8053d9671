// WitnessState: what a witness (issue 18) holds per log, durably: the latest
// checkpoint it cosigned (size, root, and the log-signed note it came as).
// It never goes back: a state file that cannot be read stops the witness
// rather than letting it start over from nothing, which would let it cosign
// a fork of a log it had already cosigned.
//
// One file per log under <dir>/logs, named by the SHA-256 of the origin,
// replaced atomically and synced before Put returns: an answer is given only
// for a state already on disk. Checkpoints that a log signed but that do not
// fit what the witness holds are kept as evidence under <dir>/evidence.
//
// Not thread-safe: AddCheckpoint (add_checkpoint.h) holds one lock across
// the check and the Put, as the spec requires.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "lib/status/status.h"
#include "lib/tlog/merkle_hash.h"

namespace latch::witness {

struct LogState {
  uint64_t size = 0;
  tlog::Hash root{};
  std::string note;  // the checkpoint as the log signed it
};

class WitnessState {
 public:
  // Loads every log's state from `dir` (made if absent, mode 0700).
  // Corruption for a state file that does not parse.
  static Status Open(const std::string& dir, WitnessState* out);

  // The state of `origin`; size 0 and the empty tree's root if none yet.
  LogState Get(const std::string& origin) const;
  // Makes `state` the state of `origin`, durably.
  Status Put(const std::string& origin, const LogState& state);
  // Keeps `note`, which `origin`'s key signed and which conflicts with what
  // is held (`why`), beside the state it conflicts with.
  Status KeepEvidence(const std::string& origin, const std::string& note, const std::string& why);
  const std::map<std::string, LogState>& logs() const { return logs_; }
  uint64_t evidence_kept() const { return evidence_kept_; }

 private:
  std::string dir_;
  std::map<std::string, LogState> logs_;
  uint64_t evidence_kept_ = 0;
};

}  // namespace latch::witness
