#include "collector/ledger/entry_range.h"

#include <algorithm>
#include <string>

#include "lib/tlog/tree_reader.h"

namespace latch::ledger {

Status ForEachEntry(Ledger& ledger, uint64_t from, uint64_t to, const EntryVisitor& visit) {
  if (to > ledger.size() || from > to) {
    return Status::InvalidArgument("entries [" + std::to_string(from) + ", " + std::to_string(to) +
                                   ") are not in a ledger of " + std::to_string(ledger.size()));
  }
  std::string data;
  for (uint64_t i = from; i < to;) {
    const uint64_t bundle = i / tlog::kTileWidth;
    // A bundle is read as wide as the tree holds it at `to`: the partial
    // bundle at the right edge has fewer entries.
    const uint64_t width = std::min<uint64_t>(tlog::kTileWidth, to - bundle * tlog::kTileWidth);
    LATCH_RETURN_IF_ERROR(
        ledger.ReadTile({tlog::TileId::kEntries, bundle, static_cast<uint32_t>(width)}, &data));
    std::string_view rest(data);
    for (uint64_t k = 0; k < width; ++k) {
      size_t len = 0;
      if (rest.size() >= 2)
        len = (size_t{static_cast<uint8_t>(rest[0])} << 8) | static_cast<uint8_t>(rest[1]);
      if (rest.size() < 2 || rest.size() - 2 < len) {
        return Status::Corruption("entry bundle " + std::to_string(bundle) + " is short");
      }
      const uint64_t index = bundle * tlog::kTileWidth + k;
      if (index >= i) LATCH_RETURN_IF_ERROR(visit(index, rest.substr(2, len)));
      rest.remove_prefix(2 + len);
    }
    i = bundle * tlog::kTileWidth + width;
  }
  return Status::Ok();
}

}  // namespace latch::ledger
