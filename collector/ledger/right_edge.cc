#include "collector/ledger/right_edge.h"

#include <algorithm>
#include <cassert>
#include <string>

namespace latch::ledger {

using tlog::Hash;
using tlog::kTileWidth;

Status RightEdge::Load(uint64_t size, tlog::StoredHashReader& stored, RightEdge* out) {
  RightEdge edge;
  edge.size_ = size;
  for (int level = 0; tlog::HashesAtLevel(size, level) > 0; ++level) {
    uint64_t at_level = tlog::HashesAtLevel(size, level);
    uint64_t width = at_level % kTileWidth;
    auto& part = edge.partial_.emplace_back(width);
    if (width > 0) {
      LATCH_RETURN_IF_ERROR(stored.ReadHashes(level, at_level - width, width, part.data()));
    }
  }
  *out = std::move(edge);
  return Status::Ok();
}

void RightEdge::Append(std::span<const Hash> leaves, std::vector<std::vector<Hash>>* completed) {
  for (const Hash& leaf : leaves) {
    Hash carry = leaf;
    for (size_t level = 0;; ++level) {
      if (level == partial_.size()) partial_.emplace_back().reserve(kTileWidth);
      if (level > 0) {
        if (completed->size() <= level) completed->resize(level + 1);
        (*completed)[level].push_back(carry);
      }
      auto& part = partial_[level];
      part.push_back(carry);
      if (part.size() < kTileWidth) break;
      carry = hasher_.PerfectRoot(part);
      part.clear();
    }
    ++size_;
  }
}

Hash RightEdge::Root() {
  Hash root;
  tlog::TreeReader reader(*this);
  Status s = reader.Root(size_, &root);
  // The edge holds every hash a root needs by construction.
  assert(s.ok());
  (void)s;
  return root;
}

Status RightEdge::ReadHashes(int level, uint64_t start, uint64_t count, Hash* out) {
  uint64_t at_level = tlog::HashesAtLevel(size_, level);
  uint64_t first = at_level - at_level % kTileWidth;  // index of partial_[level][0]
  if (level >= levels() || start < first || start + count > at_level) {
    return Status::FailedPrecondition("hash " + std::to_string(start) + " of level " +
                                      std::to_string(level) + " is not on the right edge");
  }
  std::copy_n(partial_[level].begin() + static_cast<ptrdiff_t>(start - first), count, out);
  return Status::Ok();
}

}  // namespace latch::ledger
