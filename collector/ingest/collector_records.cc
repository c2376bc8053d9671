// CollectorServer's records of its own: workflow actions into the ledger
// (one at a time, or an action's records as one batch: RecordAsOne), the
// records that wait while the ledger refuses writes, webhooks once they are
// on record, and refusals folded into one record per kind per second.

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "collector/ingest/collector_server.h"
#include "collector/ingest/grant_keys.h"
#include "collector/ingest/state_snapshot.h"
#include "collector/ledger/entry_range.h"
#include "collector/workflow/duration.h"
#include "lib/logging/logger.h"
#include "lib/storage/append_file.h"
#include "lib/text/utf8.h"
#include "lib/tlog/checkpoint.h"
#include "schemas/canonical.h"
#include "schemas/event.capnp.h"
#include "schemas/record_codec.h"
#include "schemas/wire.capnp.h"
#include "schemas/wire_frame.h"
#include "schemas/workflow.capnp.h"

namespace latch::collector {

Status CollectorServer::Record(const std::string& action, const std::string& actor, int64_t at_ns) {
  LATCH_RETURN_IF_ERROR(RecordWorkflow(action, actor, at_ns));
  if (open_action_) {
    open_action_->webhooks.push_back(action);  // once the batch is durable
  } else {
    NotifyWebhooks(action);
  }
  return Status::Ok();
}

Status CollectorServer::RecordAsOne(const std::function<Status()>& action) {
  LATCH_ASSERT_ON_LOOP(*loop_);
  workflow::RequestBook before = workflow_->requests();
  open_action_.emplace();
  Status s = action();
  OpenAction done = std::move(*open_action_);
  open_action_.reset();
  if (s.ok() && !done.batch.empty()) {
    uint64_t index;
    // Grants wait for these records before they take effect: no batch-age delay.
    s = batcher_->Append(std::move(done.batch), &index, /*urgent=*/true);
    if (!s.ok() && ledger_->write_failed()) NoteLedgerFailure(s);
  }
  if (!s.ok()) {
    // Nothing of it is on record, so nothing of it stays: not a review
    // without its decision, not a grant that was never recorded.
    workflow_->RestoreRequests(std::move(before));
    for (uint64_t id : done.issued) {
      std::vector<std::string> unchanged;  // never pushed
      (void)grants_->ApplyRevoked(id, &unchanged);
    }
    return s;
  }
  for (const std::string& host : done.push) PushGrantSet(host);
  for (const std::string& a : done.webhooks) NotifyWebhooks(a);
  return Status::Ok();
}

// Requests, reviews and decisions go to the webhooks once they are on record.
void CollectorServer::NotifyWebhooks(const std::string& action) {
  if (!webhooks_->enabled()) return;  // no decoding for nobody
  index::RecordView v;
  if (!index::ViewWorkflowAction(action, &v).ok()) return;
  std::string type = v.kind == "requestCreated"    ? "request.created"
                     : v.kind == "requestReviewed" ? "request.reviewed"
                     : v.kind == "requestDecided"  ? "request.decided"
                                                   : "";
  if (type.empty()) return;
  nlohmann::json body = {{"type", type},
                         {"collector", config_.origin},
                         {"request_id", v.request_id},
                         {"at_ns", NowNs()},
                         {"action", v.detail}};
  webhooks_->Send(type, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void CollectorServer::NoteLedgerFailure(const Status& why) { ledger_health_->Failed(why); }

void CollectorServer::KeepUnwritten(UnwrittenRecord r) {
  MutexLock lock(unwritten_mu_);
  if (unwritten_.size() >= kMaxUnwritten) {
    counters_.records_unwritten_dropped++;
    const int64_t now = NowNs();
    if (dropped_unrecorded_++ == 0) first_dropped_ns_ = now;
    last_dropped_ns_ = now;
    return;
  }
  unwritten_.push_back(std::move(r));
}

void CollectorServer::AskForFailedAppends() {
  // A Welcome sent while these were being appended told the agent they were
  // held; an agent with nothing newer to send would never find out they are
  // not. Ask for them: it resends from the sequence named.
  for (const auto& [host, boot] : failed_appends_) {
    auto route = routes_.find(host);
    if (route == routes_.end()) continue;  // its next Hello's Welcome says what is held
    const SequenceMark* mark = sequences_.Find(host, boot);
    capnp::MallocMessageBuilder m;
    auto rf = m.initRoot<schema::Envelope>().initResendFrom();
    rf.setBootId(schema::AsData(boot));
    rf.setSequence(mark != nullptr ? mark->sequence + 1 : 1);
    Send(route->second, schema::EncodeFrame(m));
  }
  failed_appends_.clear();
}

void CollectorServer::WriteUnwritten() {
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
  for (UnwrittenRecord& r : waiting) RecordWorkflowAsync(r.action, r.host);
}

void CollectorServer::Refuse(const std::string& what, const std::string& detail,
                             const std::string& route, const std::string& reply,
                             const std::string& peer) {
  RefusalTally& t = refusals_[what];
  t.count++;
  t.last = std::string(text::TruncateUtf8(detail, 1024));
  std::string from = peer.empty() && !route.empty() ? current_peer_ : peer;
  auto key = std::make_pair(std::string(text::TruncateUtf8(detail, 512)),
                            std::string(text::TruncateUtf8(from, 128)));
  auto it = t.distinct.find(key);
  if (it != t.distinct.end()) {
    it->second++;
  } else if (t.distinct.size() < kMaxRefusalDetails) {
    t.distinct.emplace(std::move(key), 1);
  } else {
    t.unlisted++;
  }
  if (!route.empty()) {
    capnp::MallocMessageBuilder m;
    m.initRoot<schema::Envelope>().setRefused(reply);
    Send(route, schema::EncodeFrame(m));
  }
}

void CollectorServer::FlushRefusals(bool force) {
  int64_t now = NowNs();
  if (!force && now - refusals_flushed_ns_ < 1'000'000'000) return;
  refusals_flushed_ns_ = now;
  for (auto& [what, t] : refusals_) {
    if (t.count == 0) continue;
    logging::Default().Warn(
        "refused input",
        {{"kind", what}, {"count", t.count}, {"distinct", t.distinct.size()}, {"last", t.last}});
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor("collector");
    auto r = a.initRefusal();
    r.setWhat(what);
    r.setDetail(t.last);
    r.setCount(t.count);
    auto details = r.initDetails(static_cast<unsigned>(t.distinct.size()));
    unsigned i = 0;
    for (const auto& [key, n] : t.distinct) {
      details[i].setDetail(key.first);
      details[i].setPeer(key.second);
      details[i].setCount(n);
      ++i;
    }
    r.setUnlisted(t.unlisted);
    RecordWorkflowAsync(schema::CanonicalBytes(a.asReader()), "");
    t = RefusalTally{};
  }
}

namespace {
Status WorkflowEntry(const std::string& action, const std::string& host, int64_t at_ns,
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
}  // namespace

Status CollectorServer::RecordWorkflow(const std::string& action, const std::string& host,
                                       int64_t at_ns) {
  if (!ledger_health_->writable()) return Status::IoError(ledger_health_->reason());
  // Inside RecordAsOne: gathered into its batch, written when it ends.
  if (open_action_) return WorkflowEntry(action, host, at_ns, &open_action_->batch);
  ledger::EntryBatch batch;
  LATCH_RETURN_IF_ERROR(WorkflowEntry(action, host, at_ns, &batch));
  uint64_t index;
  // Grants wait for this record before they take effect: no batch-age delay.
  Status s = batcher_->Append(std::move(batch), &index, /*urgent=*/true);
  if (!s.ok() && ledger_->write_failed()) NoteLedgerFailure(s);
  return s;
}

void CollectorServer::RecordWorkflowAsync(const std::string& action, const std::string& host) {
  ledger::EntryBatch batch;
  Status s = WorkflowEntry(action, host, NowNs(), &batch);
  if (!s.ok()) {
    logging::Default().Error("workflow record refused", {{"error", s.ToString()}});
    return;
  }
  if (!ledger_health_->writable()) {
    KeepUnwritten({action, host});
    return;
  }
  pending_commits_++;
  batcher_->Submit(std::move(batch), [this, action, host](const Status& st, uint64_t) {
    // On the committer thread. A record that failed waits for the ledger to
    // take writes again (the loop notices the failure itself).
    if (!st.ok()) KeepUnwritten({action, host});
    pending_commits_--;
  });
}
}  // namespace latch::collector
