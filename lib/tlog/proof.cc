#include "lib/tlog/proof.h"

#include <algorithm>
#include <string>

#include "lib/tlog/merkle_hash.h"

namespace latch::tlog {
namespace {

// Shifts fn and sn right until fn's lowest bit is set or fn is zero: the
// levels where the node on the path is a right child of nothing to hash.
void SkipWhileEven(uint64_t& fn, uint64_t& sn) {
  while ((fn & 1) == 0 && fn != 0) {
    fn >>= 1;
    sn >>= 1;
  }
}

}  // namespace

Status VerifyInclusion(uint64_t index, uint64_t size, const Hash& leaf_hash,
                       std::span<const Hash> proof, const Hash& root) {
  if (index >= size) {
    return Status::VerifyFailed("leaf index " + std::to_string(index) + " is not below tree size " +
                                std::to_string(size));
  }
  // RFC 9162 section 2.1.3.2.
  MerkleHasher hasher;
  uint64_t fn = index;
  uint64_t sn = size - 1;
  Hash r = leaf_hash;
  for (const Hash& p : proof) {
    if (sn == 0) return Status::VerifyFailed("inclusion proof has too many hashes");
    if ((fn & 1) == 1 || fn == sn) {
      r = hasher.Node(p, r);
      SkipWhileEven(fn, sn);
    } else {
      r = hasher.Node(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return Status::VerifyFailed("inclusion proof has too few hashes");
  if (r != root) return Status::VerifyFailed("inclusion proof does not lead to the root");
  return Status::Ok();
}

Status VerifyConsistency(uint64_t size1, uint64_t size2, std::span<const Hash> proof,
                         const Hash& root1, const Hash& root2) {
  if (size2 < size1) {
    return Status::VerifyFailed("tree shrank from " + std::to_string(size1) + " to " +
                                std::to_string(size2));
  }
  if (size1 == 0) {
    // Every tree extends the empty tree, so such a proof proves nothing; it
    // is rejected (as the reference vectors require) and callers treat an
    // empty old tree as trivially consistent without asking for a proof.
    return Status::VerifyFailed("consistency proof from the empty tree is meaningless");
  }
  if (size1 == size2) {
    if (!proof.empty())
      return Status::VerifyFailed("consistency proof for equal sizes is not empty");
    if (root1 != root2) return Status::VerifyFailed("different roots for the same tree size");
    return Status::Ok();
  }
  if (proof.empty()) return Status::VerifyFailed("consistency proof is empty");

  // RFC 9162 section 2.1.4.2. When size1 is a power of two, the old root is
  // itself a node of the new tree and is the implicit first proof element.
  MerkleHasher hasher;
  size_t next = 0;
  Hash first = IsPowerOfTwo(size1) ? root1 : proof[next++];
  uint64_t fn = size1 - 1;
  uint64_t sn = size2 - 1;
  while ((fn & 1) == 1) {
    fn >>= 1;
    sn >>= 1;
  }
  Hash fr = first;
  Hash sr = first;
  for (; next < proof.size(); ++next) {
    const Hash& c = proof[next];
    if (sn == 0) return Status::VerifyFailed("consistency proof has too many hashes");
    if ((fn & 1) == 1 || fn == sn) {
      fr = hasher.Node(c, fr);
      sr = hasher.Node(c, sr);
      SkipWhileEven(fn, sn);
    } else {
      sr = hasher.Node(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn != 0) return Status::VerifyFailed("consistency proof has too few hashes");
  if (fr != root1) return Status::VerifyFailed("consistency proof does not lead to the old root");
  if (sr != root2) return Status::VerifyFailed("consistency proof does not lead to the new root");
  return Status::Ok();
}

Status VerifyConsistency(uint64_t size1, uint64_t size2, std::span<const Hash> proof,
                         std::span<const uint8_t> root1, std::span<const uint8_t> root2) {
  if (root1.size() != sizeof(Hash) || root2.size() != sizeof(Hash)) {
    if (size1 == size2 && size1 > 0 && proof.empty() &&
        std::equal(root1.begin(), root1.end(), root2.begin(), root2.end())) {
      return Status::Ok();
    }
    return Status::VerifyFailed("a root is not a 32-byte SHA-256 hash");
  }
  Hash r1;
  Hash r2;
  std::copy(root1.begin(), root1.end(), r1.begin());
  std::copy(root2.begin(), root2.end(), r2.begin());
  return VerifyConsistency(size1, size2, proof, r1, r2);
}

}  // namespace latch::tlog
