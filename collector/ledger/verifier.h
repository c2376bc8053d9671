// Full offline verification of a log from what it serves: every entry bundle
// is re-hashed and checked against the level-0 tiles, every higher tile is
// recomputed from the tiles below it, the root from the tiles must equal the
// signed checkpoint's, and the checkpoint's signature must verify. Memory is
// O(log n): one tile per level at a time.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "collector/ledger/tile_source.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/cosignature.h"
#include "lib/tlog/signed_note.h"

namespace latch::ledger {

struct VerifyResult {
  tlog::Checkpoint checkpoint;
  uint64_t tiles_checked = 0;  // entry bundles and hash tiles
};

// OK, or the first problem found, naming the entry, tile or checkpoint.
Status VerifyLog(TileSource& source, const tlog::NoteVerifier& key, VerifyResult* result);

// What a verifier demands of witnesses (issue 18): cosignatures by at least
// `quorum` of the keys it pinned.
struct WitnessDemand {
  std::vector<tlog::CosignatureVerifier> witnesses;
  size_t quorum = 0;
};

struct WitnessedResult {
  tlog::Checkpoint checkpoint;   // the witnessed one
  std::vector<size_t> cosigned;  // indexes into the demand's witnesses
};

// Whether the witnessed checkpoint `note` meets `demand` (the log's key and
// the quorum of cosignatures) and the log `source`, verified at `log_size`
// entries, extends it: it has that many entries and the same root there.
// A log shorter than what the witnesses saw, or with another root at that
// size, is another history than the one they cosigned (VerifyFailed says
// which).
Status CheckWitnessed(TileSource& source, uint64_t log_size, const tlog::NoteVerifier& key,
                      std::string_view note, const WitnessDemand& demand, WitnessedResult* result);

}  // namespace latch::ledger
