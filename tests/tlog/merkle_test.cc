#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "lib/tlog/merkle_hash.h"
#include "lib/tlog/proof.h"
#include "lib/tlog/tree_reader.h"
#include "memory_hashes.h"

namespace latch::tlog {
namespace {

std::string Hex(const Hash& h) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t b : h) {
    s += d[b >> 4];
    s += d[b & 15];
  }
  return s;
}

TEST(MerkleHash, KnownAnswers) {
  EXPECT_EQ(Hex(MerkleHasher::EmptyRoot()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Hex(ClassicLeaves()[0]),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
}

TEST(MerkleHash, RootsOfTheClassicTreeMatchTreeRootsTxt) {
  std::ifstream in(std::string(LATCH_TESTDATA_DIR) + "/merkle-proofs/tree-roots.txt");
  ASSERT_TRUE(in) << "shared test vectors not found at " << LATCH_TESTDATA_DIR;
  MemoryHashes stored(ClassicLeaves());
  TreeReader reader(stored);
  std::string line;
  int checked = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    uint64_t size;
    std::string hex;
    fields >> size >> hex;
    Hash root;
    ASSERT_TRUE(reader.Root(size, &root).ok());
    EXPECT_EQ(Hex(root), hex) << "size " << size;
    ++checked;
  }
  EXPECT_EQ(checked, 8);
}

// Roots from stored tiles agree with the definition across tile boundaries.
TEST(TreeReader, RootsAgreeWithTheDefinition) {
  MerkleHasher h;
  auto leaves = NumberedLeaves(h, 70000);
  MemoryHashes stored(leaves);
  TreeReader reader(stored);
  for (uint64_t size : {0ul, 1ul, 2ul, 3ul, 255ul, 256ul, 257ul, 511ul, 512ul, 513ul, 1000ul,
                        65535ul, 65536ul, 65537ul, 70000ul}) {
    Hash root;
    ASSERT_TRUE(reader.Root(size, &root).ok()) << size;
    EXPECT_EQ(root, ReferenceRoot(h, std::span(leaves).subspan(0, size))) << size;
  }
}

// A memoizing reader (one page of query results shares its nodes) gives
// exactly what the plain one gives, across tree sizes and indexes.
TEST(TreeReader, MemoizedReaderGivesTheSameProofs) {
  MerkleHasher h;
  auto leaves = NumberedLeaves(h, 70000);
  MemoryHashes stored(leaves);
  TreeReader plain(stored);
  TreeReader memo(stored, /*memoize=*/true);
  std::vector<Hash> a, b;
  for (uint64_t size : {1ul, 255ul, 256ul, 257ul, 65535ul, 65536ul, 65537ul, 70000ul}) {
    Hash ra, rb;
    ASSERT_TRUE(plain.Root(size, &ra).ok());
    ASSERT_TRUE(memo.Root(size, &rb).ok());
    EXPECT_EQ(ra, rb) << size;
    for (uint64_t index = 0; index < size; index += 1 + size / 97) {
      ASSERT_TRUE(plain.InclusionProof(index, size, &a).ok());
      ASSERT_TRUE(memo.InclusionProof(index, size, &b).ok());
      EXPECT_EQ(a, b) << index << "/" << size;
    }
    for (uint64_t size1 = 1; size1 <= size; size1 += 1 + size / 13) {
      ASSERT_TRUE(plain.ConsistencyProof(size1, size, &a).ok());
      ASSERT_TRUE(memo.ConsistencyProof(size1, size, &b).ok());
      EXPECT_EQ(a, b) << size1 << "->" << size;
    }
  }
}

TEST(TreeReader, GeneratedProofsVerify) {
  MerkleHasher h;
  auto leaves = NumberedLeaves(h, 1100);
  MemoryHashes stored(leaves);
  TreeReader reader(stored);
  std::vector<Hash> roots(leaves.size() + 1);
  for (size_t n = 0; n <= leaves.size(); ++n) ASSERT_TRUE(reader.Root(n, &roots[n]).ok());

  std::vector<Hash> proof;
  for (uint64_t size : {1ul, 2ul, 7ul, 8ul, 255ul, 256ul, 257ul, 600ul, 1024ul, 1100ul}) {
    for (uint64_t index = 0; index < size; index += (size > 300 ? 7 : 1)) {
      ASSERT_TRUE(reader.InclusionProof(index, size, &proof).ok());
      EXPECT_TRUE(VerifyInclusion(index, size, leaves[index], proof, roots[size]).ok())
          << index << "/" << size;
      // The same proof must not prove a neighbouring leaf.
      if (size > 1) {
        EXPECT_FALSE(
            VerifyInclusion(index, size, leaves[(index + 1) % size], proof, roots[size]).ok());
      }
    }
  }
  for (uint64_t size2 : {1ul, 5ul, 256ul, 257ul, 1000ul, 1100ul}) {
    ASSERT_TRUE(reader.ConsistencyProof(0, size2, &proof).ok());
    EXPECT_TRUE(proof.empty());
    EXPECT_FALSE(VerifyConsistency(0, size2, proof, roots[0], roots[size2]).ok());
    for (uint64_t size1 = 1; size1 <= size2; size1 += (size2 > 300 ? 13 : 1)) {
      ASSERT_TRUE(reader.ConsistencyProof(size1, size2, &proof).ok());
      EXPECT_TRUE(VerifyConsistency(size1, size2, proof, roots[size1], roots[size2]).ok())
          << size1 << "->" << size2;
      if (size1 > 1 && size1 < size2) {
        EXPECT_FALSE(VerifyConsistency(size1, size2, proof, roots[size1 - 1], roots[size2]).ok());
      }
    }
  }
  EXPECT_FALSE(reader.InclusionProof(5, 5, &proof).ok());
  EXPECT_FALSE(reader.ConsistencyProof(6, 5, &proof).ok());
}

}  // namespace
}  // namespace latch::tlog
