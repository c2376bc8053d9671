// RFC 6962 / RFC 9162 section 2.1.1 tree hashing:
//   leaf  = SHA-256(0x00 || entry)
//   node  = SHA-256(0x01 || left || right)
//   empty = SHA-256("")
#pragma once

#include <span>

#include "lib/tlog/sha256.h"

namespace latch::tlog {

class MerkleHasher {
 public:
  Hash Leaf(std::span<const uint8_t> entry);
  Hash Node(const Hash& left, const Hash& right);
  static Hash EmptyRoot();

  // Root of a perfect subtree whose 2^k children (at any one level) are given,
  // left to right. `hashes.size()` must be a power of two (>= 1).
  Hash PerfectRoot(std::span<const Hash> hashes);

 private:
  Sha256 sha_;
};

inline bool IsPowerOfTwo(uint64_t n) { return n != 0 && (n & (n - 1)) == 0; }

}  // namespace latch::tlog
