// Batcher: turns a stream of appends into ledger batches. A batch closes when
// it holds max_batch_entries entries or its oldest entry has waited
// max_batch_age, whichever comes first; then one committer thread makes it
// durable (Ledger::Commit) and only after that tells each submitter its
// indexes. Entries submitted while a batch is being committed form the next
// one, so hashing, writing and fsync overlap across threads.
//
// Submitted EntryBatches are never split: a batch closes before a submission
// that would take it past max_batch_entries, and a single submission larger
// than that is committed as a batch of its own.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <thread>

#include "collector/ledger/entry_batch.h"
#include "collector/ledger/ledger.h"
#include "lib/sync/mutex.h"

namespace latch::ledger {

struct BatcherOptions {
  // Defaults: large enough that fsync cost is amortised at a million entries
  // per second (about 12 MB of 200-byte entries), short enough in age that a
  // lone request is acknowledged within a few milliseconds plus one fsync.
  size_t max_batch_entries = 65536;
  std::chrono::microseconds max_batch_age = std::chrono::milliseconds(5);
  // Submit() blocks while this many entries wait: memory stays bounded.
  size_t max_pending_entries = size_t{4} * 65536;
};

class Batcher {
 public:
  // Called on the committer thread once the entries are durable (status OK,
  // `first_index` the index of the submission's first entry) or have failed.
  using Done = std::function<void(const Status& status, uint64_t first_index)>;

  Batcher(Ledger& ledger, BatcherOptions options);
  // Commits everything still pending, then stops.
  ~Batcher();
  Batcher(const Batcher&) = delete;
  Batcher& operator=(const Batcher&) = delete;

  // `urgent`: close the batch now rather than at its age limit (for rare,
  // latency-bound records such as a grant that takes effect only once it is
  // in the ledger); whatever else is pending goes along.
  void Submit(EntryBatch batch, Done done, bool urgent = false);
  // Submit and wait for durability.
  Status Append(EntryBatch batch, uint64_t* first_index, bool urgent = false);

  struct Stats {
    uint64_t batches = 0;
    uint64_t entries = 0;
    uint64_t failed_batches = 0;
  };
  Stats stats() const;

 private:
  struct Pending {
    EntryBatch batch;
    Done done;
    std::chrono::steady_clock::time_point queued;
    bool urgent = false;
  };
  void Run();

  Ledger& ledger_;
  const BatcherOptions options_;
  mutable Mutex mu_;
  CondVar work_cv_;   // committer waits for entries
  CondVar space_cv_;  // submitters wait for room
  std::deque<Pending> pending_ LATCH_GUARDED_BY(mu_);
  size_t pending_entries_ LATCH_GUARDED_BY(mu_) = 0;
  // Urgent submissions waiting: commit without waiting for age.
  size_t pending_urgent_ LATCH_GUARDED_BY(mu_) = 0;
  bool stopping_ LATCH_GUARDED_BY(mu_) = false;
  Stats stats_ LATCH_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace latch::ledger
