// The agent's CheckpointWitness on its own (agent/checkpoint_witness.h): no
// collector, socket or root. A real ledger in a temporary directory makes the
// checkpoints and proofs; the witness holds the latest one it verified across
// restarts (its file), and a ledger rolled back or rewritten behind a restart
// is still caught.
#include "agent/checkpoint_witness.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "collector/ledger/entry_batch.h"
#include "collector/ledger/file_ledger.h"
#include "temp_dir.h"

namespace latch::agent {
namespace {

class CheckpointWitnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ledger::FileLedger::Create(dir_ / "ledger", "witness.example/log").ok());
    ASSERT_TRUE(
        ledger::FileLedger::Open(dir_ / "ledger", ledger::FileLedger::Mode::kReadWrite, &ledger_)
            .ok());
  }
  static void Append(ledger::Ledger& l, const std::string& tag, int count) {
    ledger::EntryBatch batch;
    for (int i = 0; i < count; ++i) ASSERT_TRUE(batch.Add(tag + std::to_string(i)).ok());
    const ledger::EntryBatch* batches[] = {&batch};
    uint64_t at = 0;
    ASSERT_TRUE(l.Commit(batches, &at).ok());
  }
  std::unique_ptr<CheckpointWitness> Witness() {
    std::unique_ptr<CheckpointWitness> w;
    Status s = CheckpointWitness::Open(dir_ / "held.checkpoint", ledger_->verifier(), &w);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return w;
  }
  // Shows `l`'s checkpoint to `w` with a proof from the size `w` holds.
  Status Show(CheckpointWitness& w, ledger::Ledger& l, std::string* alarm) {
    std::vector<tlog::Hash> proof;
    if (w.size() > 0 && w.size() <= l.size()) {
      EXPECT_TRUE(l.ConsistencyProof(w.size(), l.size(), &proof).ok());
    }
    tlog::Checkpoint shown;
    alarm->clear();
    return w.Advance(l.checkpoint_note(), w.size(), proof, &shown, alarm);
  }

  ledger::TempDir dir_;
  std::unique_ptr<ledger::Ledger> ledger_;
};

// The first checkpoint is adopted, each consistent extension held next, and
// what is held survives a restart of the agent (Save, then Open).
TEST_F(CheckpointWitnessTest, HoldsTheLatestCheckpointAcrossARestart) {
  auto w = Witness();
  EXPECT_EQ(w->size(), 0u);
  Append(*ledger_, "a", 3);
  std::string alarm;
  ASSERT_TRUE(Show(*w, *ledger_, &alarm).ok()) << alarm;
  Append(*ledger_, "b", 4);
  ASSERT_TRUE(Show(*w, *ledger_, &alarm).ok()) << alarm;
  EXPECT_EQ(w->size(), 7u);
  ASSERT_TRUE(w->Save().ok());
  auto restarted = Witness();
  EXPECT_EQ(restarted->size(), 7u);
  EXPECT_EQ(restarted->note(), ledger_->checkpoint_note());
}

// A collector whose ledger was rolled back, or rewritten from the same
// start, while the agent was down: the restarted witness refuses what it is
// shown, names why, and keeps what it held.
TEST_F(CheckpointWitnessTest, ARollbackOrARewriteBehindARestartIsCaught) {
  // Another history under the same key: a copy of the empty ledger.
  ledger_.reset();
  std::filesystem::copy(dir_ / "ledger", dir_ / "other", std::filesystem::copy_options::recursive);
  ASSERT_TRUE(
      ledger::FileLedger::Open(dir_ / "ledger", ledger::FileLedger::Mode::kReadWrite, &ledger_)
          .ok());
  std::unique_ptr<ledger::Ledger> other;
  ASSERT_TRUE(
      ledger::FileLedger::Open(dir_ / "other", ledger::FileLedger::Mode::kReadWrite, &other).ok());
  Append(*ledger_, "a", 5);
  {
    auto w = Witness();
    std::string alarm;
    ASSERT_TRUE(Show(*w, *ledger_, &alarm).ok()) << alarm;
    ASSERT_TRUE(w->Save().ok());
  }
  Append(*other, "rewritten", 3);  // shorter: rolled back
  auto w = Witness();
  std::string alarm;
  Status s = Show(*w, *other, &alarm);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(alarm, "rolled_back") << s.ToString();
  Append(*other, "rewritten-more", 4);  // longer, but not an extension
  s = Show(*w, *other, &alarm);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(alarm, "inconsistent_checkpoint") << s.ToString();
  EXPECT_EQ(w->size(), 5u);
}

// A saved checkpoint that was tampered with (or whose key is not this
// ledger's) is not adopted: the witness does not start from a lie.
TEST_F(CheckpointWitnessTest, ATamperedSavedCheckpointIsRefusedAtOpen) {
  Append(*ledger_, "a", 2);
  {
    auto w = Witness();
    std::string alarm;
    ASSERT_TRUE(Show(*w, *ledger_, &alarm).ok()) << alarm;
    ASSERT_TRUE(w->Save().ok());
  }
  std::string note;
  {
    std::ifstream in(dir_ / "held.checkpoint");
    note.assign(std::istreambuf_iterator<char>(in), {});
  }
  size_t size_line = note.find('\n') + 1;  // origin, then the size
  note[size_line] = note[size_line] == '9' ? '8' : '9';
  std::ofstream(dir_ / "held.checkpoint", std::ios::trunc) << note;
  std::unique_ptr<CheckpointWitness> w;
  Status s = CheckpointWitness::Open(dir_ / "held.checkpoint", ledger_->verifier(), &w);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.ToString().find("held.checkpoint"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace latch::agent
