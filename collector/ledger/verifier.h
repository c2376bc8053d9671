// Full offline verification of a log from what it serves: every entry bundle
// is re-hashed and checked against the level-0 tiles, every higher tile is
// recomputed from the tiles below it, the root from the tiles must equal the
// signed checkpoint's, and the checkpoint's signature must verify. Memory is
// O(log n): one tile per level at a time.
#pragma once

#include <cstdint>

#include "collector/ledger/tile_source.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/signed_note.h"

namespace latch::ledger {

struct VerifyResult {
  tlog::Checkpoint checkpoint;
  uint64_t tiles_checked = 0;  // entry bundles and hash tiles
};

// OK, or the first problem found, naming the entry, tile or checkpoint.
Status VerifyLog(TileSource& source, const tlog::NoteVerifier& key, VerifyResult* result);

}  // namespace latch::ledger
