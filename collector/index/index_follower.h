// Keeping the events index level with the ledger.
//
// IndexLedger() adds to an EventIndex every entry the ledger has and the index
// does not, in transactions of bounded size (start-up catch-up and `latch-ledger
// reindex` use it directly). IndexFollower opens the index and runs it on its
// own thread whenever the ledger grows, so neither start-up nor appends wait
// for the index; query and live-tail readers can wait for the index to pass a
// given size.
//
// The index is derived, so its faults never reach the ledger: an index that
// cannot be opened or written is retried every second (logged, counted), and
// one found damaged (SQLite's integrity check when it is opened, or a
// "malformed" answer to the follower or to any reader) is emptied and built
// again from the ledger.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "collector/index/event_index.h"
#include "collector/ledger/ledger.h"
#include "lib/status/status.h"
#include "lib/sync/mutex.h"

namespace latch::index {

struct IndexOptions {
  // Entries per transaction: larger ones write each touched page to the WAL
  // less often (query_bench: 300,000 entries/s at 16,384, 385,000 at 65,536
  // and the same at 262,144).
  uint64_t batch = 65536;
  // Behind by at least this many entries, and by at least as many as are
  // indexed (from nothing, after `reindex`, after a long stop): a bulk load
  // (EventIndex::SetBulkLoad), whose index rebuild at the end costs less
  // than keeping the indexes entry by entry.
  uint64_t bulk_load_minimum = 1'000'000;
};

// Told after each transaction: the index's size, and whether queries find
// everything below it quickly (false while a bulk load lacks its indexes).
using IndexProgress = std::function<void(uint64_t size, bool searchable)>;

// Indexes ledger entries [index->size(), ledger.size()).
Status IndexLedger(ledger::Ledger& ledger, EventIndex* index, const IndexOptions& options = {},
                   const IndexProgress& progress = nullptr);

// Where the index lives and which ledger it belongs to (EventIndex::Open).
struct IndexPlace {
  std::string path;
  std::string origin;
  EventIndex::RootAt root_at;
};

class IndexFollower {
 public:
  IndexFollower(ledger::Ledger& ledger, IndexPlace place) : ledger_(ledger), place_(place) {}
  ~IndexFollower() { Stop(); }

  void Start();
  void Stop();
  // The ledger has grown (after a durable batch); cheap, any thread.
  void Notify();

  uint64_t indexed() const { return indexed_.load(); }
  // Waits until more than `size` entries are indexed, the timeout passes or
  // the follower stops; returns the indexed size.
  uint64_t WaitPast(uint64_t size, std::chrono::milliseconds timeout);
  // Opens, indexing errors and damage found: each is logged.
  uint64_t failures() const { return failures_.load(); }
  // Times the index was found damaged and built again from the ledger.
  uint64_t rebuilds() const { return rebuilds_.load(); }
  // A reader got a Corruption status from the index: the follower checks it
  // and, if it is damaged, builds it again. Cheap, any thread.
  void ReportDamage();

 private:
  void Loop();
  // Opens the index (emptying one that does not match the ledger) and checks
  // its integrity; false if it could not be opened (retried later).
  bool OpenChecked();
  // Runs SQLite's integrity check; a damaged index is emptied and reopened.
  void CheckIntegrity(const char* why);
  // Empties the index and opens it afresh: the follower refills it.
  void Rebuild(const Status& damage);
  void Publish(uint64_t size);

  ledger::Ledger& ledger_;
  const IndexPlace place_;
  std::unique_ptr<EventIndex> index_;  // the follower thread's alone; null until opened
  std::atomic<uint64_t> indexed_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<uint64_t> rebuilds_{0};
  Mutex mu_;
  CondVar wake_;      // the follower: work or stop
  CondVar progress_;  // waiters: the index grew
  bool pending_ LATCH_GUARDED_BY(mu_) = true;
  bool damage_reported_ LATCH_GUARDED_BY(mu_) = false;
  bool stop_ LATCH_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace latch::index
