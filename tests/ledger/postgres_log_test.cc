// The ledger kept in PostgreSQL (issue 17), against a real PostgreSQL 15
// cluster the test starts in its own directory: a file ledger copied in is
// served byte for byte as the files serve it (every tile, full and partial,
// and the checkpoint) and verifies; the tree moves only by compare-and-set;
// a forked, foreign or newer-schema database is refused; an unreachable one
// is a one-line error naming the setting.
#include "collector/ledger/postgres/postgres_log.h"

#include <gtest/gtest.h>

#include <random>

#include "collector/ledger/file_ledger.h"
#include "collector/ledger/verifier.h"
#include "postgres_cluster.h"
#include "run_tool.h"
#include "temp_dir.h"

namespace latch::ledger::postgres {
namespace {

constexpr char kOrigin[] = "pg.example/ledger";

void Append(Ledger& ledger, uint64_t from, uint64_t to, std::mt19937_64& rng) {
  while (from < to) {
    uint64_t n = std::min<uint64_t>(to - from, 1 + rng() % 700);
    EntryBatch batch;
    for (uint64_t i = from; i < from + n; ++i) {
      ASSERT_TRUE(batch.Add("entry-" + std::to_string(i) + std::string(i % 97, 'x')).ok());
    }
    const EntryBatch* batches[] = {&batch};
    uint64_t first = 0;
    ASSERT_TRUE(ledger.Commit(batches, &first).ok());
    from += n;
  }
}

// Every tile of `ledger`'s tree, whole, as a sequencer hands them to Append.
std::vector<TileRow> TilesOfTree(Ledger& ledger) {
  std::vector<TileRow> rows;
  const uint64_t size = ledger.size();
  for (int level = tlog::TileId::kEntries;; ++level) {
    const uint64_t count = level < 0 ? size : tlog::HashesAtLevel(size, level);
    if (count == 0) break;
    for (uint64_t index = 0; index * 256 < count; ++index) {
      TileRow row{
          {level, index, static_cast<uint32_t>(std::min<uint64_t>(256, count - index * 256))}, {}};
      EXPECT_TRUE(ledger.ReadTile(row.id, &row.data).ok()) << row.id.Path();
      rows.push_back(std::move(row));
    }
  }
  return rows;
}

class PostgresLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LATCH_START_POSTGRES_OR_SKIP(cluster_);
    ASSERT_TRUE(FileLedger::Create(dir_ / "files", kOrigin).ok());
    ASSERT_TRUE(FileLedger::Open(dir_ / "files", FileLedger::Mode::kReadWrite, &files_).ok());
  }
  // Every tile the file ledger serves at its size, read from both.
  void ExpectSameTiles(PostgresLog& log) {
    const uint64_t size = files_->size();
    size_t compared = 0;
    for (int level = tlog::TileId::kEntries;; ++level) {
      const uint64_t count = level < 0 ? size : tlog::HashesAtLevel(size, level);
      if (count == 0) break;
      for (uint64_t index = 0; index * 256 < count; ++index) {
        const auto full = static_cast<uint32_t>(std::min<uint64_t>(256, count - index * 256));
        // The tile, and narrower partials of it (older trees' views).
        for (uint32_t width : {full, full > 1 ? full / 2 : full, uint32_t{1}}) {
          tlog::TileId id{level, index, width};
          std::string from_files, from_db;
          ASSERT_TRUE(files_->ReadTile(id, &from_files).ok()) << id.Path();
          Status s = log.ReadTile(id, &from_db);
          ASSERT_TRUE(s.ok()) << id.Path() << ": " << s.ToString();
          ASSERT_EQ(from_db, from_files) << id.Path();
          ++compared;
        }
      }
      // Past the tree: served by neither.
      std::string none;
      tlog::TileId beyond{level, count / 256, static_cast<uint32_t>(count % 256 + 1)};
      if (beyond.width <= 256) {
        EXPECT_EQ(log.ReadTile(beyond, &none).code(), Status::Code::kNotFound) << beyond.Path();
      }
    }
    std::string a, b;
    ASSERT_TRUE(files_->ReadCheckpoint(&a).ok());
    ASSERT_TRUE(log.ReadCheckpoint(&b).ok());
    EXPECT_EQ(a, b);
    EXPECT_GT(compared, 0u);
  }

  testing::PostgresCluster cluster_;
  TempDir dir_;
  std::unique_ptr<Ledger> files_;
};

TEST_F(PostgresLogTest, ACopiedLedgerIsServedByteForByteAndVerifies) {
  std::mt19937_64 rng(17);
  Append(*files_, 0, 70000, rng);  // full and partial bundles, three levels of tiles
  ASSERT_TRUE(PostgresLog::Init(cluster_.Conninfo(), kOrigin).ok());
  ASSERT_TRUE(PostgresLog::Init(cluster_.Conninfo(), kOrigin).ok());  // idempotent
  std::unique_ptr<PostgresLog> log;
  ASSERT_TRUE(PostgresLog::Open(cluster_.Conninfo(), "storage", kOrigin, &log).ok());
  MigrateResult r;
  Status s = MigrateLog(*files_, files_->verifier(), *log, &r);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(r.size, 70000u);
  EXPECT_GT(r.tiles_written, 273u);
  EXPECT_EQ(r.tiles_checked, r.tiles_written);
  ExpectSameTiles(*log);
  VerifyResult v;
  s = VerifyLog(*log, files_->verifier(), &v);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(v.checkpoint.size, 70000u);

  // The file ledger grows; a second copy catches the database up (the
  // partial tiles at the old edge stay, and are still served as prefixes).
  Append(*files_, 70000, 70777, rng);
  MigrateResult again;
  s = MigrateLog(*files_, files_->verifier(), *log, &again);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(again.size, 70777u);
  EXPECT_GT(again.tiles_present, 0u);
  ExpectSameTiles(*log);
  ASSERT_TRUE(VerifyLog(*log, files_->verifier(), &v).ok());
}

TEST_F(PostgresLogTest, TheTreeMovesOnlyFromTheSizeTheWriterRead) {
  std::mt19937_64 rng(3);
  Append(*files_, 0, 300, rng);
  ASSERT_TRUE(PostgresLog::Init(cluster_.Conninfo(), kOrigin).ok());
  std::unique_ptr<PostgresLog> a, b;
  ASSERT_TRUE(PostgresLog::Open(cluster_.Conninfo(), "storage", kOrigin, &a).ok());
  ASSERT_TRUE(PostgresLog::Open(cluster_.Conninfo(), "storage", kOrigin, &b).ok());
  MigrateResult r;
  ASSERT_TRUE(MigrateLog(*files_, files_->verifier(), *a, &r).ok());
  // b read size 0 before a moved the tree: its move from 0 is refused, and
  // what it wrote is not served.
  std::string note = files_->checkpoint_note();
  AppendResult moved;
  Status s = b->Append(0, {}, 300, note, &moved);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("another writer"), std::string::npos) << s.ToString();
  EXPECT_TRUE(moved.moved_elsewhere);
  uint64_t size = 0;
  std::string held;
  ASSERT_TRUE(b->ReadState(&size, &held).ok());
  EXPECT_EQ(size, 300u);
  // A tile the tree holds already is never written again, whatever bytes
  // a writer offers for it: history stays as it was.
  std::string tile, stored;
  ASSERT_TRUE(files_->ReadTile({0, 0, 256}, &tile).ok());
  tile[5] ^= 1;
  AppendResult again;
  s = b->Append(300, {{{0, 0, 256}, tile}}, 300, note, &again);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(again.rows_written, 0u);
  EXPECT_EQ(again.rows_present, 1u);
  ASSERT_TRUE(b->ReadTile({0, 0, 256}, &stored).ok());
  EXPECT_NE(stored, tile);
  ASSERT_TRUE(files_->ReadTile({0, 0, 256}, &tile).ok());
  EXPECT_EQ(stored, tile);
  // A database whose tree is not a prefix of the source's: refused.
  TempDir other_dir;
  ASSERT_TRUE(FileLedger::Create(other_dir / "l", kOrigin).ok());
  std::unique_ptr<Ledger> other;
  ASSERT_TRUE(FileLedger::Open(other_dir / "l", FileLedger::Mode::kReadWrite, &other).ok());
  Append(*other, 0, 500, rng);
  s = MigrateLog(*other, other->verifier(), *a, &r);
  EXPECT_FALSE(s.ok());  // signed by another key, or a fork: never copied
  ASSERT_TRUE(a->ReadState(&size, &held).ok());
  EXPECT_EQ(size, 300u);
}

// The sequencer's pipelined move: refused from a stale size (and said so),
// and refused where the database holds entries past the tree it serves
// (written by something other than a sequencer); either way nothing moves.
TEST_F(PostgresLogTest, ThePipelinedAppendRefusesAStaleSizeAndEntriesPastTheTree) {
  std::mt19937_64 rng(4);
  Append(*files_, 0, 600, rng);
  ASSERT_TRUE(PostgresLog::Init(cluster_.Conninfo(), kOrigin).ok());
  std::unique_ptr<PostgresLog> log;
  ASSERT_TRUE(PostgresLog::Open(cluster_.Conninfo(), "storage", kOrigin, &log).ok());
  MigrateResult r;
  ASSERT_TRUE(MigrateLog(*files_, files_->verifier(), *log, &r).ok());
  const std::string at600 = files_->checkpoint_note();
  AppendResult result;
  Status s = log->Append(300, {}, 700, at600, &result);  // the tree is at 600, not 300
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
  EXPECT_TRUE(result.moved_elsewhere);

  // A stray piece of level-0 tile 2 from entry 88 (= 600 - 512) on, past
  // the served tree.
  std::string out;
  ASSERT_EQ(cluster_.Sql("INSERT INTO latch_tiles (level, idx, start, width, data) "
                         "VALUES (0, 2, 88, 100, '\\x00')",
                         &out),
            0)
      << out;
  Append(*files_, 600, 612, rng);
  const auto tiles = TilesOfTree(*files_);
  AppendResult again;
  s = log->Append(600, tiles, 612, files_->checkpoint_note(), &again);
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find("past the tree it serves"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("(0, 2, 88)"), std::string::npos) << s.ToString();
  EXPECT_FALSE(again.moved_elsewhere);
  uint64_t size = 0;
  std::string held;
  ASSERT_TRUE(log->ReadState(&size, &held).ok());
  EXPECT_EQ(size, 600u);
  EXPECT_EQ(held, at600);
  VerifyResult v;
  ASSERT_TRUE(VerifyLog(*log, files_->verifier(), &v).ok());
}

// A tile read back is its pieces joined: many small appends (one entry
// each, so each tile is up to 256 pieces) serve byte for byte what the file
// ledger serves, at every width in between.
TEST_F(PostgresLogTest, ATileGrownOneEntryAtATimeReadsBackWhole) {
  std::mt19937_64 rng(5);
  ASSERT_TRUE(PostgresLog::Init(cluster_.Conninfo(), kOrigin).ok());
  std::unique_ptr<PostgresLog> log;
  ASSERT_TRUE(PostgresLog::Open(cluster_.Conninfo(), "storage", kOrigin, &log).ok());
  for (uint64_t n = 0; n < 300; ++n) {
    Append(*files_, n, n + 1, rng);
    MigrateResult r;
    Status s = MigrateLog(*files_, files_->verifier(), *log, &r);
    ASSERT_TRUE(s.ok()) << n << ": " << s.ToString();
  }
  ExpectSameTiles(*log);
  // Narrower partials, served as cuts of the joined pieces.
  for (uint32_t w : {1u, 2u, 17u, 255u}) {
    std::string want, got;
    ASSERT_TRUE(files_->ReadTile({tlog::TileId::kEntries, 0, w}, &want).ok());
    ASSERT_TRUE(log->ReadTile({tlog::TileId::kEntries, 0, w}, &got).ok()) << w;
    EXPECT_EQ(got, want) << w;
  }
  std::string out;
  ASSERT_EQ(cluster_.Sql("SELECT count(*) FROM latch_tiles WHERE level = -1 AND idx = 0", &out), 0);
  EXPECT_NE(out.find("256"), std::string::npos) << out;
}

// A migration writes every tile in one transaction: more pieces than one
// statement may carry parameters for (65,535; five per piece, so 13,107
// pieces) go in several statements. 1,700,000 small entries make ~13,300
// tiles.
TEST_F(PostgresLogTest, AMigrationOfMoreTilesThanOneStatementHoldsIsCopiedWhole) {
  constexpr uint64_t kEntries = 1'700'000;
  for (uint64_t from = 0; from < kEntries; from += 10'000) {
    EntryBatch batch;
    for (uint64_t i = from; i < from + 10'000; ++i) {
      ASSERT_TRUE(batch.Add(std::to_string(i)).ok());
    }
    const EntryBatch* batches[] = {&batch};
    uint64_t first = 0;
    ASSERT_TRUE(files_->Commit(batches, &first).ok());
  }
  ASSERT_TRUE(PostgresLog::Init(cluster_.Conninfo(), kOrigin).ok());
  std::unique_ptr<PostgresLog> log;
  ASSERT_TRUE(PostgresLog::Open(cluster_.Conninfo(), "storage", kOrigin, &log).ok());
  MigrateResult r;
  Status s = MigrateLog(*files_, files_->verifier(), *log, &r);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(r.size, kEntries);
  EXPECT_GT(r.tiles_written, 13'107u);
  EXPECT_EQ(r.tiles_checked, r.tiles_written);
  VerifyResult v;
  s = VerifyLog(*log, files_->verifier(), &v);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(v.checkpoint.size, kEntries);
}

TEST_F(PostgresLogTest, AForeignOrNewerOrMissingDatabaseIsRefusedWithWhy) {
  ASSERT_TRUE(PostgresLog::Init(cluster_.Conninfo(), kOrigin).ok());
  Status s = PostgresLog::Init(cluster_.Conninfo(), "other.example/ledger");
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("pg.example/ledger"), std::string::npos) << s.ToString();
  std::unique_ptr<PostgresLog> log;
  s = PostgresLog::Open(cluster_.Conninfo(), "storage", "other.example/ledger", &log);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
  std::string out;
  ASSERT_EQ(cluster_.Sql("UPDATE latch_schema SET version = 99", &out), 0) << out;
  s = PostgresLog::Open(cluster_.Conninfo(), "storage", kOrigin, &log);
  EXPECT_NE(s.message().find("schema version 99"), std::string::npos) << s.ToString();
  // A database with no ledger in it.
  ASSERT_EQ(cluster_.Sql("CREATE DATABASE empty", &out), 0) << out;
  s = PostgresLog::Open(cluster_.Conninfo("empty"), "storage", kOrigin, &log);
  EXPECT_NE(s.message().find("holds no Latch ledger"), std::string::npos) << s.ToString();
  // Nobody there: one line naming the setting.
  s = PostgresLog::Open("host=" + cluster_.dir() + " port=1 user=postgres connect_timeout=2",
                        "[storage] url", kOrigin, &log);
  EXPECT_EQ(s.code(), Status::Code::kIoError);
  EXPECT_EQ(s.message().rfind("[storage] url: cannot connect to PostgreSQL", 0), 0u)
      << s.ToString();
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.ToString();
}

// latch-ledger as an operator runs it: migrate a file ledger into the
// database, verify what the database serves, and notice a changed row.
TEST_F(PostgresLogTest, LatchLedgerMigratesAndVerifiesAgainstTheDatabase) {
  std::mt19937_64 rng(5);
  Append(*files_, 0, 1000, rng);
  const std::string vkey = files_->verifier().ToString();
  files_.reset();
  std::string out;
  ASSERT_EQ(
      testing::RunTool({LATCH_LEDGER_BIN, "migrate", dir_ / "files", "--to", cluster_.Conninfo()},
                       &out, {}, true),
      0)
      << out;
  EXPECT_NE(out.find("1000 entries"), std::string::npos) << out;
  EXPECT_NE(out.find("read back identical"), std::string::npos) << out;
  ASSERT_EQ(testing::RunTool(
                {LATCH_LEDGER_BIN, "verify", "--storage", cluster_.Conninfo(), "--vkey", vkey},
                &out, {}, true),
            0)
      << out;
  EXPECT_NE(out.find("verified: 1000 entries"), std::string::npos) << out;
  // Again: nothing new, nothing changed.
  ASSERT_EQ(
      testing::RunTool({LATCH_LEDGER_BIN, "migrate", dir_ / "files", "--to", cluster_.Conninfo()},
                       &out, {}, true),
      0)
      << out;
  EXPECT_NE(out.find("0 tiles and bundles written"), std::string::npos) << out;
  EXPECT_NE(testing::RunTool({LATCH_LEDGER_BIN, "verify", "--storage", cluster_.Conninfo()}, &out,
                             {}, true),
            0)
      << "verify without a key from elsewhere";
  // Exported from the database: a static tree that verifies on its own,
  // identical to the file ledger's export.
  ASSERT_EQ(testing::RunTool({LATCH_LEDGER_BIN, "export", "--storage", cluster_.Conninfo(),
                              "--vkey", vkey, dir_ / "from-db"},
                             &out, {}, true),
            0)
      << out;
  ASSERT_EQ(testing::RunTool({LATCH_LEDGER_BIN, "export", dir_ / "files", dir_ / "from-files"},
                             &out, {}, true),
            0)
      << out;
  ASSERT_EQ(testing::RunTool({"/usr/bin/diff", "-r", dir_ / "from-db", dir_ / "from-files"}, &out,
                             {}, true),
            0)
      << out;
  // Proofs from the database, checked against the tree it serves.
  ASSERT_EQ(testing::RunTool({LATCH_LEDGER_BIN, "prove", "--storage", cluster_.Conninfo(), "--vkey",
                              vkey, "--index", "777"},
                             &out, {}, true),
            0)
      << out;
  std::string from_files;
  ASSERT_EQ(testing::RunTool({LATCH_LEDGER_BIN, "prove", dir_ / "files", "--index", "777"},
                             &from_files, {}, true),
            0);
  EXPECT_EQ(out, from_files);
  ASSERT_EQ(testing::RunTool({LATCH_LEDGER_BIN, "prove", "--storage", cluster_.Conninfo(), "--vkey",
                              vkey, "--from", "10", "--to", "900"},
                             &out, {}, true),
            0)
      << out;
  EXPECT_EQ(testing::RunTool(
                {LATCH_LEDGER_BIN, "prove", "--storage", cluster_.Conninfo(), "--index", "1"}, &out,
                {}, true),
            1)
      << "a proof without a key from elsewhere: " << out;
  EXPECT_EQ(testing::RunTool({LATCH_LEDGER_BIN, "prove", dir_ / "files", "--storage",
                              cluster_.Conninfo(), "--index", "1"},
                             &out, {}, true),
            2)
      << out;
  // Someone with write access to the table changes an entry: caught.
  ASSERT_EQ(cluster_.Sql("UPDATE latch_tiles SET data = overlay(data placing '\\x58'::bytea "
                         "from 10) WHERE level = -1 AND idx = 1 AND width = 256",
                         &out),
            0)
      << out;
  EXPECT_EQ(testing::RunTool(
                {LATCH_LEDGER_BIN, "verify", "--storage", cluster_.Conninfo(), "--vkey", vkey},
                &out, {}, true),
            1)
      << out;
  EXPECT_NE(out.find("tile/entries/001"), std::string::npos) << out;
}

}  // namespace
}  // namespace latch::ledger::postgres
