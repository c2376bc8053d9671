#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "collector/ledger/exporter.h"
#include "collector/ledger/file_ledger.h"
#include "collector/ledger/verifier.h"
#include "lib/tlog/proof.h"
#include "memory_hashes.h"
#include "temp_dir.h"

namespace latch::ledger {
namespace {

using tlog::Hash;
using tlog::TileId;

std::string EntryText(uint64_t i) { return "entry-" + std::to_string(i); }

// Appends entries [from, to) named EntryText(i), in commits of varying size.
void AppendRange(Ledger& ledger, uint64_t from, uint64_t to, std::mt19937_64& rng) {
  while (from < to) {
    uint64_t n = std::min<uint64_t>(to - from, 1 + rng() % 3000);
    EntryBatch batch;
    for (uint64_t i = from; i < from + n; ++i) ASSERT_TRUE(batch.Add(EntryText(i)).ok());
    const EntryBatch* batches[] = {&batch};
    uint64_t first = 0;
    ASSERT_TRUE(ledger.Commit(batches, &first).ok());
    ASSERT_EQ(first, from);
    from += n;
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// The tiles and bundles of a tree of `size` entries, computed independently.
struct ReferenceLog {
  explicit ReferenceLog(uint64_t size) {
    tlog::MerkleHasher h;
    leaves = tlog::NumberedLeaves(h, size);
    hashes = std::make_unique<tlog::MemoryHashes>(leaves);
    root = tlog::ReferenceRoot(h, leaves);
  }
  std::string Tile(const TileId& t) const {
    std::string out;
    for (uint64_t i = t.index * 256; i < t.index * 256 + t.width; ++i) {
      if (t.is_entries()) {
        std::string e = EntryText(i);
        out += static_cast<char>(e.size() >> 8);
        out += static_cast<char>(e.size() & 0xff);
        out += e;
      } else {
        const Hash& h = hashes->levels()[t.level][i];
        out.append(reinterpret_cast<const char*>(h.data()), h.size());
      }
    }
    return out;
  }
  // Every resource a client of this tree size may fetch (full and right-edge partial).
  std::vector<TileId> Tiles(uint64_t size) const {
    std::vector<TileId> tiles;
    for (int level = TileId::kEntries; level < 8; ++level) {
      uint64_t n = level < 0 ? size : tlog::HashesAtLevel(size, level);
      for (uint64_t i = 0; i * 256 < n; ++i) {
        tiles.push_back({level, i, static_cast<uint32_t>(std::min<uint64_t>(256, n - i * 256))});
      }
    }
    return tiles;
  }
  std::vector<Hash> leaves;
  std::unique_ptr<tlog::MemoryHashes> hashes;
  Hash root;
};

class LedgerSizes : public ::testing::TestWithParam<uint64_t> {};

TEST_P(LedgerSizes, ServesByteExactTilesAndProofs) {
  const uint64_t size = GetParam();
  TempDir tmp;
  const std::string dir = tmp / "ledger";
  ASSERT_TRUE(FileLedger::Create(dir, "test.example/log").ok());
  std::unique_ptr<Ledger> ledger;
  ASSERT_TRUE(FileLedger::Open(dir, FileLedger::Mode::kReadWrite, &ledger).ok());
  std::mt19937_64 rng(size);
  AppendRange(*ledger, 0, size, rng);
  ASSERT_EQ(ledger->size(), size);

  ReferenceLog ref(size);
  EXPECT_EQ(ledger->checkpoint().root, ref.root);
  std::string data;
  for (const TileId& t : ref.Tiles(size)) {
    ASSERT_TRUE(ledger->ReadTile(t, &data).ok()) << t.Path();
    EXPECT_EQ(data, ref.Tile(t)) << t.Path();
    if (t.width > 1) {  // an older tree's partial tile is a prefix
      TileId older = t;
      older.width = t.width / 2;
      ASSERT_TRUE(ledger->ReadTile(older, &data).ok()) << older.Path();
      EXPECT_EQ(data, ref.Tile(older)) << older.Path();
    }
  }
  // Nothing beyond the tree is served.
  uint64_t w = size % 256;
  EXPECT_FALSE(
      ledger->ReadTile({TileId::kEntries, size / 256, static_cast<uint32_t>(w + 1)}, &data).ok());
  EXPECT_FALSE(ledger->ReadTile({0, size / 256 + 1, 1}, &data).ok());

  // Proofs against the checkpoint.
  std::vector<Hash> proof;
  for (int k = 0; k < 20 && size > 0; ++k) {
    uint64_t index = rng() % size;
    ASSERT_TRUE(ledger->InclusionProof(index, size, &proof).ok());
    EXPECT_TRUE(tlog::VerifyInclusion(index, size, ref.leaves[index], proof, ref.root).ok());
    std::string entry;
    ASSERT_TRUE(ledger->ReadEntry(index, &entry).ok());
    EXPECT_EQ(entry, EntryText(index));
    uint64_t old_size = 1 + rng() % size;
    Hash old_root;
    ASSERT_TRUE(ledger->RootAt(old_size, &old_root).ok());
    EXPECT_EQ(old_root, tlog::ReferenceRoot(*std::make_unique<tlog::MerkleHasher>(),
                                            std::span(ref.leaves).subspan(0, old_size)));
    ASSERT_TRUE(ledger->ConsistencyProof(old_size, size, &proof).ok());
    EXPECT_TRUE(tlog::VerifyConsistency(old_size, size, proof, old_root, ref.root).ok());
  }

  // Reopening finds the same tree; the export is byte-exact and verifies.
  ledger.reset();
  ASSERT_TRUE(FileLedger::Open(dir, FileLedger::Mode::kReadWrite, &ledger).ok());
  EXPECT_EQ(ledger->size(), size);
  VerifyResult verified;
  ASSERT_TRUE(VerifyLog(*ledger, ledger->verifier(), &verified).ok());
  const std::string out = tmp / "export";
  ExportResult exported;
  ASSERT_TRUE(ExportLog(*ledger, ledger->verifier(), out, &exported).ok());
  EXPECT_EQ(exported.files, ref.Tiles(size).size() + 1);
  for (const TileId& t : ref.Tiles(size)) EXPECT_EQ(ReadFile(out + "/" + t.Path()), ref.Tile(t));
  EXPECT_EQ(ReadFile(out + "/checkpoint"), ledger->checkpoint_note());
  DirectoryTileSource exported_tiles(out);
  Status s = VerifyLog(exported_tiles, ledger->verifier(), &verified);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(verified.checkpoint.size, size);
}

INSTANTIATE_TEST_SUITE_P(TileEdges, LedgerSizes,
                         ::testing::Values(0, 1, 255, 256, 257, 65535, 65536, 65537));

TEST(Ledger, TornTailIsCutBackOnOpen) {
  TempDir tmp;
  const std::string dir = tmp / "ledger";
  ASSERT_TRUE(FileLedger::Create(dir, "test.example/log").ok());
  std::mt19937_64 rng(1);
  {
    std::unique_ptr<Ledger> ledger;
    ASSERT_TRUE(FileLedger::Open(dir, FileLedger::Mode::kReadWrite, &ledger).ok());
    AppendRange(*ledger, 0, 1000, rng);
  }
  // What an interrupted batch leaves: data past the checkpoint in every file.
  for (const char* name : {"entries", "bundles", "hashes.0", "hashes.1", "hashes.2"}) {
    std::ofstream(dir + "/" + name, std::ios::app | std::ios::binary) << std::string(777, 'x');
  }
  std::unique_ptr<Ledger> ledger;
  Status s = FileLedger::Open(dir, FileLedger::Mode::kReadWrite, &ledger);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ledger->size(), 1000u);
  EXPECT_EQ(std::filesystem::file_size(dir + "/hashes.0"), 1000u * 32);
  EXPECT_EQ(std::filesystem::file_size(dir + "/hashes.2"), 0u);
  AppendRange(*ledger, 1000, 70000, rng);
  VerifyResult verified;
  s = VerifyLog(*ledger, ledger->verifier(), &verified);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ledger->checkpoint().root, ReferenceLog(70000).root);
}

// Issue 14: after a failed commit (a full disk) the ledger refused every
// commit until the process reopened it. Recover() cuts the failed tail in
// place and, once the disk takes writes again, commits go on: nothing that
// was acknowledged is lost and nothing failed is in the tree.
TEST(Ledger, AFailedCommitIsRecoveredInPlace) {
  if (::geteuid() != 0) GTEST_FAIL() << "needs root to mount a small tmpfs";
  TempDir tmp;
  const std::string small = tmp / "small";
  ASSERT_TRUE(std::filesystem::create_directory(small));
  ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=2m"), 0) << strerror(errno);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{small};
  const std::string dir = small + "/ledger";
  ASSERT_TRUE(FileLedger::Create(dir, "test.example/log").ok());
  std::unique_ptr<Ledger> ledger;
  ASSERT_TRUE(FileLedger::Open(dir, FileLedger::Mode::kReadWrite, &ledger).ok());
  std::mt19937_64 rng(3);
  AppendRange(*ledger, 0, 1000, rng);
  {  // fill the disk
    std::ofstream fill(small + "/fill", std::ios::binary);
    std::string block(16 * 1024, 'x');
    while (fill.write(block.data(), block.size())) {
    }
  }
  // Commits of 3,000 entries (about 100 KiB) until one fails.
  uint64_t size = ledger->size();
  Status s;
  for (int i = 0; i < 100 && s.ok(); ++i) {
    EntryBatch batch;
    for (uint64_t k = size; k < size + 3000; ++k) ASSERT_TRUE(batch.Add(EntryText(k)).ok());
    const EntryBatch* batches[] = {&batch};
    uint64_t first = 0;
    s = ledger->Commit(batches, &first);
    if (s.ok()) size += 3000;
  }
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(ledger->write_failed());
  EXPECT_EQ(ledger->size(), size);
  // Still full: recovering cuts the tail, but the next commit fails again.
  (void)ledger->Recover();
  {
    EntryBatch batch;
    for (uint64_t k = size; k < size + 3000; ++k) ASSERT_TRUE(batch.Add(EntryText(k)).ok());
    const EntryBatch* batches[] = {&batch};
    uint64_t first = 0;
    EXPECT_FALSE(ledger->Commit(batches, &first).ok());
  }
  EXPECT_EQ(ledger->size(), size);
  // Room again: recovered in place, and appending goes on from `size`.
  std::filesystem::remove(small + "/fill");
  s = ledger->Recover();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(ledger->write_failed());
  AppendRange(*ledger, size, size + 5000, rng);
  VerifyResult verified;
  s = VerifyLog(*ledger, ledger->verifier(), &verified);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ledger->checkpoint().root, ReferenceLog(size + 5000).root);
  // And a fresh open agrees with what the recovered ledger says.
  ledger.reset();
  s = FileLedger::Open(dir, FileLedger::Mode::kReadWrite, &ledger);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(ledger->size(), size + 5000);
}

TEST(Ledger, MissingCommittedDataIsCorruptionNotATornTail) {
  TempDir tmp;
  const std::string dir = tmp / "ledger";
  ASSERT_TRUE(FileLedger::Create(dir, "test.example/log").ok());
  std::mt19937_64 rng(2);
  {
    std::unique_ptr<Ledger> ledger;
    ASSERT_TRUE(FileLedger::Open(dir, FileLedger::Mode::kReadWrite, &ledger).ok());
    AppendRange(*ledger, 0, 300, rng);
  }
  std::filesystem::resize_file(dir + "/entries", std::filesystem::file_size(dir + "/entries") - 1);
  std::unique_ptr<Ledger> ledger;
  for (auto mode : {FileLedger::Mode::kReadWrite, FileLedger::Mode::kReadOnly}) {
    Status s = FileLedger::Open(dir, mode, &ledger);
    EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
    EXPECT_NE(s.message().find("entries"), std::string::npos) << s.ToString();
  }
}

TEST(Ledger, BadInputIsRefusedAndChangesNothing) {
  TempDir tmp;
  const std::string dir = tmp / "ledger";
  std::unique_ptr<Ledger> ledger;
  EXPECT_EQ(FileLedger::Open(tmp / "missing", FileLedger::Mode::kReadOnly, &ledger).code(),
            Status::Code::kNotFound);
  EXPECT_FALSE(
      FileLedger::Open(tmp.path(), FileLedger::Mode::kReadOnly, &ledger).ok());  // not a ledger
  EXPECT_FALSE(FileLedger::Create(dir, "bad origin").ok());
  EXPECT_FALSE(FileLedger::Create(dir, "").ok());
  ASSERT_TRUE(FileLedger::Create(dir, "test.example/log").ok());
  EXPECT_EQ(FileLedger::Create(dir, "test.example/log").code(), Status::Code::kAlreadyExists);
  EXPECT_EQ(std::filesystem::status(dir + "/key").permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);

  EntryBatch batch;
  EXPECT_TRUE(batch.Add(std::string(kMaxEntrySize, 'a')).ok());
  EXPECT_EQ(batch.Add(std::string(kMaxEntrySize + 1, 'a')).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(batch.size(), 1u);

  ASSERT_TRUE(FileLedger::Open(dir, FileLedger::Mode::kReadWrite, &ledger).ok());
  std::unique_ptr<Ledger> second;
  EXPECT_EQ(FileLedger::Open(dir, FileLedger::Mode::kReadWrite, &second).code(),
            Status::Code::kFailedPrecondition);  // one writer at a time
  ASSERT_TRUE(FileLedger::Open(dir, FileLedger::Mode::kReadOnly, &second).ok());
  const EntryBatch* batches[] = {&batch};
  uint64_t first;
  EXPECT_EQ(second->Commit(batches, &first).code(), Status::Code::kFailedPrecondition);
  std::vector<Hash> proof;
  EXPECT_FALSE(ledger->InclusionProof(0, 1, &proof).ok());  // beyond the tree
  ASSERT_TRUE(ledger->Commit(batches, &first).ok());
  EXPECT_EQ(first, 0u);
  std::string entry;
  ASSERT_TRUE(ledger->ReadEntry(0, &entry).ok());
  EXPECT_EQ(entry, std::string(kMaxEntrySize, 'a'));
  EXPECT_FALSE(ledger->ReadEntry(1, &entry).ok());
  EXPECT_FALSE(ledger->ConsistencyProof(1, 2, &proof).ok());
}

}  // namespace
}  // namespace latch::ledger
