// StoredHashReader over any TileSource, for a tree of a given size: lets
// TreeReader compute roots and proofs from served tiles (an exported
// directory, or a remote log mirrored to disk).
#pragma once

#include "collector/ledger/tile_source.h"
#include "lib/tlog/tree_reader.h"

namespace latch::ledger {

class TileHashReader : public tlog::StoredHashReader {
 public:
  TileHashReader(TileSource& source, uint64_t tree_size) : source_(source), size_(tree_size) {}
  Status ReadHashes(int level, uint64_t start, uint64_t count, tlog::Hash* out) override;

 private:
  TileSource& source_;
  uint64_t size_;
};

}  // namespace latch::ledger
