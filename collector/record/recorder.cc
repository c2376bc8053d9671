#include "collector/record/recorder.h"

#include <capnp/message.h>

#include <chrono>
#include <utility>

#include "lib/logging/logger.h"
#include "schemas/canonical.h"
#include "schemas/record_codec.h"
#include "schemas/workflow.capnp.h"

namespace latch::collector {

int64_t WallClockNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status AddWorkflowRecord(const std::string& action, const std::string& host, int64_t at_ns,
                         ledger::EntryBatch* out) {
  ledger::LedgerRecord rec;
  rec.kind = ledger::RecordKind::kWorkflow;
  rec.host_id = host;
  rec.event_time_ns = rec.receive_time_ns = at_ns;
  rec.payload = action;
  std::string bytes;
  LATCH_RETURN_IF_ERROR(ledger::EncodeRecord(rec, &bytes));
  return out->Add(bytes);
}

Recorder::Recorder(ledger::Ledger& ledger, const ledger::BatcherOptions& options, std::string dir,
                   Dispatcher& loop)
    : ledger_(ledger),
      loop_(loop),
      health_(std::move(dir)),
      batcher_(std::make_unique<ledger::Batcher>(ledger, options)) {}

Recorder::~Recorder() { batcher_.reset(); }

Status Recorder::RecordNow(const std::string& action, const std::string& host, int64_t at_ns) {
  if (!health_.writable()) return Status::IoError(health_.reason());
  ledger::EntryBatch batch;
  LATCH_RETURN_IF_ERROR(AddWorkflowRecord(action, host, at_ns, &batch));
  uint64_t index = 0;
  Status s = batcher_->Append(std::move(batch), &index, /*urgent=*/true);
  if (!s.ok() && ledger_.write_failed()) health_.Failed(s);
  return s;
}

void Recorder::Open() {
  LATCH_ASSERT_ON_LOOP(loop_);
  assert(!open_);
  open_.emplace();
}

Status Recorder::Record(const std::string& action, const std::string& host, int64_t at_ns) {
  LATCH_ASSERT_ON_LOOP(loop_);
  if (!open_) {
    // Should not happen: every action runs inside one (Collector::Act).
    logging::Default().Error("a workflow record outside an action (should not happen)", {});
    return Status::FailedPrecondition("a record outside an action");
  }
  if (!health_.writable()) return Status::IoError(health_.reason());
  return AddWorkflowRecord(action, host, at_ns, &*open_);
}

ledger::EntryBatch Recorder::Close() {
  LATCH_ASSERT_ON_LOOP(loop_);
  ledger::EntryBatch batch = std::move(*open_);
  open_.reset();
  return batch;
}

void Recorder::Commit(ledger::EntryBatch batch, std::function<void(const Status&)> done) {
  LATCH_ASSERT_ON_LOOP(loop_);
  pending_++;  // until `done` has run: a snapshot must not see the state without its records
  batcher_->Submit(
      std::move(batch),
      [this, done = std::move(done)](const Status& s, uint64_t) {
        // On the committer thread: the outcome goes to the loop.
        loop_.Post([this, done, s] {
          if (!s.ok() && ledger_.write_failed()) health_.Failed(s);
          done(s);
          pending_--;
        });
      },
      /*urgent=*/true);
}

void Recorder::RecordLater(const std::string& action, const std::string& host) {
  ledger::EntryBatch batch;
  Status s = AddWorkflowRecord(action, host, WallClockNs(), &batch);
  if (!s.ok()) {
    logging::Default().Error("workflow record refused", {{"error", s.ToString()}});
    return;
  }
  if (!health_.writable()) {
    KeepUnwritten({action, host});
    return;
  }
  pending_++;
  batcher_->Submit(std::move(batch), [this, action, host](const Status& st, uint64_t) {
    // On the committer thread. A record that failed waits for the ledger to
    // take writes again (the loop notices the failure itself).
    if (!st.ok()) KeepUnwritten({action, host});
    pending_--;
  });
}

void Recorder::KeepUnwritten(UnwrittenRecord r) {
  MutexLock lock(unwritten_mu_);
  if (unwritten_.size() >= kMaxUnwritten) {
    unwritten_dropped_++;
    const int64_t now = WallClockNs();
    if (dropped_unrecorded_++ == 0) first_dropped_ns_ = now;
    last_dropped_ns_ = now;
    return;
  }
  unwritten_.push_back(std::move(r));
}

size_t Recorder::unwritten() const {
  MutexLock lock(unwritten_mu_);
  return unwritten_.size();
}

bool Recorder::Maintain() {
  LATCH_ASSERT_ON_LOOP(loop_);
  // A commit that failed anywhere (an agent batch, an action, a record of
  // our own) leaves the ledger refusing writes until recovered.
  if (ledger_.write_failed() && health_.writable()) {
    health_.Failed(Status::IoError("a ledger commit failed to write"));
  }
  if (!health_.TryRecover(ledger_, pending_.load() == 0)) return false;
  WriteUnwritten();
  return true;
}

void Recorder::WriteUnwritten() {
  std::deque<UnwrittenRecord> waiting;
  uint64_t dropped = 0;
  int64_t first = 0, last = 0;
  {
    MutexLock lock(unwritten_mu_);
    waiting.swap(unwritten_);
    std::swap(dropped, dropped_unrecorded_);
    first = first_dropped_ns_;
    last = last_dropped_ns_;
  }
  if (dropped > 0) {
    // The gap goes on the record, after what was kept.
    logging::Default().Error("records of our own were dropped while the ledger refused writes",
                             {{"dropped", dropped}});
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor("collector");
    auto d = a.initOwnRecordsDropped();
    d.setCount(dropped);
    d.setFirstDroppedNs(first);
    d.setLastDroppedNs(last);
    waiting.push_back({schema::CanonicalBytes(a.asReader()), ""});
  }
  for (UnwrittenRecord& r : waiting) RecordLater(r.action, r.host);
}

}  // namespace latch::collector
