#include "collector/ledger/ledger.h"

#include <algorithm>

namespace latch::ledger {

using tlog::Hash;
using tlog::kTileWidth;

Status Ledger::ReadEntry(uint64_t index, std::string* entry) {
  uint64_t size = this->size();
  if (index >= size) {
    return Status::NotFound("entry " + std::to_string(index) + " is beyond the tree of size " +
                            std::to_string(size));
  }
  tlog::TileId bundle{tlog::TileId::kEntries, index / kTileWidth,
                      static_cast<uint32_t>(
                          std::min<uint64_t>(kTileWidth, size - index / kTileWidth * kTileWidth))};
  std::string data;
  LATCH_RETURN_IF_ERROR(ReadTile(bundle, &data));
  size_t pos = 0;
  for (uint64_t i = 0; i < index % kTileWidth; ++i) {
    pos += 2 + ((static_cast<uint8_t>(data[pos]) << 8) | static_cast<uint8_t>(data[pos + 1]));
  }
  size_t len = (static_cast<uint8_t>(data[pos]) << 8) | static_cast<uint8_t>(data[pos + 1]);
  entry->assign(data, pos + 2, len);
  return Status::Ok();
}

Status Ledger::RootAt(uint64_t size, Hash* root) {
  if (size > this->size()) {
    return Status::InvalidArgument("size " + std::to_string(size) + " is beyond the tree of size " +
                                   std::to_string(this->size()));
  }
  tlog::TreeReader reader(*this);
  return reader.Root(size, root);
}

Status Ledger::InclusionProof(uint64_t index, uint64_t size, std::vector<Hash>* proof) {
  if (size > this->size()) {
    return Status::InvalidArgument("size " + std::to_string(size) + " is beyond the tree of size " +
                                   std::to_string(this->size()));
  }
  tlog::TreeReader reader(*this);
  return reader.InclusionProof(index, size, proof);
}

Status Ledger::ConsistencyProof(uint64_t size1, uint64_t size2, std::vector<Hash>* proof) {
  if (size2 > this->size()) {
    return Status::InvalidArgument("size " + std::to_string(size2) +
                                   " is beyond the tree of size " + std::to_string(this->size()));
  }
  tlog::TreeReader reader(*this);
  return reader.ConsistencyProof(size1, size2, proof);
}

}  // namespace latch::ledger
