// RightEdge: the in-memory state an appender needs, O(log n) in the tree size:
// at each tile level, the hashes of the last, incomplete tile (< 256 each).
// From them it produces the hashes of newly completed subtrees (which the
// ledger stores) and the root of the whole tree.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "lib/tlog/tree_reader.h"

namespace latch::ledger {

class RightEdge : public tlog::StoredHashReader {
 public:
  // The edge of an empty tree.
  RightEdge() = default;
  // The edge of a tree of `size` leaves, read from where its hashes are stored.
  static Status Load(uint64_t size, tlog::StoredHashReader& stored, RightEdge* out);

  uint64_t size() const { return size_; }
  // Number of tile levels that hold at least one hash at this size.
  int levels() const { return static_cast<int>(partial_.size()); }

  // Appends leaves. completed->at(L), for L >= 1, receives the hashes of the
  // subtrees of 256^L leaves that these leaves completed (level 0's are the
  // leaves themselves). `completed` is resized as needed, never shrunk.
  void Append(std::span<const tlog::Hash> leaves, std::vector<std::vector<tlog::Hash>>* completed);

  tlog::Hash Root();

  // Serves hashes of the right edge only: those of the last tile per level.
  Status ReadHashes(int level, uint64_t start, uint64_t count, tlog::Hash* out) override;

 private:
  uint64_t size_ = 0;
  std::vector<std::vector<tlog::Hash>> partial_;
  tlog::MerkleHasher hasher_;
};

}  // namespace latch::ledger
