#include "collector/ledger/batcher.h"

#include <future>
#include <vector>

namespace latch::ledger {

Batcher::Batcher(Ledger& ledger, BatcherOptions options)
    : ledger_(ledger), options_(options), thread_([this] { Run(); }) {}

Batcher::~Batcher() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
}

void Batcher::Submit(EntryBatch batch, Done done, bool urgent) {
  std::unique_lock lock(mu_);
  space_cv_.wait(lock, [&] {
    return pending_entries_ == 0 || pending_entries_ + batch.size() <= options_.max_pending_entries;
  });
  pending_entries_ += batch.size();
  pending_.push_back({std::move(batch), std::move(done), std::chrono::steady_clock::now(), urgent});
  if (urgent) ++pending_urgent_;
  // Wake the committer when a batch becomes full or urgent, or a first entry
  // starts the age clock.
  bool wake = pending_entries_ >= options_.max_batch_entries || pending_.size() == 1 || urgent;
  lock.unlock();
  if (wake) work_cv_.notify_one();
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
  std::lock_guard lock(mu_);
  return stats_;
}

void Batcher::Run() {
  std::vector<Pending> taken;
  std::vector<const EntryBatch*> batches;
  while (true) {
    std::unique_lock lock(mu_);
    while (true) {
      if (pending_entries_ >= options_.max_batch_entries) break;
      if (stopping_ || pending_urgent_ > 0) break;
      if (pending_.empty()) {
        work_cv_.wait(lock);
        continue;
      }
      auto deadline = pending_.front().queued + options_.max_batch_age;
      if (std::chrono::steady_clock::now() >= deadline) break;
      work_cv_.wait_until(lock, deadline);
    }
    if (pending_.empty()) {
      if (stopping_) return;
      continue;
    }
    size_t entries = 0;
    while (!pending_.empty() && (entries == 0 || entries + pending_.front().batch.size() <=
                                                     options_.max_batch_entries)) {
      entries += pending_.front().batch.size();
      if (pending_.front().urgent) --pending_urgent_;
      taken.push_back(std::move(pending_.front()));
      pending_.pop_front();
    }
    pending_entries_ -= entries;
    lock.unlock();
    space_cv_.notify_all();

    batches.clear();
    for (const Pending& p : taken) batches.push_back(&p.batch);
    uint64_t first = 0;
    Status status = ledger_.Commit(batches, &first);
    {
      std::lock_guard stats_lock(mu_);
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
