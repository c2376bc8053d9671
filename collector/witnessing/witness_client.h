// WitnessClient: the collector's side of one witness's add-checkpoint (C2SP
// tlog-witness, https://c2sp.org/tlog-witness): it posts the ledger's new
// checkpoint with the size the witness holds and a consistency proof from
// it, and makes sense of the answer. A cosignature is checked against the
// witness's pinned key before it counts; a 409 tells the size the witness
// holds, from which the next proof starts.
//
// Blocking (each call within the timeout): it runs on the witness's own
// thread (witnessing.h), never on the collector's loop.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "lib/tlog/cosignature.h"
#include "lib/tlog/sha256.h"

namespace latch::collector {

struct WitnessEndpoint {
  std::string url;  // https://host[:port]; add-checkpoint is under it
  std::string ca;   // its server certificate's CA file ("": the system's roots)
  tlog::CosignatureVerifier key;
  std::chrono::milliseconds timeout{10000};
};

struct WitnessAnswer {
  enum class Kind {
    kCosigned,     // cosignature: the witness's verified line(s)
    kConflict,     // 409: held_size is the size the witness holds
    kRefused,      // any other answer (status and detail say which)
    kUnreachable,  // no answer within the timeout, or not HTTPS
  };
  Kind kind = Kind::kUnreachable;
  std::string cosignature;  // lines ending in newline, to append to the note
  uint64_t held_size = 0;
  int status = 0;
  std::string detail;  // for logs and records: printable, at most 200 bytes
};

// The request body: "old <size>", the proof's hashes in base64, a blank
// line, then the signed checkpoint note.
std::string AddCheckpointBody(uint64_t old_size, const std::vector<tlog::Hash>& proof,
                              const std::string& note);

// Posts `body` (for `note`, the checkpoint it carries) to the witness.
WitnessAnswer AddCheckpoint(const WitnessEndpoint& witness, const std::string& body,
                            const std::string& note);

// The part of a witness's 200 answer that counts: its lines that are valid
// cosignatures of `note` by `key` ("" if none).
std::string VerifiedCosignature(const std::string& note, const std::string& answer,
                                const tlog::CosignatureVerifier& key);

}  // namespace latch::collector
