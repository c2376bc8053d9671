#include "collector/ledger/batcher.h"

#include <future>
#include <vector>

namespace latch::ledger {

Batcher::Batcher(Ledger& ledger, BatcherOptions options)
    : ledger_(ledger), options_(options), thread_([this] { Run(); }) {}

Batcher::~Batcher() {
  {
    MutexLock lock(mu_);
    stopping_ = true;
  }
  work_cv_.SignalAll();
  thread_.join();
}

void Batcher::Submit(EntryBatch batch, Done done, bool urgent) {
  bool wake = false;
  {
    MutexLock lock(mu_);
    while (pending_entries_ != 0 &&
           pending_entries_ + batch.size() > options_.max_pending_entries) {
      space_cv_.Wait(mu_);
    }
    pending_entries_ += batch.size();
    pending_.push_back(
        {std::move(batch), std::move(done), std::chrono::steady_clock::now(), urgent});
    if (urgent) ++pending_urgent_;
    // Wake the committer when a batch becomes full or urgent, or a first
    // entry starts the age clock.
    wake = pending_entries_ >= options_.max_batch_entries || pending_.size() == 1 || urgent;
  }
  if (wake) work_cv_.Signal();
}

Status Batcher::Append(EntryBatch batch, uint64_t* first_index, bool urgent) {
  std::promise<std::pair<Status, uint64_t>> result;
  auto future = result.get_future();
  Submit(
      std::move(batch),
      [&result](const Status& s, uint64_t first) {
        result.set_value({s, first});
      },
      urgent);
  auto [status, first] = future.get();
  *first_index = first;
  return status;
}

Batcher::Stats Batcher::stats() const {
  MutexLock lock(mu_);
  return stats_;
}

void Batcher::Run() {
  std::vector<Pending> taken;
  std::vector<const EntryBatch*> batches;
  while (true) {
    size_t entries = 0;
    {
      MutexLock lock(mu_);
      while (true) {
        if (pending_entries_ >= options_.max_batch_entries) break;
        if (stopping_ || pending_urgent_ > 0) break;
        if (pending_.empty()) {
          work_cv_.Wait(mu_);
          continue;
        }
        auto deadline = pending_.front().queued + options_.max_batch_age;
        if (std::chrono::steady_clock::now() >= deadline) break;
        work_cv_.WaitUntil(mu_, deadline);
      }
      if (pending_.empty()) {
        if (stopping_) return;
        continue;
      }
      while (!pending_.empty() && (entries == 0 || entries + pending_.front().batch.size() <=
                                                       options_.max_batch_entries)) {
        entries += pending_.front().batch.size();
        if (pending_.front().urgent) --pending_urgent_;
        taken.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
      pending_entries_ -= entries;
    }
    space_cv_.SignalAll();

    batches.clear();
    for (const Pending& p : taken) batches.push_back(&p.batch);
    uint64_t first = 0;
    Status status = ledger_.Commit(batches, &first);
    {
      MutexLock stats_lock(mu_);
      ++(status.ok() ? stats_.batches : stats_.failed_batches);
      if (status.ok()) stats_.entries += entries;
    }
    for (Pending& p : taken) {
      if (p.done) p.done(status, first);
      first += p.batch.size();
    }
    taken.clear();
  }
}

}  // namespace latch::ledger
