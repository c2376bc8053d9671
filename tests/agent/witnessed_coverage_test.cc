// The agent's demand for witnessed checkpoints on its own
// (agent/witnessed_coverage.h): real ledgers in a temporary directory make
// the checkpoints and proofs, witness keys made here cosign them. A record
// acknowledged but not covered by a checkpoint a quorum of the agent's
// witnesses cosigned is overdue after the bound; a witnessed checkpoint of
// another history (a fork under the same key) is an alarm; one with too
// few of the agent's witnesses proves nothing.
#include "agent/witnessed_coverage.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "collector/ledger/entry_batch.h"
#include "collector/ledger/file_ledger.h"
#include "temp_dir.h"

namespace latch::agent {
namespace {

namespace fs = std::filesystem;
using Clock = WitnessedCoverage::Clock;

class WitnessedCoverageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ledger::FileLedger::Create(dir_ / "ledger", "coverage.example/log").ok());
    ledger_ = Open("ledger");
    for (const char* name : {"witness.example/a", "witness.example/b", "witness.example/c"}) {
      tlog::CosignatureSigner w;
      ASSERT_TRUE(tlog::CosignatureSigner::Generate(name, &w).ok());
      witnesses_.push_back(w);
    }
  }
  std::unique_ptr<ledger::FileLedger> Open(const std::string& name) {
    std::unique_ptr<ledger::FileLedger> l;
    EXPECT_TRUE(
        ledger::FileLedger::Open(dir_ / name, ledger::FileLedger::Mode::kReadWrite, &l).ok());
    return l;
  }
  static void Append(ledger::Ledger& l, const std::string& tag, int count) {
    ledger::EntryBatch batch;
    for (int i = 0; i < count; ++i) ASSERT_TRUE(batch.Add(tag + std::to_string(i)).ok());
    const ledger::EntryBatch* batches[] = {&batch};
    uint64_t at = 0;
    ASSERT_TRUE(l.Commit(batches, &at).ok());
  }
  // `l`'s checkpoint now, cosigned by the witnesses `which` names.
  std::string Cosigned(ledger::Ledger& l, const std::vector<size_t>& which) {
    std::string note = l.checkpoint_note();
    std::string_view text;
    std::vector<tlog::NoteSignature> sigs;
    EXPECT_TRUE(tlog::SplitNote(note, &text, &sigs).ok());
    std::string lines;
    for (size_t i : which) {
      std::string line;
      EXPECT_TRUE(witnesses_[i].Cosign(text, 1'790'000'000, &line).ok());
      lines += line;
    }
    return note + lines;
  }
  WitnessedCoverage Coverage(size_t quorum) {
    WitnessingOptions o;
    for (size_t i = 0; i < 2; ++i) o.witnesses.push_back(witnesses_[i].verifier());
    o.quorum = quorum;
    o.bound = std::chrono::seconds(30);
    return WitnessedCoverage(ledger_->verifier(), o);
  }
  // Offers `note` (of `from`'s tree) to `c`, with the proof between the
  // held size and its size, from the smaller.
  Status Offer(WitnessedCoverage& c, ledger::Ledger& from, const std::string& note,
               const tlog::Checkpoint& held, std::string* alarm) {
    tlog::Checkpoint w;
    EXPECT_TRUE(tlog::OpenCheckpoint(note, ledger_->verifier(), &w).ok());
    std::vector<tlog::Hash> proof;
    if (held.size > 0 && held.size != w.size) {
      EXPECT_TRUE(
          from.ConsistencyProof(std::min(held.size, w.size), std::max(held.size, w.size), &proof)
              .ok());
    }
    return c.Offer(note, held.size, proof, held, alarm);
  }

  ledger::TempDir dir_;
  std::unique_ptr<ledger::FileLedger> ledger_;
  std::vector<tlog::CosignatureSigner> witnesses_;
  const Clock::time_point t0_ = Clock::now();
};

TEST_F(WitnessedCoverageTest, AcknowledgedRecordsAreOverdueUntilAWitnessedCheckpointCoversThem) {
  WitnessedCoverage c = Coverage(2);
  Append(*ledger_, "a", 5);
  const std::string at5 = Cosigned(*ledger_, {0, 1});
  Append(*ledger_, "b", 5);
  const tlog::Checkpoint held = ledger_->checkpoint();  // 10, from the latest receipt
  c.Acknowledged(9, t0_);
  std::string detail;
  EXPECT_FALSE(c.Overdue(t0_ + std::chrono::seconds(30), &detail));
  EXPECT_TRUE(c.Overdue(t0_ + std::chrono::seconds(31), &detail));
  EXPECT_NE(detail.find("ledger index 9"), std::string::npos) << detail;

  // A witnessed checkpoint behind the receipts (size 5): consistent, but
  // index 9 is not covered.
  std::string alarm;
  Status s = Offer(c, *ledger_, at5, held, &alarm);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.witnessed_size(), 5u);
  EXPECT_TRUE(c.Overdue(t0_ + std::chrono::seconds(31), &detail));
  // One that covers it (ahead of the held checkpoint: proof from 10 to 15).
  Append(*ledger_, "c", 5);
  s = Offer(c, *ledger_, Cosigned(*ledger_, {1, 0}), held, &alarm);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.witnessed_size(), 15u);
  EXPECT_FALSE(c.Overdue(t0_ + std::chrono::seconds(300), &detail));
  // Records it already covers never wait.
  c.Acknowledged(14, t0_);
  EXPECT_FALSE(c.Overdue(t0_ + std::chrono::seconds(300), &detail));
  c.Acknowledged(15, t0_);
  EXPECT_TRUE(c.Overdue(t0_ + std::chrono::seconds(300), &detail));
}

TEST_F(WitnessedCoverageTest, AWitnessedCheckpointOfAnotherHistoryIsAnAlarm) {
  WitnessedCoverage c = Coverage(1);
  Append(*ledger_, "a", 5);
  ledger_.reset();
  // The second fork: a copy at 5 entries, same key, other entries after.
  fs::create_directories(dir_ / "fork");
  for (const auto& e : fs::directory_iterator(dir_ / "ledger")) {
    fs::copy_file(e.path(), fs::path(dir_ / "fork") / e.path().filename());
  }
  ledger_ = Open("ledger");
  auto fork = Open("fork");
  Append(*ledger_, "honest", 5);
  Append(*fork, "forged", 5);
  const tlog::Checkpoint held = ledger_->checkpoint();  // the agent's: the honest 10
  std::string alarm;
  // Same size, other root.
  Status s = Offer(c, *fork, Cosigned(*fork, {0}), held, &alarm);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(alarm, "inconsistent_witnessed_checkpoint");
  // Larger, with the fork's own proof from 10.
  Append(*fork, "more", 3);
  s = Offer(c, *fork, Cosigned(*fork, {0}), held, &alarm);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(alarm, "inconsistent_witnessed_checkpoint");
  EXPECT_EQ(c.witnessed_size(), 0u);
  EXPECT_EQ(c.accepted(), 0u);
}

TEST_F(WitnessedCoverageTest, TooFewOrForgedCosignaturesAndStaleProofs) {
  WitnessedCoverage c = Coverage(2);
  Append(*ledger_, "a", 5);
  const tlog::Checkpoint held = ledger_->checkpoint();
  std::string alarm;
  // One of the two required; a witness the agent does not know adds nothing.
  Status s = Offer(c, *ledger_, Cosigned(*ledger_, {0, 2}), held, &alarm);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
  EXPECT_EQ(alarm, "");
  EXPECT_EQ(c.ignored(), 1u);
  // A cosignature by a known witness that does not verify.
  std::string forged = Cosigned(*ledger_, {0, 1});
  forged[forged.size() - 8] = forged[forged.size() - 8] == 'A' ? 'B' : 'A';
  s = Offer(c, *ledger_, forged, held, &alarm);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(alarm, "bad_witness_cosignature");
  // Not signed by the ledger's key.
  tlog::NoteSigner other;
  ASSERT_TRUE(tlog::NoteSigner::Generate("coverage.example/log", &other).ok());
  std::string resigned;
  ASSERT_TRUE(other.Sign(ledger_->checkpoint().Body(), &resigned).ok());
  std::vector<tlog::Hash> none;
  s = c.Offer(resigned, held.size, none, held, &alarm);
  EXPECT_EQ(alarm, "bad_checkpoint_signature");
  // A proof from a size the agent does not hold proves nothing either way.
  Append(*ledger_, "b", 5);
  const std::string at10 = Cosigned(*ledger_, {0, 1});
  std::vector<tlog::Hash> proof;
  ASSERT_TRUE(ledger_->ConsistencyProof(3, 10, &proof).ok());
  s = c.Offer(at10, 3, proof, held, &alarm);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(alarm, "");
  // And the right one counts.
  s = Offer(c, *ledger_, at10, held, &alarm);
  EXPECT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.witnessed_size(), 10u);
}

}  // namespace
}  // namespace latch::agent
