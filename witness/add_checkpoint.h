// The witness's add-checkpoint (C2SP tlog-witness, https://c2sp.org/tlog-witness):
// a log submits its new checkpoint with the size the witness last cosigned
// and a consistency proof from it; the witness checks the log's signature
// and the proof against what it holds, stores the new checkpoint durably,
// and answers with its cosignature (cosignature/v1, lib/tlog/cosignature.h).
//
// Every answer the spec names, and nothing changed on any of them:
//   400 a malformed body, or an old size past the checkpoint's
//   403 no valid signature by a key the witness trusts for the origin
//   404 an origin the witness does not witness
//   409 the old size is not what it holds (body: its size, text/x.tlog.size)
//   422 a proof that does not verify (or a non-empty one from size 0, or
//       another root at the size it holds, or a size-0 tree that is not empty)
//   503 the state could not be stored (nothing was cosigned)
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "lib/status/status.h"
#include "lib/tlog/cosignature.h"
#include "lib/tlog/signed_note.h"
#include "witness/witness_state.h"

namespace latch::witness {

struct WitnessAnswer {
  int status = 0;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

struct WitnessCounters {
  uint64_t cosigned = 0;
  uint64_t conflicts = 0;     // 409
  uint64_t refused = 0;       // 400, 403, 404, 422
  uint64_t evidence = 0;      // signed checkpoints kept as evidence of a fork
  uint64_t store_failed = 0;  // 503
};

class Witness {
 public:
  // `logs`: each origin the witness witnesses, with the keys it trusts for it.
  Witness(tlog::CosignatureSigner key, std::map<std::string, std::vector<tlog::NoteVerifier>> logs,
          WitnessState state);

  // POST add-checkpoint with `body`; `now` is the cosignature's timestamp
  // (seconds since the epoch). Safe from any thread: the check and the
  // store happen under one lock.
  WitnessAnswer AddCheckpoint(const std::string& body, uint64_t now);

  const tlog::CosignatureSigner& key() const { return key_; }
  // Copies, under the lock.
  std::map<std::string, LogState> Logs() const;
  WitnessCounters counters() const;

  static constexpr size_t kMaxBody = 64 * 1024;
  static constexpr size_t kMaxProofLines = 63;

 private:
  const tlog::CosignatureSigner key_;
  const std::map<std::string, std::vector<tlog::NoteVerifier>> logs_;
  mutable std::mutex mu_;
  WitnessState state_;        // guarded by mu_
  WitnessCounters counters_;  // guarded by mu_
};

}  // namespace latch::witness
