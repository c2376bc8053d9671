// Every vector in ../shared/testdata/merkle-proofs: those with wantErr false
// must verify, those with wantErr true must be rejected. Happy paths must also
// be exactly the proofs our TreeReader generates for the classic tree.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "lib/tlog/base64.h"
#include "lib/tlog/proof.h"
#include "memory_hashes.h"

namespace latch::tlog {
namespace {

namespace fs = std::filesystem;

const fs::path kVectors = fs::path(LATCH_TESTDATA_DIR) / "merkle-proofs";

// A hash field: base64 of exactly 32 bytes, or nothing (which rejects the vector).
std::optional<Hash> ParseHash(const nlohmann::json& v) {
  auto raw = Base64Decode(v.get<std::string>());
  if (!raw || raw->size() != sizeof(Hash)) return std::nullopt;
  Hash h;
  std::copy(raw->begin(), raw->end(), h.begin());
  return h;
}

std::optional<std::vector<Hash>> ParseProof(const nlohmann::json& v) {
  std::vector<Hash> proof;
  if (v.is_null()) return proof;
  for (const auto& e : v) {
    auto h = ParseHash(e);
    if (!h) return std::nullopt;
    proof.push_back(*h);
  }
  return proof;
}

std::vector<fs::path> VectorFiles(const char* kind) {
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(kVectors / kind)) {
    if (e.is_regular_file() && e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

nlohmann::json Load(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

TEST(ProofVectors, Inclusion) {
  auto files = VectorFiles("inclusion");
  ASSERT_GT(files.size(), 50u) << "shared vectors missing at " << kVectors;
  int accepted = 0;
  int rejected = 0;
  int generated_checked = 0;
  for (const auto& f : files) {
    auto v = Load(f);
    bool want_err = v["wantErr"].get<bool>();
    auto root = ParseHash(v["root"]);
    auto leaf = ParseHash(v["leafHash"]);
    auto proof = ParseProof(v["proof"]);
    bool ok = root && leaf && proof &&
              VerifyInclusion(v["leafIdx"].get<uint64_t>(), v["treeSize"].get<uint64_t>(), *leaf,
                              *proof, *root)
                  .ok();
    EXPECT_EQ(ok, !want_err) << f << ": " << v["desc"];
    (ok ? accepted : rejected)++;
    if (v["desc"] == "happy path" && v["treeSize"].get<uint64_t>() <= 8) {
      MemoryHashes stored(ClassicLeaves());
      TreeReader reader(stored);
      std::vector<Hash> generated;
      ASSERT_TRUE(reader.InclusionProof(v["leafIdx"], v["treeSize"], &generated).ok());
      EXPECT_EQ(generated, *proof) << f;
      ++generated_checked;
    }
  }
  EXPECT_GT(accepted, 0);
  EXPECT_GT(rejected, 0);
  EXPECT_GT(generated_checked, 0);
}

TEST(ProofVectors, Consistency) {
  auto files = VectorFiles("consistency");
  ASSERT_GT(files.size(), 50u) << "shared vectors missing at " << kVectors;
  int accepted = 0;
  int rejected = 0;
  int generated_checked = 0;
  for (const auto& f : files) {
    auto v = Load(f);
    bool want_err = v["wantErr"].get<bool>();
    // Roots as raw bytes: the vectors include roots that are not 32 bytes long.
    auto root1 = Base64Decode(v["root1"].get<std::string>());
    auto root2 = Base64Decode(v["root2"].get<std::string>());
    auto proof = ParseProof(v["proof"]);
    bool ok = root1 && root2 && proof &&
              VerifyConsistency(v["size1"].get<uint64_t>(), v["size2"].get<uint64_t>(), *proof,
                                std::span<const uint8_t>(*root1), std::span<const uint8_t>(*root2))
                  .ok();
    EXPECT_EQ(ok, !want_err) << f << ": " << v["desc"];
    (ok ? accepted : rejected)++;
    if (v["desc"] == "happy path" && v["size2"].get<uint64_t>() <= 8) {
      MemoryHashes stored(ClassicLeaves());
      TreeReader reader(stored);
      std::vector<Hash> generated;
      ASSERT_TRUE(reader.ConsistencyProof(v["size1"], v["size2"], &generated).ok());
      EXPECT_EQ(generated, *proof) << f;
      ++generated_checked;
    }
  }
  EXPECT_GT(accepted, 0);
  EXPECT_GT(rejected, 0);
  EXPECT_GT(generated_checked, 0);
}

}  // namespace
}  // namespace latch::tlog
