#include "collector/ledger/tile_hash_reader.h"

#include <algorithm>
#include <cstring>

namespace latch::ledger {

using tlog::kTileWidth;

Status TileHashReader::ReadHashes(int level, uint64_t start, uint64_t count, tlog::Hash* out) {
  uint64_t at_level = tlog::HashesAtLevel(size_, level);
  while (count > 0) {
    tlog::TileId tile{level, start / kTileWidth, 0};
    tile.width = static_cast<uint32_t>(std::min(kTileWidth, at_level - tile.index * kTileWidth));
    uint64_t offset = start % kTileWidth;
    uint64_t n = std::min(count, kTileWidth - offset);
    if (start + n > at_level) {
      return Status::NotFound("hash " + std::to_string(start) + " of level " +
                              std::to_string(level) + " is beyond the tree");
    }
    std::string data;
    LATCH_RETURN_IF_ERROR(source_.ReadTile(tile, &data));
    if (data.size() != tile.width * sizeof(tlog::Hash)) {
      return Status::Corruption(tile.Path() + " has " + std::to_string(data.size()) +
                                " bytes, not " + std::to_string(tile.width * sizeof(tlog::Hash)));
    }
    std::memcpy(out, data.data() + offset * sizeof(tlog::Hash), n * sizeof(tlog::Hash));
    out += n;
    start += n;
    count -= n;
  }
  return Status::Ok();
}

}  // namespace latch::ledger
