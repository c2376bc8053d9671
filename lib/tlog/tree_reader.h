// Computes roots, subtree hashes and proofs of a Merkle tree from the hashes
// a tlog-tiles log stores: at tile level L, the roots of the aligned perfect
// subtrees of 256^L leaves. Any other subtree hash is derived from those with
// at most 255 node hashes per stored level touched.
#pragma once

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <vector>

#include "lib/status/status.h"
#include "lib/tlog/merkle_hash.h"

namespace latch::tlog {

inline constexpr int kTileHeight = 8;
inline constexpr uint64_t kTileWidth = uint64_t{1} << kTileHeight;  // 256

// How many hashes tile level `level` holds in a tree of `size` leaves: the
// number of complete subtrees of 256^level leaves (0 for levels past 2^64).
inline uint64_t HashesAtLevel(uint64_t size, int level) {
  return level * kTileHeight >= 64 ? 0 : size >> (kTileHeight * level);
}

// Where the stored hashes come from: ledger files, exported tiles, memory.
class StoredHashReader {
 public:
  virtual ~StoredHashReader() = default;
  // Reads `count` hashes of tile level `level` (tree height 8*level),
  // starting at index `start` of that level, into `out`.
  virtual Status ReadHashes(int level, uint64_t start, uint64_t count, Hash* out) = 0;
};

class TreeReader {
 public:
  // With `memoize`, every subtree hash computed is kept, so many proofs
  // against one tree (a page of query results) share the work of the nodes
  // they have in common; memory grows with what is touched, so use such a
  // reader for one batch of proofs, not for walking a whole log.
  explicit TreeReader(StoredHashReader& reader, bool memoize = false)
      : reader_(reader), memoize_(memoize) {}

  // MTH(D[begin:end]) for the ranges RFC 9162's recursions produce: `begin`
  // must be a multiple of the largest power of two below end - begin.
  Status SubtreeHash(uint64_t begin, uint64_t end, Hash* out);
  Status Root(uint64_t size, Hash* out);
  // RFC 9162 PATH(index, D[0:size]).
  Status InclusionProof(uint64_t index, uint64_t size, std::vector<Hash>* proof);
  // RFC 9162 PROOF(size1, D[0:size2]).
  Status ConsistencyProof(uint64_t size1, uint64_t size2, std::vector<Hash>* proof);

 private:
  Status Path(uint64_t index, uint64_t begin, uint64_t end, std::vector<Hash>* proof);
  Status SubProof(uint64_t m, uint64_t begin, uint64_t end, bool whole, std::vector<Hash>* proof);

  // The root of the perfect subtree of 2^r stored hashes of `level` from
  // `first`, through the memo.
  Status PerfectHash(int level, int r, uint64_t first, Hash* out);

  StoredHashReader& reader_;
  bool memoize_ = false;
  MerkleHasher hasher_;
  std::vector<Hash> scratch_;  // stored hashes of one perfect subtree (<= 256)
  struct NodeKey {
    int level;
    int r;
    uint64_t first;
    bool operator==(const NodeKey&) const = default;
  };
  struct NodeKeyHash {
    size_t operator()(const NodeKey& k) const {
      return std::hash<uint64_t>()(k.first * 64 + static_cast<uint64_t>(k.level * 8 + k.r));
    }
  };
  std::unordered_map<NodeKey, Hash, NodeKeyHash> memo_;
};

// Largest power of two strictly below n (n >= 2).
uint64_t LargestPowerOfTwoBelow(uint64_t n);

}  // namespace latch::tlog
