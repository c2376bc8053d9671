// latch-ledger as its users run it: exit codes, one-line errors, and bad
// input that changes nothing.
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "lib/tlog/cosignature.h"
#include "lib/tlog/signed_note.h"
#include "temp_dir.h"

namespace latch::ledger {
namespace {

namespace fs = std::filesystem;

struct Result {
  int code;
  std::string out;
  std::string err;
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

class CliTest : public ::testing::Test {
 protected:
  // Runs latch-ledger with `args` (shell words) and optional stdin text.
  Result Run(const std::string& args, const std::string& input = "") {
    std::ofstream(tmp_ / "stdin", std::ios::binary) << input;
    std::string cmd = std::string(LATCH_LEDGER_BIN) + " " + args + " <" + (tmp_ / "stdin") + " >" +
                      (tmp_ / "stdout") + " 2>" + (tmp_ / "stderr");
    int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, Slurp(tmp_ / "stdout"),
            Slurp(tmp_ / "stderr")};
  }
  static size_t Lines(const std::string& s) {
    return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
  }

  void Init() {
    Result r = Run("init " + dir_ + " --origin cli.example/log");
    ASSERT_EQ(r.code, 0) << r.err;
  }

  TempDir tmp_;
  std::string dir_ = tmp_ / "ledger";
};

TEST_F(CliTest, InitAppendCheckpointVerify) {
  Result r = Run("init " + dir_ + " --origin cli.example/log");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("cli.example/log+")) << r.out;
  EXPECT_EQ(Run("vkey " + dir_).out, r.out);

  r = Run("append " + dir_, "one\ntwo\nthree\n");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(r.out.starts_with("cli.example/log\n3\n")) << r.out;
  EXPECT_EQ(Run("checkpoint " + dir_).out, r.out);

  r = Run("verify " + dir_);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("3 entries"), std::string::npos) << r.out;

  r = Run("prove " + dir_ + " --index 1");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Lines(r.out), 2u);  // a proof in a tree of 3 for leaf 1 has two hashes
  r = Run("prove " + dir_ + " --from 1 --to 3");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Lines(r.out), 2u);
}

TEST_F(CliTest, BadInputGetsOneLineAndChangesNothing) {
  Result r = Run("append " + (tmp_ / "missing"), "x\n");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(Lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("missing"), std::string::npos);

  fs::create_directory(tmp_ / "plain");
  r = Run("verify " + (tmp_ / "plain"));
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(Lines(r.err), 1u) << r.err;

  r = Run("init " + dir_ + " --origin 'bad origin'");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(Lines(r.err), 1u) << r.err;
  EXPECT_FALSE(fs::exists(dir_ + "/format"));

  Init();
  r = Run("init " + dir_ + " --origin cli.example/log");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("already a ledger"), std::string::npos) << r.err;

  ASSERT_EQ(Run("append " + dir_, "a\nb\n").code, 0);
  const std::string before = Slurp(dir_ + "/checkpoint");
  const auto entries_size = fs::file_size(dir_ + "/entries");
  r = Run("append " + dir_, "fine\n" + std::string(70000, 'x') + "\nalso fine\n");
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(Lines(r.err), 1u) << r.err;
  EXPECT_NE(r.err.find("line 2"), std::string::npos) << r.err;
  EXPECT_EQ(Slurp(dir_ + "/checkpoint"), before);
  EXPECT_EQ(fs::file_size(dir_ + "/entries"), entries_size);

  for (const std::string& args :
       {"prove " + dir_ + " --index 2", "prove " + dir_ + " --index 0 --size 3",
        "prove " + dir_ + " --from 3", "prove " + dir_ + " --from 1 --to 5"}) {
    r = Run(args);
    EXPECT_NE(r.code, 0) << args;
    EXPECT_EQ(Lines(r.err), 1u) << args << ": " << r.err;
    EXPECT_NE(r.err.find("beyond"), std::string::npos) << args << ": " << r.err;
  }
  EXPECT_EQ(Run("prove " + dir_).code, 2);  // neither --index nor --from
  EXPECT_EQ(Run("frobnicate " + dir_).code, 2);
}

// Issue 15: append checked its commits' results before the last commit had
// reported, so a disk that filled during it printed a checkpoint and exited
// 0. On a 1 MiB tmpfs, 2 MB of entries must fail, say why, and print nothing.
TEST_F(CliTest, AppendOnAFullDiskFailsAndPrintsNoCheckpoint) {
  if (::geteuid() != 0) GTEST_FAIL() << "needs root to mount a small tmpfs";
  std::string small = tmp_ / "small";
  ASSERT_TRUE(fs::create_directory(small));
  ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=1m"), 0) << strerror(errno);
  std::string dir = small + "/ledger";
  ASSERT_EQ(Run("init " + dir + " --origin cli.example/log").code, 0);
  std::string lines;
  for (int i = 0; i < 2000; ++i) lines += std::string(1000, 'a' + i % 26) + "\n";
  Result r = Run("append " + dir, lines);
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("space"), std::string::npos) << r.err;
  EXPECT_EQ(Lines(r.err), 1u) << r.err;
  ::umount2(small.c_str(), MNT_DETACH);
}

TEST_F(CliTest, VerifyNamesTamperingAndChecksExports) {
  Init();
  std::string lines;
  for (int i = 0; i < 600; ++i) lines += "line " + std::to_string(i) + "\n";
  ASSERT_EQ(Run("append " + dir_, lines).code, 0);

  Result r = Run("export " + dir_ + " " + (tmp_ / "out"));
  ASSERT_EQ(r.code, 0) << r.err;
  r = Run("verify " + (tmp_ / "out"));
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.err.find("--vkey"), std::string::npos) << r.err;
  r = Run("verify " + (tmp_ / "out") + " --vkey " + dir_ + "/vkey");
  EXPECT_EQ(r.code, 0) << r.err;
  r = Run("export " + dir_ + " " + (tmp_ / "out"));
  EXPECT_NE(r.code, 0);  // refuses to write over an existing export

  {
    std::fstream f(tmp_ / "out/tile/entries/001", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('#');
  }
  r = Run("verify " + (tmp_ / "out") + " --vkey " + dir_ + "/vkey");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("tile/entries/001"), std::string::npos) << r.err;
}

// Rolling the ledger back to an older copy is caught against a checkpoint
// saved earlier, whether it stays shorter or is regrown with other entries.
TEST_F(CliTest, RollbackIsDetectedAgainstASavedCheckpoint) {
  Init();
  ASSERT_EQ(Run("append " + dir_, "1\n2\n3\n4\n5\n").code, 0);
  fs::copy(dir_, tmp_ / "backup", fs::copy_options::recursive);
  ASSERT_EQ(Run("append " + dir_, "6\n7\n8\n9\n10\n").code, 0);
  fs::copy_file(dir_ + "/checkpoint", tmp_ / "saved");
  ASSERT_EQ(Run("append " + dir_, "11\n").code, 0);

  Result r = Run("prove " + dir_ + " --since " + (tmp_ / "saved"));
  EXPECT_EQ(r.code, 0) << r.err;  // honest growth is consistent

  fs::remove_all(dir_);
  fs::rename(tmp_ / "backup", dir_);
  r = Run("prove " + dir_ + " --since " + (tmp_ / "saved"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("rolled back"), std::string::npos) << r.err;

  ASSERT_EQ(Run("append " + dir_, "six\nseven\neight\nnine\nten\neleven\n").code, 0);
  r = Run("prove " + dir_ + " --since " + (tmp_ / "saved"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("not consistent"), std::string::npos) << r.err;
  EXPECT_EQ(Run("verify " + dir_).code, 0);  // on its own the forged history is well-formed
}

// An exported tree (a backup, a mirror) answers prove as the ledger does,
// with the key from a trusted place: its proofs are the ledger's, it extends
// a checkpoint saved earlier, and tiles changed after the export are refused.
TEST_F(CliTest, ProveWorksOnAnExportedTree) {
  Init();
  ASSERT_EQ(Run("append " + dir_, "1\n2\n3\n4\n5\n").code, 0);
  fs::copy_file(dir_ + "/checkpoint", tmp_ / "saved");
  ASSERT_EQ(Run("append " + dir_, "6\n7\n8\n").code, 0);
  const std::string out = tmp_ / "out";
  ASSERT_EQ(Run("export " + dir_ + " " + out).code, 0);
  const std::string vkey = " --vkey " + dir_ + "/vkey";

  Result r = Run("prove " + out + vkey + " --since " + (tmp_ / "saved"));
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, Run("prove " + dir_ + " --since " + (tmp_ / "saved")).out);
  r = Run("prove " + out + vkey + " --index 3");
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, Run("prove " + dir_ + " --index 3").out);
  EXPECT_EQ(Lines(r.out), 3u);
  r = Run("prove " + out + vkey + " --from 2 --to 9");
  EXPECT_EQ(r.code, 1);  // beyond the exported tree
  EXPECT_NE(r.err.find("beyond"), std::string::npos) << r.err;

  r = Run("prove " + out + " --since " + (tmp_ / "saved"));  // an export carries no key
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("--vkey"), std::string::npos) << r.err;
  r = Run("prove " + (tmp_ / "nothing") + vkey + " --index 0");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("neither a ledger nor an exported tree"), std::string::npos) << r.err;

  // A forged entry tile whose hashes were recomputed would need a new level-0
  // hash tile; change the stored hashes themselves and the root no longer holds.
  {
    std::fstream f(out + "/tile/0/000.p/8", std::ios::in | std::ios::out | std::ios::binary);
    ASSERT_TRUE(f.good());
    f.seekp(40);
    f.put('#');
  }
  r = Run("prove " + out + vkey + " --since " + (tmp_ / "saved"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("do not lead to the checkpoint"), std::string::npos) << r.err;
}

}  // namespace
// reindex rebuilds the events index beside the ledger (where latch-collector
// keeps it), or where --index says, and replaces an old one only when done.
TEST_F(CliTest, ReindexRebuildsTheEventsIndex) {
  Init();
  ASSERT_EQ(Run("append " + dir_, "one\ntwo\nthree\n").code, 0);
  Result r = Run("reindex " + dir_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("3 entries indexed"), std::string::npos) << r.out;
  EXPECT_TRUE(std::filesystem::exists(tmp_ / "index.sqlite"));
  std::ofstream(tmp_ / "other.sqlite") << "not an index";
  r = Run("reindex " + dir_ + " --index " + (tmp_ / "other.sqlite"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(tmp_ / "other.sqlite.rebuild"));
  r = Run("reindex " + (tmp_ / "missing"));
  EXPECT_EQ(r.code, 1);
  EXPECT_EQ(Lines(r.err), 1u) << r.err;
}

// --witness (issue 18): a ledger held to a checkpoint that pinned witnesses
// cosigned. The witnesses here are keys the test cosigns with, as
// latch-witness would.
class CliWitnessTest : public CliTest {
 protected:
  void SetUp() override {
    for (const char* name : {"witness.example/w1", "witness.example/w2"}) {
      tlog::CosignatureSigner w;
      ASSERT_TRUE(tlog::CosignatureSigner::Generate(name, &w).ok());
      std::ofstream(tmp_ / (std::string(name).substr(16) + ".vkey")) << w.verifier().ToString();
      witnesses_.push_back(w);
    }
  }
  // The ledger's checkpoint now, cosigned by the witnesses `which` names.
  std::string Witnessed(const std::string& dir, const std::vector<size_t>& which) {
    std::string note = Run("checkpoint " + dir).out;
    std::string_view text;
    std::vector<tlog::NoteSignature> sigs;
    EXPECT_TRUE(tlog::SplitNote(note, &text, &sigs).ok()) << note;
    std::string lines;
    for (size_t i : which) {
      std::string line;
      EXPECT_TRUE(witnesses_[i].Cosign(text, 1'790'000'000 + i, &line).ok());
      lines += line;
    }
    return note + lines;
  }
  std::string Keys() {
    return " --witness " + (tmp_ / "w1.vkey") + " --witness " + (tmp_ / "w2.vkey");
  }
  std::vector<tlog::CosignatureSigner> witnesses_;
};

TEST_F(CliWitnessTest, VerifiesThatTheLedgerExtendsWhatTheWitnessesCosigned) {
  Init();
  ASSERT_EQ(Run("append " + dir_, "one\n").code, 0);
  fs::copy(dir_, tmp_ / "early", fs::copy_options::recursive);  // a copy at size 1
  ASSERT_EQ(Run("append " + dir_, "two\nthree\n").code, 0);
  std::ofstream(tmp_ / "both") << Witnessed(dir_, {0, 1});
  std::ofstream(tmp_ / "one") << Witnessed(dir_, {0});
  ASSERT_EQ(Run("append " + dir_, "four\nfive\n").code, 0);

  Result r = Run("verify " + dir_ + Keys() + " --witnessed " + (tmp_ / "both"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("ok: witnessed: the first 3 entries, cosigned by 2 of 2 witnesses"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("2 later entries not witnessed yet"), std::string::npos) << r.out;
  // By default, the witnessed checkpoint a collector keeps beside its ledger.
  fs::copy_file(tmp_ / "both", tmp_ / "witnessed.checkpoint");
  r = Run("verify " + dir_ + Keys() + " --quorum 2");
  EXPECT_EQ(r.code, 0) << r.err;

  // Too few cosignatures for the quorum asked.
  r = Run("verify " + dir_ + Keys() + " --witnessed " + (tmp_ / "one"));
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_NE(r.err.find("has 1 (witness.example/w1) of the 2 witness cosignatures required"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(Run("verify " + dir_ + Keys() + " --quorum 1 --witnessed " + (tmp_ / "one")).code, 0);

  // A ledger shorter than what the witnesses saw: rolled back.
  r = Run("verify " + (tmp_ / "early") + Keys() + " --witnessed " + (tmp_ / "both"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("the witnesses cosigned 3 entries, the ledger has 1"), std::string::npos)
      << r.err;
  // The same key over another history (a split view): another root at 3.
  ASSERT_EQ(Run("append " + (tmp_ / "early"), "deux\ntrois\nquatre\n").code, 0);
  r = Run("verify " + (tmp_ / "early") + Keys() + " --witnessed " + (tmp_ / "both"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("another root than the witnesses cosigned"), std::string::npos) << r.err;

  // A cosignature that does not verify, and usage mistakes.
  std::string forged = Slurp(tmp_ / "both");
  forged[forged.size() - 6] = forged[forged.size() - 6] == 'A' ? 'B' : 'A';
  std::ofstream(tmp_ / "forged") << forged;
  r = Run("verify " + dir_ + Keys() + " --witnessed " + (tmp_ / "forged"));
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("invalid"), std::string::npos) << r.err;
  EXPECT_NE(Run("verify " + dir_ + " --quorum 1").code, 0);
  EXPECT_NE(Run("verify " + dir_ + Keys() + " --quorum 3 --witnessed " + (tmp_ / "both")).code, 0);
  EXPECT_NE(Run("verify " + (tmp_ / "early") + Keys()).code, 0);  // no witnessed checkpoint
  EXPECT_NE(Run("verify " + dir_ + " --witness not-a-key --witnessed " + (tmp_ / "both")).code, 0);
}

}  // namespace latch::ledger
