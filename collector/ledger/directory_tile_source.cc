#include "collector/ledger/tile_source.h"
#include "lib/storage/append_file.h"

namespace latch::ledger {

// An entry bundle is at most 256 entries of at most 65,535 bytes plus prefixes.
constexpr size_t kMaxTileFile = size_t{256} * (65535 + 2);

Status DirectoryTileSource::ReadCheckpoint(std::string* note) {
  return storage::ReadWholeFile(root_ + "/checkpoint", note);
}

Status DirectoryTileSource::ReadTile(const tlog::TileId& tile, std::string* data) {
  return storage::ReadWholeFile(root_ + "/" + tile.Path(), data, kMaxTileFile);
}

}  // namespace latch::ledger
