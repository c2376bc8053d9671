#include "collector/index/index_follower.h"

#include <cstdio>
#include <future>

#include "collector/ledger/entry_range.h"
#include "lib/logging/logger.h"

namespace latch::index {

namespace {

// Entries [from, to) of the ledger, decoded for the index, and the root at `to`.
struct DecodedBatch {
  Status status;
  std::vector<RecordView> views;
  tlog::Hash root{};
  uint64_t to = 0;
};

DecodedBatch Decode(ledger::Ledger& ledger, uint64_t from, uint64_t to) {
  DecodedBatch out;
  out.to = to;
  out.views.reserve(to - from);
  out.status = ledger::ForEachEntry(ledger, from, to, [&](uint64_t, std::string_view entry) {
    out.views.push_back(EventIndex::ViewForIndex(entry));
    return Status::Ok();
  });
  if (out.status.ok()) out.status = ledger.RootAt(to, &out.root);
  return out;
}

}  // namespace

Status IndexLedger(ledger::Ledger& ledger, EventIndex* index, const IndexOptions& options,
                   const IndexProgress& progress) {
  const uint64_t target = ledger.size();
  if (index->size() >= target) return Status::Ok();
  const uint64_t behind = target - index->size();
  const bool bulk = behind >= options.bulk_load_minimum && behind >= index->size();
  if (bulk) LATCH_RETURN_IF_ERROR(index->SetBulkLoad(true));
  // Two stages: the next batch is read and decoded on another thread while
  // this one inserts the current batch into SQLite.
  auto start = [&](uint64_t from) {
    uint64_t to = std::min(target, from + std::max<uint64_t>(options.batch, 1));
    return std::async(std::launch::async, [&ledger, from, to] { return Decode(ledger, from, to); });
  };
  auto next = start(index->size());
  Status s;
  while (true) {
    DecodedBatch cur = next.get();
    s = cur.status;
    if (!s.ok()) break;
    if (cur.to < target) next = start(cur.to);
    s = index->AddViews(cur.views, cur.root);
    if (!s.ok()) {
      if (cur.to < target) next.wait();
      break;
    }
    if (progress) progress(index->size(), !bulk);
    if (cur.to >= target) break;
  }
  if (bulk) {
    // Also after a failure: what is indexed stays searchable.
    Status built = index->SetBulkLoad(false);
    if (s.ok()) s = built;
    if (built.ok() && progress) progress(index->size(), true);
  }
  return s;
}

void IndexFollower::Start() {
  if (thread_.joinable()) return;  // a standby started it already
  thread_ = std::thread([this] { Loop(); });
}

void IndexFollower::Stop() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  wake_.SignalAll();
  progress_.SignalAll();
  if (thread_.joinable()) thread_.join();
  index_.reset();
}

void IndexFollower::Notify() {
  {
    MutexLock lock(mu_);
    pending_ = true;
  }
  wake_.Signal();
}

void IndexFollower::ReportDamage() {
  {
    MutexLock lock(mu_);
    damage_reported_ = true;
  }
  wake_.Signal();
}

uint64_t IndexFollower::WaitPast(uint64_t size, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(mu_);
  while (!stop_ && indexed_.load() <= size) {
    if (!progress_.WaitUntil(mu_, deadline) && std::chrono::steady_clock::now() >= deadline) break;
  }
  return indexed_.load();
}

void IndexFollower::Publish(uint64_t size) {
  {
    MutexLock lock(mu_);
    indexed_ = size;
  }
  progress_.SignalAll();
}

bool IndexFollower::OpenChecked() {
  bool rebuilt = false;
  Status s = EventIndex::Open(place_.path, place_.origin, place_.root_at, &index_, &rebuilt);
  if (!s.ok()) {
    failures_.fetch_add(1);
    logging::Default().Error("the events index cannot be opened; retrying every second",
                             {{"index", place_.path}, {"error", s.ToString()}});
    return false;
  }
  if (rebuilt) {
    logging::Default().Warn(
        "the events index did not match this ledger; rebuilding it from the ledger",
        {{"index", place_.path}});
  }
  CheckIntegrity("opened");
  if (index_ == nullptr) return false;
  Publish(index_->size());
  return true;
}

void IndexFollower::CheckIntegrity(const char* why) {
  Status s = index_->CheckIntegrity();
  if (s.ok()) return;
  if (s.code() == Status::Code::kCorruption) {
    Rebuild(s.WithContext(why));
    return;
  }
  // Could not be read to the end (an I/O error): not known to be damaged.
  failures_.fetch_add(1);
  logging::Default().Error("the events index could not be checked",
                           {{"index", place_.path}, {"error", s.ToString()}});
}

void IndexFollower::Rebuild(const Status& damage) {
  failures_.fetch_add(1);
  rebuilds_.fetch_add(1);
  logging::Default().Error("the events index is damaged; rebuilding it from the ledger",
                           {{"index", place_.path}, {"error", damage.ToString()}});
  index_.reset();
  Publish(0);  // readers wait for the new index rather than read the damaged one
  Status removed = EventIndex::Remove(place_.path);
  if (!removed.ok()) {
    logging::Default().Error("the damaged events index could not be removed",
                             {{"index", place_.path}, {"error", removed.ToString()}});
  }
}

void IndexFollower::Loop() {
  bool failing = false;
  while (true) {
    bool damage_reported = false;
    {
      MutexLock lock(mu_);
      // A missed Notify costs at most this long; a failure is retried then too.
      if (index_ != nullptr || failing) {
        const auto deadline =
            std::chrono::steady_clock::now() + std::chrono::milliseconds(failing ? 1000 : 200);
        while (!stop_ && !pending_ && !damage_reported_) {
          if (!wake_.WaitUntil(mu_, deadline) && std::chrono::steady_clock::now() >= deadline) {
            break;
          }
        }
      }
      if (stop_) return;
      pending_ = false;
      damage_reported = damage_reported_;
      damage_reported_ = false;
    }
    if (index_ == nullptr) {
      failing = !OpenChecked();
      continue;
    }
    if (damage_reported) {
      CheckIntegrity("a reader found it damaged");
      if (index_ == nullptr) continue;
    }
    Status s = IndexLedger(ledger_, index_.get(), {}, [&](uint64_t size, bool searchable) {
      if (searchable) Publish(size);  // queries keep to the smaller size until it is
    });
    if (s.ok()) {
      failing = false;
      continue;
    }
    // Degraded: queries answer from what is indexed; logged, counted, retried.
    failures_.fetch_add(1);
    if (!failing)
      logging::Default().Error("events index behind; queries answer from what is indexed",
                               {{"error", s.ToString()}});
    failing = true;
    // Damage in the index itself (not a short ledger read) is rebuilt.
    if (s.code() == Status::Code::kCorruption) {
      CheckIntegrity("writing to it failed");
      if (index_ == nullptr) failing = false;
    }
  }
}

}  // namespace latch::index
