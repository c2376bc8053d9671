// Receipt checking without a collector, a socket or root (agent/receipt_check.h):
// a real ledger in a temporary directory makes the checkpoints and proofs,
// and each way a receipt can lie is refused with the alarm it deserves.
#include "agent/receipt_check.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "collector/ledger/entry_batch.h"
#include "collector/ledger/file_ledger.h"
#include "lib/tlog/checkpoint.h"
#include "schemas/record_codec.h"
#include "temp_dir.h"

namespace latch::agent {
namespace {

class ReceiptCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ledger::FileLedger::Create(dir_ / "ledger", "receipts.example/log").ok());
    ASSERT_TRUE(
        ledger::FileLedger::Open(dir_ / "ledger", ledger::FileLedger::Mode::kReadWrite, &ledger_)
            .ok());
    key_ = ledger_->verifier();
  }
  // The record with `sequence` as the collector appends it.
  SpooledEntry Entry(uint64_t sequence) {
    return {"host-a",
            std::string(16, 'b'),
            sequence,
            1,
            1000 + int64_t(sequence),
            2000 + int64_t(sequence),
            "payload " + std::to_string(sequence)};
  }
  void Append(uint64_t first, uint64_t count) {
    ledger::EntryBatch batch;
    for (uint64_t s = first; s < first + count; ++s) {
      SpooledEntry e = Entry(s);
      ledger::LedgerRecord r{static_cast<ledger::RecordKind>(e.kind),
                             e.host_id,
                             e.boot_id,
                             e.sequence,
                             e.event_time_ns,
                             e.receive_time_ns,
                             e.payload};
      std::string bytes;
      ASSERT_TRUE(ledger::EncodeRecord(r, &bytes).ok());
      ASSERT_TRUE(batch.Add(bytes).ok());
    }
    const ledger::EntryBatch* batches[] = {&batch};
    uint64_t at = 0;
    ASSERT_TRUE(ledger_->Commit(batches, &at).ok());
  }
  tlog::Checkpoint Held() {
    tlog::Checkpoint cp;
    EXPECT_TRUE(tlog::OpenCheckpoint(ledger_->checkpoint_note(), key_, &cp).ok());
    return cp;
  }

  ledger::TempDir dir_;
  std::unique_ptr<ledger::Ledger> ledger_;
  tlog::NoteVerifier key_;
};

TEST_F(ReceiptCheckTest, AnHonestReceiptPasses) {
  Append(1, 5);
  tlog::Checkpoint held = Held();
  std::string first_note = ledger_->checkpoint_note();
  Append(6, 5);
  std::vector<tlog::Hash> consistency, inclusion;
  ASSERT_TRUE(ledger_->ConsistencyProof(held.size, ledger_->size(), &consistency).ok());
  ASSERT_TRUE(ledger_->InclusionProof(7, ledger_->size(), &inclusion).ok());
  tlog::Checkpoint shown;
  std::string alarm;
  Status s = CheckShownCheckpoint(key_, &held, ledger_->checkpoint_note(), held.size, consistency,
                                  &shown, &alarm);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(shown.size, 10u);
  EXPECT_TRUE(CheckEntryIncluded(Entry(8), 7, inclusion, shown).ok());
  // Nothing held yet: the first signed checkpoint is taken as it is.
  EXPECT_TRUE(CheckShownCheckpoint(key_, nullptr, first_note, 0, {}, &shown, &alarm).ok());
  EXPECT_EQ(shown.size, 5u);
}

TEST_F(ReceiptCheckTest, ARecordThatIsNotWhereTheReceiptSaysIsRefused) {
  Append(1, 10);
  tlog::Checkpoint shown = Held();
  std::vector<tlog::Hash> inclusion;
  ASSERT_TRUE(ledger_->InclusionProof(7, shown.size, &inclusion).ok());
  EXPECT_FALSE(CheckEntryIncluded(Entry(8), 6, inclusion, shown).ok());  // another index
  SpooledEntry other = Entry(8);
  other.payload += "!";  // not what was spooled
  EXPECT_FALSE(CheckEntryIncluded(other, 7, inclusion, shown).ok());
  other = Entry(8);
  other.host_id = "host-b";  // another host's record
  EXPECT_FALSE(CheckEntryIncluded(other, 7, inclusion, shown).ok());
  other = Entry(8);
  other.receive_time_ns += 1;  // the receipt's time is part of the entry
  EXPECT_FALSE(CheckEntryIncluded(other, 7, inclusion, shown).ok());
  inclusion[0][0] ^= 1;
  EXPECT_FALSE(CheckEntryIncluded(Entry(8), 7, inclusion, shown).ok());
}

TEST_F(ReceiptCheckTest, ARolledBackForgedOrForkedCheckpointRaisesItsAlarm) {
  Append(1, 6);
  std::string small_note = ledger_->checkpoint_note();
  Append(7, 6);
  tlog::Checkpoint held = Held();
  tlog::Checkpoint shown;
  std::string alarm;
  // Smaller than what is held.
  EXPECT_FALSE(CheckShownCheckpoint(key_, &held, small_note, 0, {}, &shown, &alarm).ok());
  EXPECT_EQ(alarm, "rolled_back");
  // Signed by another key.
  ledger::TempDir other_dir;
  ASSERT_TRUE(ledger::FileLedger::Create(other_dir / "l", "receipts.example/log").ok());
  std::unique_ptr<ledger::Ledger> other;
  ASSERT_TRUE(
      ledger::FileLedger::Open(other_dir / "l", ledger::FileLedger::Mode::kReadOnly, &other).ok());
  EXPECT_FALSE(
      CheckShownCheckpoint(key_, &held, other->checkpoint_note(), 0, {}, &shown, &alarm).ok());
  EXPECT_EQ(alarm, "bad_checkpoint_signature");
  // The same size with another root: a fork.
  tlog::Checkpoint forked = held;
  forked.root[0] ^= 1;
  EXPECT_FALSE(
      CheckShownCheckpoint(key_, &forked, ledger_->checkpoint_note(), held.size, {}, &shown, &alarm)
          .ok());
  EXPECT_EQ(alarm, "inconsistent_checkpoint");
  // A larger checkpoint whose proof does not lead from what is held.
  Append(13, 4);
  std::vector<tlog::Hash> consistency;
  ASSERT_TRUE(ledger_->ConsistencyProof(held.size, ledger_->size(), &consistency).ok());
  consistency.back()[3] ^= 1;
  EXPECT_FALSE(CheckShownCheckpoint(key_, &held, ledger_->checkpoint_note(), held.size, consistency,
                                    &shown, &alarm)
                   .ok());
  EXPECT_EQ(alarm, "inconsistent_checkpoint");
}

TEST_F(ReceiptCheckTest, AProofFromAnotherSizeIsNoEvidenceEitherWay) {
  Append(1, 4);
  tlog::Checkpoint held = Held();
  Append(5, 4);
  std::vector<tlog::Hash> consistency;
  ASSERT_TRUE(ledger_->ConsistencyProof(2, ledger_->size(), &consistency).ok());
  tlog::Checkpoint shown;
  std::string alarm = "stale";
  Status s =
      CheckShownCheckpoint(key_, &held, ledger_->checkpoint_note(), 2, consistency, &shown, &alarm);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(alarm, "");
}

}  // namespace
}  // namespace latch::agent
