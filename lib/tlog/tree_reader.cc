#include "lib/tlog/tree_reader.h"

#include <bit>
#include <cassert>
#include <string>

namespace latch::tlog {

uint64_t LargestPowerOfTwoBelow(uint64_t n) {
  assert(n >= 2);
  return std::bit_floor(n - 1);
}

Status TreeReader::SubtreeHash(uint64_t begin, uint64_t end, Hash* out) {
  assert(begin < end);
  uint64_t n = end - begin;
  if (IsPowerOfTwo(n) && begin % n == 0) {
    // A perfect aligned subtree of height h = 8L + r: 2^r stored hashes of level L.
    int h = std::countr_zero(n);
    int level = h / kTileHeight;
    if (memoize_) return PerfectHash(level, h % kTileHeight, begin >> (kTileHeight * level), out);
    uint64_t count = uint64_t{1} << (h % kTileHeight);
    scratch_.resize(count);
    LATCH_RETURN_IF_ERROR(
        reader_.ReadHashes(level, begin >> (kTileHeight * level), count, scratch_.data()));
    *out = hasher_.PerfectRoot(scratch_);
    return Status::Ok();
  }
  uint64_t k = LargestPowerOfTwoBelow(n);
  Hash left;
  Hash right;
  LATCH_RETURN_IF_ERROR(SubtreeHash(begin, begin + k, &left));
  LATCH_RETURN_IF_ERROR(SubtreeHash(begin + k, end, &right));
  *out = hasher_.Node(left, right);
  return Status::Ok();
}

Status TreeReader::PerfectHash(int level, int r, uint64_t first, Hash* out) {
  auto it = memo_.find({level, r, first});
  if (it != memo_.end()) {
    *out = it->second;
    return Status::Ok();
  }
  uint64_t half = (uint64_t{1} << r) / 2;
  if (r > 0 && (memo_.count({level, r - 1, first}) || memo_.count({level, r - 1, first + half}))) {
    // Part of it is known: combine the halves.
    Hash left, right;
    LATCH_RETURN_IF_ERROR(PerfectHash(level, r - 1, first, &left));
    LATCH_RETURN_IF_ERROR(PerfectHash(level, r - 1, first + half, &right));
    *out = hasher_.Node(left, right);
  } else {
    // None of it is known: one read of its stored hashes, every node kept.
    uint64_t count = uint64_t{1} << r;
    std::vector<Hash> row(count);
    LATCH_RETURN_IF_ERROR(reader_.ReadHashes(level, first, count, row.data()));
    for (uint64_t i = 0; i < count; ++i) memo_[{level, 0, first + i}] = row[i];
    for (int height = 1; height <= r; ++height) {
      for (uint64_t i = 0; i + 1 < row.size(); i += 2)
        row[i / 2] = hasher_.Node(row[i], row[i + 1]);
      row.resize(row.size() / 2);
      for (uint64_t i = 0; i < row.size(); ++i) {
        memo_[{level, height, first + (i << height)}] = row[i];
      }
    }
    *out = row[0];
  }
  memo_[{level, r, first}] = *out;
  return Status::Ok();
}

Status TreeReader::Root(uint64_t size, Hash* out) {
  if (size == 0) {
    *out = MerkleHasher::EmptyRoot();
    return Status::Ok();
  }
  return SubtreeHash(0, size, out);
}

Status TreeReader::InclusionProof(uint64_t index, uint64_t size, std::vector<Hash>* proof) {
  if (index >= size) {
    return Status::InvalidArgument("index " + std::to_string(index) +
                                   " is beyond the tree of size " + std::to_string(size));
  }
  proof->clear();
  return Path(index, 0, size, proof);
}

Status TreeReader::Path(uint64_t index, uint64_t begin, uint64_t end, std::vector<Hash>* proof) {
  if (end - begin == 1) return Status::Ok();
  uint64_t k = LargestPowerOfTwoBelow(end - begin);
  Hash sibling;
  if (index - begin < k) {
    LATCH_RETURN_IF_ERROR(Path(index, begin, begin + k, proof));
    LATCH_RETURN_IF_ERROR(SubtreeHash(begin + k, end, &sibling));
  } else {
    LATCH_RETURN_IF_ERROR(Path(index, begin + k, end, proof));
    LATCH_RETURN_IF_ERROR(SubtreeHash(begin, begin + k, &sibling));
  }
  proof->push_back(sibling);
  return Status::Ok();
}

Status TreeReader::ConsistencyProof(uint64_t size1, uint64_t size2, std::vector<Hash>* proof) {
  if (size1 > size2) {
    return Status::InvalidArgument("old size " + std::to_string(size1) + " is beyond new size " +
                                   std::to_string(size2));
  }
  proof->clear();
  if (size1 == 0 || size1 == size2) return Status::Ok();
  return SubProof(size1, 0, size2, true, proof);
}

Status TreeReader::SubProof(uint64_t m, uint64_t begin, uint64_t end, bool whole,
                            std::vector<Hash>* proof) {
  uint64_t n = end - begin;
  if (m == n) {
    if (!whole) {
      Hash h;
      LATCH_RETURN_IF_ERROR(SubtreeHash(begin, end, &h));
      proof->push_back(h);
    }
    return Status::Ok();
  }
  uint64_t k = LargestPowerOfTwoBelow(n);
  Hash h;
  if (m <= k) {
    LATCH_RETURN_IF_ERROR(SubProof(m, begin, begin + k, whole, proof));
    LATCH_RETURN_IF_ERROR(SubtreeHash(begin + k, end, &h));
  } else {
    LATCH_RETURN_IF_ERROR(SubProof(m - k, begin + k, end, false, proof));
    LATCH_RETURN_IF_ERROR(SubtreeHash(begin, begin + k, &h));
  }
  proof->push_back(h);
  return Status::Ok();
}

}  // namespace latch::tlog
