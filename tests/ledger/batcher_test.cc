#include "collector/ledger/batcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>

#include "collector/ledger/file_ledger.h"
#include "collector/ledger/verifier.h"
#include "temp_dir.h"

namespace latch::ledger {
namespace {

class BatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(FileLedger::Create(tmp_ / "ledger", "test.example/log").ok());
    ASSERT_TRUE(FileLedger::Open(tmp_ / "ledger", FileLedger::Mode::kReadWrite, &ledger_).ok());
  }
  TempDir tmp_;
  std::unique_ptr<Ledger> ledger_;
};

// Many submitters at once: each submission gets contiguous indexes holding
// exactly its entries, no index is handed out twice, and all are durable.
TEST_F(BatcherTest, ConcurrentSubmittersGetTheirOwnContiguousIndexes) {
  constexpr int kThreads = 4;
  constexpr int kSubmissions = 200;
  std::mutex mu;
  std::vector<std::pair<uint64_t, std::string>> acked;  // (first index, tag)
  {
    BatcherOptions options;
    options.max_batch_entries = 500;
    options.max_batch_age = std::chrono::milliseconds(1);
    Batcher batcher(*ledger_, options);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int k = 0; k < kSubmissions; ++k) {
          EntryBatch batch;
          std::string tag = std::to_string(t) + "/" + std::to_string(k);
          for (int i = 0; i < 1 + (k % 17); ++i)
            ASSERT_TRUE(batch.Add(tag + "#" + std::to_string(i)).ok());
          batcher.Submit(std::move(batch), [&, tag](const Status& s, uint64_t first) {
            ASSERT_TRUE(s.ok()) << s.ToString();
            std::lock_guard lock(mu);
            acked.emplace_back(first, tag);
          });
        }
      });
    }
    for (auto& th : threads) th.join();
  }  // the destructor commits what is left
  ASSERT_EQ(acked.size(), static_cast<size_t>(kThreads * kSubmissions));
  std::set<uint64_t> seen;
  uint64_t total = 0;
  for (auto& [first, tag] : acked) {
    int k = std::stoi(tag.substr(tag.find('/') + 1));
    for (int i = 0; i < 1 + (k % 17); ++i) {
      std::string entry;
      ASSERT_TRUE(ledger_->ReadEntry(first + i, &entry).ok());
      EXPECT_EQ(entry, tag + "#" + std::to_string(i));
      EXPECT_TRUE(seen.insert(first + i).second);
      ++total;
    }
  }
  EXPECT_EQ(ledger_->size(), total);
  VerifyResult verified;
  EXPECT_TRUE(VerifyLog(*ledger_, ledger_->verifier(), &verified).ok());
}

// A batch closes at max_batch_entries: 1000 single entries, 100 per batch.
TEST_F(BatcherTest, BatchClosesAtMaxEntries) {
  BatcherOptions options;
  options.max_batch_entries = 100;
  options.max_batch_age = std::chrono::hours(1);  // only size can close a batch here
  options.max_pending_entries = 100000;
  std::atomic<int> done{0};
  {
    Batcher batcher(*ledger_, options);
    for (int i = 0; i < 1000; ++i) {
      EntryBatch b;
      ASSERT_TRUE(b.Add("e" + std::to_string(i)).ok());
      batcher.Submit(std::move(b), [&](const Status& s, uint64_t) {
        EXPECT_TRUE(s.ok());
        ++done;
      });
    }
    // All 1000 complete without the age rule, so size closed every batch.
    while (done.load() < 1000) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    EXPECT_EQ(batcher.stats().batches, 10u);
    EXPECT_EQ(batcher.stats().entries, 1000u);
  }
  EXPECT_EQ(ledger_->size(), 1000u);
}

// A lone entry is committed by the age rule, far below the size limit.
TEST_F(BatcherTest, BatchClosesAtMaxAge) {
  BatcherOptions options;
  options.max_batch_entries = 1 << 20;
  options.max_batch_age = std::chrono::milliseconds(2);
  Batcher batcher(*ledger_, options);
  EntryBatch b;
  ASSERT_TRUE(b.Add("lonely").ok());
  uint64_t first = 99;
  ASSERT_TRUE(batcher.Append(std::move(b), &first).ok());
  EXPECT_EQ(first, 0u);
  EXPECT_EQ(ledger_->size(), 1u);  // durable and checkpointed before Append returned
  EXPECT_EQ(batcher.stats().batches, 1u);
}

TEST_F(BatcherTest, CommitFailureReachesEverySubmitter) {
  std::unique_ptr<Ledger> reader;
  ASSERT_TRUE(FileLedger::Open(tmp_ / "ledger", FileLedger::Mode::kReadOnly, &reader).ok());
  Batcher batcher(*reader, BatcherOptions{});  // a read-only ledger refuses commits
  EntryBatch b;
  ASSERT_TRUE(b.Add("x").ok());
  uint64_t first;
  EXPECT_EQ(batcher.Append(std::move(b), &first).code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(batcher.stats().failed_batches, 1u);
}

}  // namespace
}  // namespace latch::ledger
