// Keeping the events index level with the ledger.
//
// IndexLedger() adds to an EventIndex every entry the ledger has and the index
// does not, in transactions of bounded size (start-up catch-up and `latch-ledger
// reindex` use it directly). IndexFollower runs it on its own thread whenever
// the ledger grows, so appends never wait for the index; query and live-tail
// readers can wait for the index to pass a given size.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "collector/index/event_index.h"
#include "collector/ledger/ledger.h"
#include "tlog/status.h"

namespace latch::index {

// Indexes ledger entries [index->size(), ledger.size()), at most `batch`
// per transaction; `progress` (if set) is told the new size after each.
Status IndexLedger(ledger::Ledger& ledger, EventIndex* index, uint64_t batch = 16384,
                   const std::function<void(uint64_t)>& progress = nullptr);

class IndexFollower {
 public:
  IndexFollower(ledger::Ledger& ledger, std::unique_ptr<EventIndex> index)
      : ledger_(ledger), index_(std::move(index)), indexed_(index_->size()) {}
  ~IndexFollower() { Stop(); }

  void Start();
  void Stop();
  // The ledger has grown (after a durable batch); cheap, any thread.
  void Notify();

  uint64_t indexed() const { return indexed_.load(); }
  // Waits until more than `size` entries are indexed, the timeout passes or
  // the follower stops; returns the indexed size.
  uint64_t WaitPast(uint64_t size, std::chrono::milliseconds timeout);
  uint64_t failures() const { return failures_.load(); }

 private:
  void Loop();

  ledger::Ledger& ledger_;
  std::unique_ptr<EventIndex> index_;
  std::atomic<uint64_t> indexed_;
  std::atomic<uint64_t> failures_{0};
  std::mutex mu_;
  std::condition_variable wake_;      // the follower: work or stop
  std::condition_variable progress_;  // waiters: the index grew
  bool pending_ = true;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace latch::index
