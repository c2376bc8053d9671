// Test helper: a tree's stored hashes computed naively in memory, the
// reference the tree reader and the ledger are checked against.
#pragma once

#include <string>
#include <vector>

#include "lib/tlog/merkle_hash.h"
#include "lib/tlog/tree_reader.h"

namespace latch::tlog {

// RFC 6962 MTH by the definition, recursively, for reference.
inline Hash ReferenceRoot(MerkleHasher& h, std::span<const Hash> leaves) {
  if (leaves.empty()) return MerkleHasher::EmptyRoot();
  if (leaves.size() == 1) return leaves[0];
  size_t k = LargestPowerOfTwoBelow(leaves.size());
  return h.Node(ReferenceRoot(h, leaves.subspan(0, k)), ReferenceRoot(h, leaves.subspan(k)));
}

class MemoryHashes : public StoredHashReader {
 public:
  explicit MemoryHashes(std::vector<Hash> leaves) {
    MerkleHasher h;
    levels_.push_back(std::move(leaves));
    while (levels_.back().size() >= kTileWidth) {
      const auto& below = levels_.back();
      std::vector<Hash> up;
      for (size_t i = 0; i + kTileWidth <= below.size(); i += kTileWidth) {
        up.push_back(ReferenceRoot(h, std::span(below).subspan(i, kTileWidth)));
      }
      levels_.push_back(std::move(up));
    }
  }
  Status ReadHashes(int level, uint64_t start, uint64_t count, Hash* out) override {
    if (level >= static_cast<int>(levels_.size()) || start + count > levels_[level].size()) {
      return Status::NotFound("no such hashes");
    }
    std::copy_n(levels_[level].begin() + static_cast<ptrdiff_t>(start), count, out);
    return Status::Ok();
  }
  const std::vector<std::vector<Hash>>& levels() const { return levels_; }

 private:
  std::vector<std::vector<Hash>> levels_;
};

inline std::vector<Hash> NumberedLeaves(MerkleHasher& h, size_t n) {
  std::vector<Hash> leaves;
  for (size_t i = 0; i < n; ++i) {
    std::string e = "entry-" + std::to_string(i);
    leaves.push_back(h.Leaf({reinterpret_cast<const uint8_t*>(e.data()), e.size()}));
  }
  return leaves;
}

inline std::vector<uint8_t> FromHex(std::string_view s) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < s.size(); i += 2) {
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(s.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

// The leaves of the classic RFC 6962 test tree that the shared vectors use.
inline std::vector<Hash> ClassicLeaves() {
  MerkleHasher h;
  std::vector<Hash> leaves;
  for (const char* hex : {"", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                          "606162636465666768696a6b6c6d6e6f"}) {
    leaves.push_back(h.Leaf(FromHex(hex)));
  }
  return leaves;
}

}  // namespace latch::tlog
