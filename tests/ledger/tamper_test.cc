// Tampering with any stored byte, or cutting any file short, makes
// verification fail with a message that names the damaged place.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "collector/ledger/exporter.h"
#include "collector/ledger/file_ledger.h"
#include "collector/ledger/verifier.h"
#include "temp_dir.h"

namespace latch::ledger {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kSize = 70000;  // three tile levels, partial tiles on each

class TamperTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    ASSERT_TRUE(FileLedger::Create(*tmp_ / "ledger", "test.example/log").ok());
    std::unique_ptr<Ledger> ledger;
    ASSERT_TRUE(FileLedger::Open(*tmp_ / "ledger", FileLedger::Mode::kReadWrite, &ledger).ok());
    for (uint64_t i = 0; i < kSize;) {
      EntryBatch b;
      for (uint64_t k = 0; k < 5000 && i < kSize; ++k, ++i)
        ASSERT_TRUE(b.Add("entry " + std::to_string(i)).ok());
      const EntryBatch* batches[] = {&b};
      uint64_t first;
      ASSERT_TRUE(ledger->Commit(batches, &first).ok());
    }
    vkey_ = new tlog::NoteVerifier(ledger->verifier());
    ExportResult exported;
    ASSERT_TRUE(ExportLog(*ledger, *vkey_, *tmp_ / "export", &exported).ok());
  }
  static void TearDownTestSuite() {
    delete tmp_;
    delete vkey_;
  }

  // Copies the pristine `which` ("ledger" or "export") to a scratch directory.
  std::string Fresh(const std::string& which) {
    std::string dir = scratch_ / which;
    fs::remove_all(dir);
    fs::copy(*tmp_ / which, dir, fs::copy_options::recursive);
    return dir;
  }

  static Status Verify(const std::string& dir) {
    VerifyResult result;
    if (FileLedger::IsLedgerDirectory(dir)) {
      std::unique_ptr<Ledger> ledger;
      LATCH_RETURN_IF_ERROR(FileLedger::Open(dir, FileLedger::Mode::kReadOnly, &ledger));
      return VerifyLog(*ledger, *vkey_, &result);
    }
    DirectoryTileSource tiles(dir);
    return VerifyLog(tiles, *vkey_, &result);
  }

  static void FlipByte(const std::string& path, uint64_t offset) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    char c;
    f.get(c);
    f.seekp(static_cast<std::streamoff>(offset));
    f.put(static_cast<char>(c ^ 0x20));
  }

  // Flips `trials` random bytes of `file` (one per fresh copy) and expects
  // verify to fail naming one of `places`.
  void ExpectFlipsNamed(const std::string& which, const std::string& file,
                        std::vector<std::string> places, int trials) {
    for (int t = 0; t < trials; ++t) {
      std::string dir = Fresh(which);
      uint64_t size = fs::file_size(dir + "/" + file);
      uint64_t offset = t == 0 ? size - 1 : rng_() % size;  // always try the very end too
      FlipByte(dir + "/" + file, offset);
      Status s = Verify(dir);
      ASSERT_FALSE(s.ok()) << file << " byte " << offset << " flipped, yet verify passed";
      bool named = false;
      for (const auto& p : places) named = named || s.message().find(p) != std::string::npos;
      EXPECT_TRUE(named) << file << " byte " << offset << ": " << s.ToString();
    }
  }

  static TempDir* tmp_;
  static tlog::NoteVerifier* vkey_;
  TempDir scratch_;
  std::mt19937_64 rng_{7};
};

TempDir* TamperTest::tmp_ = nullptr;
tlog::NoteVerifier* TamperTest::vkey_ = nullptr;

TEST_F(TamperTest, PristineCopiesVerify) {
  EXPECT_TRUE(Verify(Fresh("ledger")).ok());
  EXPECT_TRUE(Verify(Fresh("export")).ok());
}

TEST_F(TamperTest, FlippedByteInLedgerFilesIsNamed) {
  ExpectFlipsNamed("ledger", "entries", {"tile/entries/"}, 25);
  ExpectFlipsNamed("ledger", "hashes.0", {"tile/0/"}, 25);
  ExpectFlipsNamed("ledger", "hashes.1", {"tile/1/"}, 10);
  ExpectFlipsNamed("ledger", "hashes.2", {"tile/2/"}, 3);
  ExpectFlipsNamed("ledger", "bundles", {"entries", "bundles"}, 10);
  ExpectFlipsNamed("ledger", "checkpoint", {"checkpoint"}, 10);
}

TEST_F(TamperTest, FlippedByteInExportedTilesIsNamed) {
  ExpectFlipsNamed("export", "tile/entries/005", {"tile/entries/005"}, 10);
  ExpectFlipsNamed("export", "tile/entries/273.p/112", {"tile/entries/273.p/112"}, 5);
  ExpectFlipsNamed("export", "tile/0/005", {"tile/0/005"}, 10);
  ExpectFlipsNamed("export", "tile/0/273.p/112", {"tile/0/273.p/112"}, 5);
  ExpectFlipsNamed("export", "tile/1/000", {"tile/1/000"}, 10);
  ExpectFlipsNamed("export", "tile/1/001.p/17", {"tile/1/001.p/17"}, 5);
  ExpectFlipsNamed("export", "tile/2/000.p/1", {"tile/2/000.p/1"}, 5);
  ExpectFlipsNamed("export", "checkpoint", {"checkpoint"}, 10);
}

TEST_F(TamperTest, TruncatedFilesAreNamed) {
  for (const char* file : {"entries", "bundles", "hashes.0", "hashes.1", "hashes.2"}) {
    std::string dir = Fresh("ledger");
    fs::resize_file(dir + "/" + file, fs::file_size(dir + "/" + file) - 1);
    Status s = Verify(dir);
    ASSERT_FALSE(s.ok()) << file;
    EXPECT_NE(s.message().find(file), std::string::npos) << s.ToString();
  }
  for (const char* file : {"checkpoint", "tile/entries/100", "tile/0/273.p/112", "tile/1/000"}) {
    std::string dir = Fresh(fs::path(file).filename() == "checkpoint" ? "ledger" : "export");
    fs::resize_file(dir + "/" + file, fs::file_size(dir + "/" + file) - 1);
    Status s = Verify(dir);
    ASSERT_FALSE(s.ok()) << file;
    EXPECT_NE(s.message().find(file), std::string::npos) << s.ToString();
  }
  std::string dir = Fresh("export");
  fs::remove(dir + "/tile/0/100");
  Status s = Verify(dir);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("tile/0/100"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace latch::ledger
