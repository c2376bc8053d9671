// Computes roots, subtree hashes and proofs of a Merkle tree from the hashes
// a tlog-tiles log stores: at tile level L, the roots of the aligned perfect
// subtrees of 256^L leaves. Any other subtree hash is derived from those with
// at most 255 node hashes per stored level touched.
#pragma once

#include <cstdint>
#include <vector>

#include "tlog/merkle_hash.h"
#include "tlog/status.h"

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
  explicit TreeReader(StoredHashReader& reader) : reader_(reader) {}

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

  StoredHashReader& reader_;
  MerkleHasher hasher_;
  std::vector<Hash> scratch_;  // stored hashes of one perfect subtree (<= 256)
};

// Largest power of two strictly below n (n >= 2).
uint64_t LargestPowerOfTwoBelow(uint64_t n);

}  // namespace latch::tlog
