// Writes a log's served resources as a static C2SP tlog-tiles directory:
// "checkpoint", every full tile and bundle, and the partial ones at the right
// edge of the current tree. Any static web server can then serve it, and
// VerifyLog(DirectoryTileSource) checks it with no Latch code in the loop.
#pragma once

#include <cstdint>
#include <string>

#include "collector/ledger/tile_source.h"
#include "lib/tlog/signed_note.h"

namespace latch::ledger {

struct ExportResult {
  uint64_t size = 0;
  uint64_t files = 0;
};

// `out_dir` must not exist or be empty. The checkpoint is written last, so
// an interrupted export has none and cannot be mistaken for a complete one.
Status ExportLog(TileSource& source, const tlog::NoteVerifier& key, const std::string& out_dir,
                 ExportResult* result);

}  // namespace latch::ledger
