// The ledger appended in PostgreSQL (issue 17), against a real PostgreSQL 15
// cluster the test starts in its own directory: the same entries under the
// same key give byte-identical tiles and checkpoints in files and in the
// database; one sequencer at a time, and the next one extends the same
// tree; a writer whose turn passed cannot append and says it steps down;
// a database that goes away stops commits, which resume when it returns.
#include "collector/ledger/postgres/postgres_ledger.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <random>
#include <thread>

#include "collector/ledger/file_ledger.h"
#include "collector/ledger/verifier.h"
#include "lib/storage/append_file.h"
#include "lib/tlog/proof.h"
#include "postgres_cluster.h"
#include "temp_dir.h"

namespace latch::ledger::postgres {
namespace {

constexpr char kOrigin[] = "pg.example/ledger";

std::string EntryText(uint64_t i) {
  return "entry-" + std::to_string(i) + std::string(i % 97, 'x');
}

// Commits entries [from, to) in batches of random sizes (the same seed gives
// the same cadence), each batch split over one to three EntryBatches.
Status Append(Ledger& ledger, uint64_t from, uint64_t to, uint64_t seed) {
  std::mt19937_64 rng(seed);
  while (from < to) {
    const uint64_t n = std::min<uint64_t>(to - from, 1 + rng() % 600);
    std::vector<EntryBatch> ordered(1 + rng() % 3);
    const uint64_t per = (n + ordered.size() - 1) / ordered.size();
    for (uint64_t i = from; i < from + n; ++i) {
      LATCH_RETURN_IF_ERROR(ordered[(i - from) / per].Add(EntryText(i)));
    }
    std::vector<const EntryBatch*> batches;
    for (const EntryBatch& b : ordered) batches.push_back(&b);
    uint64_t first = 0;
    LATCH_RETURN_IF_ERROR(ledger.Commit(batches, &first));
    if (first != from) return Status::Corruption("first index " + std::to_string(first));
    from += n;
  }
  return Status::Ok();
}

class PostgresLedgerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LATCH_START_POSTGRES_OR_SKIP(cluster_);
    ASSERT_TRUE(tlog::NoteSigner::Generate(kOrigin, &signer_).ok());
    ASSERT_TRUE(PostgresLog::Init(cluster_.Conninfo(), kOrigin).ok());
  }
  std::unique_ptr<PostgresLedger> OpenLedger() {
    std::unique_ptr<PostgresLedger> l;
    Status s = PostgresLedger::Open(cluster_.Conninfo(), "[storage] postgres", signer_, &l);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return l;
  }
  // As a standby does: tries for the lock until it is free (a session that
  // ended releases it as soon as its server process has gone).
  static bool BecomeSequencer(PostgresLedger& l, int timeout_ms = 5000) {
    for (int i = 0; i < timeout_ms / 25; ++i) {
      bool became = false;
      Status s = l.TryBecomeSequencer(&became);
      EXPECT_TRUE(s.ok()) << s.ToString();
      if (became) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return false;
  }
  std::unique_ptr<PostgresLedger> OpenSequencer() {
    auto l = OpenLedger();
    EXPECT_TRUE(BecomeSequencer(*l));
    return l;
  }
  // A file ledger under the same key (its key file replaced before open).
  std::unique_ptr<FileLedger> OpenFiles() {
    const std::string dir = dir_ / "files";
    EXPECT_TRUE(FileLedger::Create(dir, kOrigin).ok());
    EXPECT_TRUE(storage::WriteFileAtomically(dir, "key", signer_.ToString() + "\n", 0600).ok());
    EXPECT_TRUE(
        storage::WriteFileAtomically(dir, "vkey", signer_.verifier().ToString() + "\n").ok());
    // Create signed the empty checkpoint with its own key: sign it again.
    std::string note;
    EXPECT_TRUE(
        signer_
            .Sign(tlog::Checkpoint{kOrigin, 0, tlog::MerkleHasher::EmptyRoot(), {}}.Body(), &note)
            .ok());
    EXPECT_TRUE(storage::WriteFileAtomically(dir, "checkpoint", note).ok());
    std::unique_ptr<FileLedger> l;
    Status s = FileLedger::Open(dir, FileLedger::Mode::kReadWrite, &l);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return l;
  }
  // Every tile of both at `a`'s size, full and narrower partials, byte for byte.
  static void ExpectSameTiles(Ledger& a, Ledger& b) {
    ASSERT_EQ(a.size(), b.size());
    const uint64_t size = a.size();
    for (int level = tlog::TileId::kEntries;; ++level) {
      const uint64_t count = level < 0 ? size : tlog::HashesAtLevel(size, level);
      if (count == 0) break;
      for (uint64_t index = 0; index * 256 < count; ++index) {
        const auto full = static_cast<uint32_t>(std::min<uint64_t>(256, count - index * 256));
        for (uint32_t width : {full, full > 1 ? full / 2 : full, uint32_t{1}}) {
          tlog::TileId id{level, index, width};
          std::string x, y;
          ASSERT_TRUE(a.ReadTile(id, &x).ok()) << id.Path();
          Status s = b.ReadTile(id, &y);
          ASSERT_TRUE(s.ok()) << id.Path() << ": " << s.ToString();
          ASSERT_EQ(x, y) << id.Path();
        }
      }
    }
    EXPECT_EQ(a.checkpoint_note(), b.checkpoint_note());
  }

  testing::PostgresCluster cluster_;
  TempDir dir_;
  tlog::NoteSigner signer_;
};

TEST_F(PostgresLedgerTest, FilesAndDatabaseGiveIdenticalTilesAndCheckpoints) {
  auto files = OpenFiles();
  auto db = OpenSequencer();
  EXPECT_EQ(db->checkpoint_note(), files->checkpoint_note());  // the empty tree
  // Sizes that stop inside bundles, on tile edges, and across levels.
  for (uint64_t to : {1u, 255u, 256u, 257u, 5000u, 65536u, 70001u}) {
    const uint64_t from = files->size();
    ASSERT_TRUE(Append(*files, from, to, to).ok());
    Status s = Append(*db, from, to, to);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ExpectSameTiles(*files, *db);
  }
  // Proofs and entries read through the database agree with the files.
  std::vector<tlog::Hash> p1, p2;
  ASSERT_TRUE(files->InclusionProof(12345, 70001, &p1).ok());
  ASSERT_TRUE(db->InclusionProof(12345, 70001, &p2).ok());
  EXPECT_EQ(p1, p2);
  ASSERT_TRUE(files->ConsistencyProof(257, 70001, &p1).ok());
  ASSERT_TRUE(db->ConsistencyProof(257, 70001, &p2).ok());
  EXPECT_EQ(p1, p2);
  std::string entry;
  ASSERT_TRUE(db->ReadEntry(69999, &entry).ok());
  EXPECT_EQ(entry, EntryText(69999));
  VerifyResult v;
  Status s = VerifyLog(*db, signer_.verifier(), &v);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(v.checkpoint.size, 70001u);
}

// A tile index a client may name (any /tile/ path parses to a uint64) but
// no tree holds: whose first entry, index * 256, overflows uint64. Not
// found, as the files answer, never "missing from the database".
TEST_F(PostgresLedgerTest, ATileIndexPastAnyTreeIsNotFound) {
  auto files = OpenFiles();
  auto db = OpenSequencer();
  ASSERT_TRUE(Append(*files, 0, 300, 1).ok());
  ASSERT_TRUE(Append(*db, 0, 300, 1).ok());
  std::unique_ptr<PostgresLog> log;
  ASSERT_TRUE(PostgresLog::Open(cluster_.Conninfo(), "storage", "", &log).ok());
  for (uint64_t index : {uint64_t{1} << 56, (uint64_t{1} << 56) + 1, UINT64_MAX}) {
    for (int level : {tlog::TileId::kEntries, 0, 1}) {
      const tlog::TileId tile{level, index, 44};
      std::string data;
      EXPECT_EQ(files->ReadTile(tile, &data).code(), Status::Code::kNotFound) << tile.Path();
      Status s = db->ReadTile(tile, &data);
      EXPECT_EQ(s.code(), Status::Code::kNotFound) << tile.Path() << ": " << s.ToString();
      s = log->ReadTile(tile, &data);
      EXPECT_EQ(s.code(), Status::Code::kNotFound) << tile.Path() << ": " << s.ToString();
    }
  }
}

TEST_F(PostgresLedgerTest, OneSequencerAtATimeAndTheNextExtendsTheSameTree) {
  auto a = OpenSequencer();
  auto b = OpenLedger();
  bool became = true;
  ASSERT_TRUE(b->TryBecomeSequencer(&became).ok());
  EXPECT_FALSE(became);  // a holds the lock
  uint64_t first = 0;
  EXPECT_EQ(b->Commit({}, &first).code(), Status::Code::kFailedPrecondition);
  ASSERT_TRUE(Append(*a, 0, 1000, 1).ok());
  const tlog::Checkpoint at_a = a->checkpoint();
  a.reset();  // its session ends, and its lock with it
  ASSERT_TRUE(BecomeSequencer(*b));
  EXPECT_EQ(b->size(), 1000u);  // what a left, read when it took over
  ASSERT_TRUE(Append(*b, 1000, 1500, 2).ok());
  std::vector<tlog::Hash> proof;
  ASSERT_TRUE(b->ConsistencyProof(1000, 1500, &proof).ok());
  EXPECT_TRUE(tlog::VerifyConsistency(1000, 1500, proof, at_a.root, b->checkpoint().root).ok());
  VerifyResult v;
  ASSERT_TRUE(VerifyLog(*b, signer_.verifier(), &v).ok());
}

// A standby's view follows what the sequencer commits, and serves it; a
// tree in the database that went back (a restore from an old backup) or
// forked (another root for a size it followed, or one the new tree does not
// extend) is refused as Corruption, and the view stays where it was.
TEST_F(PostgresLedgerTest, AStandbyFollowsTheTreeAndRefusesOneThatWentBackOrForked) {
  auto sequencer = OpenSequencer();
  ASSERT_TRUE(Append(*sequencer, 0, 300, 11).ok());
  const std::string note_at_300 = sequencer->checkpoint_note();
  auto standby = OpenLedger();
  ASSERT_EQ(standby->size(), 300u);
  ASSERT_TRUE(Append(*sequencer, 300, 700, 12).ok());
  bool grew = false;
  Status s = standby->Follow(&grew);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(grew);
  EXPECT_EQ(standby->size(), 700u);
  EXPECT_EQ(standby->checkpoint_note(), sequencer->checkpoint_note());
  std::string entry;
  ASSERT_TRUE(standby->ReadEntry(650, &entry).ok());
  EXPECT_EQ(entry, EntryText(650));
  ASSERT_TRUE(standby->Follow(&grew).ok());
  EXPECT_FALSE(grew);
  // The sequencer's own view does not move by Follow.
  ASSERT_TRUE(sequencer->Follow(&grew).ok());
  EXPECT_FALSE(grew);

  const std::string note_at_700 = standby->checkpoint_note();
  auto set_tree = [&](uint64_t size, const std::string& note) {
    std::string out;
    return cluster_.Sql("UPDATE latch_tree SET size = " + std::to_string(size) +
                            ", checkpoint = convert_to($note$" + note + "$note$, 'UTF8')",
                        &out);
  };
  ASSERT_EQ(set_tree(300, note_at_300), 0);
  s = standby->Follow(&grew);
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_NE(s.ToString().find("went back from 700 to 300"), std::string::npos) << s.ToString();
  EXPECT_EQ(standby->size(), 700u);

  // Another root for the size followed, signed with the right key.
  tlog::Hash other{};
  other[0] = 0x5a;
  std::string forged;
  ASSERT_TRUE(signer_.Sign(tlog::Checkpoint{kOrigin, 700, other, {}}.Body(), &forged).ok());
  ASSERT_EQ(set_tree(700, forged), 0);
  s = standby->Follow(&grew);
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_EQ(standby->checkpoint_note(), note_at_700);

  // A bigger tree whose root the stored hashes do not lead to.
  ASSERT_EQ(set_tree(700, note_at_700), 0);
  ASSERT_TRUE(Append(*sequencer, 700, 900, 13).ok());
  ASSERT_TRUE(signer_.Sign(tlog::Checkpoint{kOrigin, 900, other, {}}.Body(), &forged).ok());
  ASSERT_EQ(set_tree(900, forged), 0);
  s = standby->Follow(&grew);
  EXPECT_EQ(s.code(), Status::Code::kCorruption) << s.ToString();
  EXPECT_NE(s.ToString().find("does not extend"), std::string::npos) << s.ToString();
  EXPECT_EQ(standby->size(), 700u);
  EXPECT_EQ(standby->checkpoint_note(), note_at_700);
  EXPECT_FALSE(grew);

  // Put right again, the view follows.
  ASSERT_EQ(set_tree(900, sequencer->checkpoint_note()), 0);
  s = standby->Follow(&grew);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(grew);
  EXPECT_EQ(standby->size(), 900u);
}

TEST_F(PostgresLedgerTest, AWriterWhoseTurnPassedCannotAppendAndStepsDown) {
  auto a = OpenSequencer();
  ASSERT_TRUE(Append(*a, 0, 300, 3).ok());
  // a's session goes (a partition, a paused machine): the lock is free.
  std::string out;
  ASSERT_EQ(cluster_.Sql("SELECT pg_terminate_backend(pid) FROM pg_locks "
                         "WHERE locktype = 'advisory' AND objid <> 0 AND granted",
                         &out),
            0)
      << out;
  auto b = OpenSequencer();
  ASSERT_TRUE(Append(*b, 300, 400, 4).ok());
  // a comes back and tries to append at 300: refused, whatever the way.
  Status s = Append(*a, 300, 310, 5);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(a->write_failed());
  s = a->Recover();
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
  EXPECT_TRUE(a->superseded());
  EXPECT_FALSE(a->is_sequencer());
  EXPECT_FALSE(Append(*a, 300, 310, 5).ok());  // for good
  // Nothing of a's attempt is in the tree; b goes on.
  ASSERT_TRUE(Append(*b, 400, 600, 6).ok());
  std::string entry;
  ASSERT_TRUE(b->ReadEntry(305, &entry).ok());
  EXPECT_EQ(entry, EntryText(305));
  VerifyResult v;
  ASSERT_TRUE(VerifyLog(*b, signer_.verifier(), &v).ok());
  EXPECT_EQ(v.checkpoint.size, 600u);
}

// The lease: a sequencer frozen by SIGSTOP stops pinging, the server ends its
// session after kLeaseMs, and a standby takes over; resumed, the frozen one
// cannot append and steps down.
TEST_F(PostgresLedgerTest, AFrozenSequencerLosesItsLeaseAndCannotAppendWhenResumed) {
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  pid_t child = ::fork();
  if (child == 0) {
    auto a = OpenSequencer();
    int rc = Append(*a, 0, 100, 10).ok() ? 0 : 10;
    char c = 1;
    (void)!::write(ready[1], &c, 1);
    (void)!::read(go[0], &c, 1);  // frozen here by the parent, then resumed
    if (rc == 0 && Append(*a, 100, 110, 11).ok()) rc = 11;  // must be refused
    if (rc == 0 && a->Recover().ok()) rc = 12;
    if (rc == 0 && !a->superseded()) rc = 13;
    ::_exit(rc);
  }
  char c = 0;
  ASSERT_EQ(::read(ready[0], &c, 1), 1);
  ASSERT_EQ(::kill(child, SIGSTOP), 0);
  const auto frozen = std::chrono::steady_clock::now();
  auto b = OpenLedger();
  ASSERT_TRUE(BecomeSequencer(*b, 15000));
  const double took_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - frozen).count();
  EXPECT_LT(took_s, 2.0 * PostgresLedger::kLeaseMs / 1000) << "the lease held too long";
  std::printf("lease: a standby became the sequencer %.1f s after the sequencer froze\n", took_s);
  EXPECT_EQ(b->size(), 100u);
  ASSERT_TRUE(Append(*b, 100, 150, 12).ok());
  ASSERT_EQ(::kill(child, SIGCONT), 0);
  ASSERT_EQ(::write(go[1], &c, 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the resumed sequencer appended or did not step down";
  ASSERT_TRUE(Append(*b, 150, 200, 13).ok());
  VerifyResult v;
  ASSERT_TRUE(VerifyLog(*b, signer_.verifier(), &v).ok());
  EXPECT_EQ(v.checkpoint.size, 200u);
  std::string entry;
  ASSERT_TRUE(b->ReadEntry(105, &entry).ok());
  EXPECT_EQ(entry, EntryText(105));
}

TEST_F(PostgresLedgerTest, ADatabaseThatGoesAwayStopsCommitsUntilItReturns) {
  auto l = OpenSequencer();
  ASSERT_TRUE(Append(*l, 0, 700, 7).ok());
  cluster_.Crash();
  Status s = Append(*l, 700, 800, 8);
  EXPECT_EQ(s.code(), Status::Code::kIoError) << s.ToString();
  EXPECT_TRUE(l->write_failed());
  EXPECT_FALSE(l->Recover().ok());  // still down
  EXPECT_EQ(l->size(), 700u);       // what was acknowledged, still served as the tree
  ASSERT_EQ(cluster_.StartServer(), "");
  s = l->Recover();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(l->superseded());
  ASSERT_TRUE(Append(*l, 700, 800, 8).ok());
  VerifyResult v;
  s = VerifyLog(*l, signer_.verifier(), &v);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(v.checkpoint.size, 800u);
}

// The grants docs/OPERATIONS.md gives the collectors' role (SELECT and
// INSERT on the tiles; UPDATE on the tree's one row only; no DELETE) are
// enough for a sequencer, and that role cannot change, remove or empty what
// is on record.
TEST_F(PostgresLedgerTest, ASequencerWorksUnderTheDocumentedGrantsWhichCannotDelete) {
  std::string out;
  ASSERT_EQ(cluster_.Sql("CREATE ROLE latch_collector LOGIN", &out), 0) << out;
  ASSERT_EQ(cluster_.Sql("GRANT SELECT ON latch_schema TO latch_collector; "
                         "GRANT SELECT, INSERT ON latch_tiles TO latch_collector; "
                         "GRANT SELECT, UPDATE ON latch_tree TO latch_collector",
                         &out),
            0)
      << out;
  std::string conninfo = cluster_.Conninfo();
  conninfo.replace(conninfo.find("user=postgres"), 13, "user=latch_collector");
  std::unique_ptr<PostgresLedger> l;
  Status s = PostgresLedger::Open(conninfo, "[storage] postgres", signer_, &l);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(BecomeSequencer(*l));
  s = Append(*l, 0, 700, 14);  // tiles, full ones and partials grown piece by piece
  ASSERT_TRUE(s.ok()) << s.ToString();
  VerifyResult v;
  ASSERT_TRUE(VerifyLog(*l, signer_.verifier(), &v).ok());
  std::unique_ptr<PgConnection> c;
  ASSERT_TRUE(PgConnection::Connect(conninfo, "test", &c).ok());
  for (const char* sql :
       {"DELETE FROM latch_tiles", "TRUNCATE latch_tiles", "DELETE FROM latch_tree",
        "UPDATE latch_tiles SET data = ''::bytea", "UPDATE latch_schema SET version = 3",
        "INSERT INTO latch_tree VALUES ('forged', 0, ''::bytea)", "DROP TABLE latch_tiles",
        "ALTER TABLE latch_tiles DROP COLUMN data"}) {
    s = c->Exec("trying", sql);
    EXPECT_FALSE(s.ok()) << sql;
    EXPECT_NE(s.message().find("42501"), std::string::npos) << sql << ": " << s.ToString();
  }
  ASSERT_TRUE(VerifyLog(*l, signer_.verifier(), &v).ok());
  EXPECT_EQ(v.checkpoint.size, 700u);
}

// PostgreSQL's own failover: a synchronous streaming replica is promoted
// after the primary is killed. The sequencer, given both hosts with
// target_session_attrs=read-write, finds the promoted one; everything it
// acknowledged before the kill is there and proven against the promoted
// database's checkpoint, and the tree goes on from it.
TEST_F(PostgresLedgerTest, APromotedReplicaHoldsEverythingAcknowledged) {
  testing::PostgresCluster replica;
  std::string why = replica.StartReplicaOf(cluster_, /*synchronous=*/true);
  ASSERT_EQ(why, "");
  const std::string conninfo = "host=" + cluster_.dir() + "," + replica.dir() +
                               " port=5433,5433 user=postgres dbname=postgres "
                               "target_session_attrs=read-write connect_timeout=2";
  std::unique_ptr<PostgresLedger> l;
  Status s = PostgresLedger::Open(conninfo, "[storage] postgres", signer_, &l);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(BecomeSequencer(*l));
  ASSERT_TRUE(Append(*l, 0, 900, 15).ok());
  const tlog::Checkpoint acknowledged = l->checkpoint();
  cluster_.Crash();
  ASSERT_EQ(replica.Promote(), "");
  // The next commit fails (the primary is gone); the ledger recovers onto
  // the promoted database, where its last acknowledged tree is.
  EXPECT_FALSE(Append(*l, 900, 950, 16).ok());
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (!(s = l->Recover()).ok() && !l->superseded() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(l->checkpoint_note().empty(), false);
  EXPECT_EQ(l->size(), acknowledged.size);
  ASSERT_TRUE(Append(*l, 900, 1000, 16).ok());
  // Every acknowledged entry, with a proof against the promoted database's
  // tree; and that tree extends the acknowledged one.
  for (uint64_t i = 0; i < acknowledged.size; i += 37) {
    std::string entry;
    ASSERT_TRUE(l->ReadEntry(i, &entry).ok()) << i;
    EXPECT_EQ(entry, EntryText(i));
    std::vector<tlog::Hash> proof;
    ASSERT_TRUE(l->InclusionProof(i, l->size(), &proof).ok());
    EXPECT_TRUE(
        tlog::VerifyInclusion(i, l->size(),
                              tlog::MerkleHasher().Leaf(
                                  {reinterpret_cast<const uint8_t*>(entry.data()), entry.size()}),
                              proof, l->checkpoint().root)
            .ok())
        << i;
  }
  std::vector<tlog::Hash> consistency;
  ASSERT_TRUE(l->ConsistencyProof(acknowledged.size, l->size(), &consistency).ok());
  EXPECT_TRUE(tlog::VerifyConsistency(acknowledged.size, l->size(), consistency, acknowledged.root,
                                      l->checkpoint().root)
                  .ok());
  VerifyResult v;
  s = VerifyLog(*l, signer_.verifier(), &v);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(v.checkpoint.size, 1000u);
}

TEST_F(PostgresLedgerTest, ADatabaseOfAnotherOriginIsRefused) {
  tlog::NoteSigner other;
  ASSERT_TRUE(tlog::NoteSigner::Generate("other.example/ledger", &other).ok());
  std::unique_ptr<PostgresLedger> l;
  Status s = PostgresLedger::Open(cluster_.Conninfo(), "[storage] postgres", other, &l);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("pg.example/ledger"), std::string::npos) << s.ToString();
  // The same origin under another key: the stored checkpoint does not verify.
  auto a = OpenSequencer();
  ASSERT_TRUE(Append(*a, 0, 10, 9).ok());
  a.reset();
  tlog::NoteSigner impostor;
  ASSERT_TRUE(tlog::NoteSigner::Generate(kOrigin, &impostor).ok());
  s = PostgresLedger::Open(cluster_.Conninfo(), "[storage] postgres", impostor, &l);
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace latch::ledger::postgres
