// AgentChannel's batches: validated whole, records the ledger holds dropped
// (by host, boot and sequence), the next ones appended without gaps (a
// record past a gap waits for the resend), and a receipt with proofs once
// they are durable (promises 1 and 2, docs/DESIGN.md).
#include <capnp/message.h>

#include <algorithm>
#include <memory>
#include <utility>

#include "collector/ingest/agent_channel.h"
#include "lib/logging/logger.h"
#include "lib/tlog/checkpoint.h"
#include "schemas/canonical.h"
#include "schemas/event.capnp.h"
#include "schemas/record_codec.h"
#include "schemas/wire.capnp.h"
#include "schemas/wire_frame.h"

namespace latch::collector {
namespace {

constexpr uint32_t kMaxPayload = 60000;  // leaves room for the record envelope in 64 KiB

}  // namespace

// Whether `r` is a loss record that stands for the agent's records from
// `next` up to its own sequence (records lost in a damaged spool file). A
// malformed payload declares nothing.
bool AgentChannel::DeclaresLostFrom(schema::SpooledRecord::Reader r, uint64_t next) const {
  if (r.getKind() != schema::RecordKind::LOSS || r.getSequence() <= next) return false;
  uint64_t first = 0;
  Status s = schema::ReadCanonical<schema::LossEvent>(
      std::string_view(reinterpret_cast<const char*>(r.getPayload().begin()),
                       r.getPayload().size()),
      "loss", [&](auto loss) {
        if (loss.getKind() == schema::LossKind::SPOOL_CORRUPT) first = loss.getFirstLostSequence();
        return Status::Ok();
      });
  return s.ok() && first == next;
}

void AgentChannel::OnBatch(const std::string& route, const std::string& host,
                           schema::EventBatch::Reader batch) {
  std::string boot = schema::AsString(batch.getBootId());
  auto records = batch.getRecords();
  if (boot.size() != 16 || records.size() == 0) {
    counters_.malformed_messages++;
    Refuse("malformed_message", host + ": batch without a 16-byte boot id or records", route,
           "malformed batch");
    return;
  }
  if (!recorder_.writable()) {
    // Unacknowledged, the records stay in the agent's spool; it resends
    // from what its Welcome says is held once we take writes again.
    counters_.batches_unwritable++;
    return;
  }
  auto key = std::make_pair(host, boot);
  const SequenceMark* mark = sequences_.Find(host, boot);
  uint64_t floor = mark ? mark->sequence : 0;
  auto fl = in_flight_.find(key);
  if (fl != in_flight_.end()) floor = std::max(floor, fl->second);
  // Validate the whole batch before anything is appended.
  uint64_t prev = 0;
  for (auto r : records) {
    auto kind = r.getKind();
    if (r.getSequence() <= prev ||
        (kind != schema::RecordKind::EVENT && kind != schema::RecordKind::LOSS &&
         kind != schema::RecordKind::ACTIVITY && kind != schema::RecordKind::GUARD) ||
        r.getPayload().size() > kMaxPayload) {
      counters_.malformed_messages++;
      Refuse("malformed_message", host + ": batch records out of order, of a bad kind or too large",
             route, "malformed batch");
      return;
    }
    prev = r.getSequence();
  }
  counters_.batches++;
  int64_t now = WallClockNs();
  ledger::EntryBatch entries;
  ledger::LedgerRecord rec;
  rec.host_id = host;
  rec.agent_boot_id = boot;
  rec.receive_time_ns = now;
  std::string bytes;
  uint64_t first = 0, count = 0;
  uint64_t next = floor + 1;   // the sequence the next record must have
  uint64_t declared_lost = 0;  // records the agent declared lost, stood for by a loss record
  uint64_t gap_at = 0;         // non-zero: the sequence that was expected and missing
  for (auto r : records) {
    if (r.getSequence() <= floor) {
      counters_.records_duplicate++;
      continue;
    }
    // Only the next sequence is appended: a record past a gap waits for the
    // agent to resend what is missing (exactly once means gap-free too). The
    // one exception is declared: a loss record standing for records the
    // agent lost from its spool, from `next` up to its own sequence.
    if (r.getSequence() != next && !DeclaresLostFrom(r, next)) {
      gap_at = next;
      counters_.records_out_of_order += records.size();
      break;
    }
    rec.kind = static_cast<ledger::RecordKind>(r.getKind());  // one of the three checked above
    rec.sequence = r.getSequence();
    rec.event_time_ns = r.getEventTimeNs();
    rec.payload = schema::AsString(r.getPayload());
    Status s = ledger::EncodeRecord(rec, &bytes);
    if (s.ok()) s = entries.Add(bytes);
    if (!s.ok()) {
      counters_.malformed_messages++;
      Refuse("malformed_message", host + ": " + s.ToString(), route, "record too large");
      return;
    }
    if (count++ == 0) first = rec.sequence;
    // A declared loss stands for next..its own sequence (its own number was
    // one of the lost records').
    if (rec.sequence != next) declared_lost += rec.sequence - next + 1;
    next = rec.sequence + 1;
  }
  uint64_t from = batch.getCheckpointSize();
  if (gap_at != 0) {
    capnp::MallocMessageBuilder m;
    auto rf = m.initRoot<schema::Envelope>().initResendFrom();
    rf.setBootId(schema::AsData(boot));
    rf.setSequence(gap_at);
    Send(route, schema::EncodeFrame(m));
  }
  if (count == 0) {
    // All retransmissions. A receipt now, unless a submission is still on its
    // way to disk: its receipt will cover these too.
    if (fl == in_flight_.end()) SendReceipt(host, boot, from);
    return;
  }
  uint64_t last = next - 1;
  in_flight_[key] = last;
  counters_.records_declared_lost += declared_lost;
  auto c = std::make_shared<Completion>();
  c->host = host;
  c->boot = boot;
  c->first_sequence = first;
  c->last_sequence = last;
  c->count = count;
  c->receive_time_ns = now;
  c->checkpoint_from = from;
  recorder_.CommitStarted();  // until its outcome has been taken in on the loop
  recorder_.batcher().Submit(std::move(entries), [this, c](const Status& s, uint64_t first_index) {
    // On the committer thread: the outcome goes to the loop.
    c->status = s;
    c->first_index = first_index;
    loop_.Post([this, c] { OnCompletion(*c); });
  });
}

void AgentChannel::OnCompletion(const Completion& c) {
  recorder_.CommitEnded();
  auto key = std::make_pair(c.host, c.boot);
  if (!c.status.ok()) {
    // Nothing of it is acknowledged: the agent keeps the records and sends
    // them again. What follows it for this boot failed too (the ledger
    // refuses every commit after a failed one), so nothing is in flight.
    recorder_.NoteFailure(c.status);
    in_flight_.erase(key);
    failed_appends_.insert(key);
    return;
  }
  counters_.records_appended += c.count;
  // The mark is the last record appended, at the last index.
  sequences_.Advance(c.host, c.boot,
                     {c.last_sequence, c.first_index + c.count - 1, c.receive_time_ns});
  auto it = in_flight_.find(key);
  if (it != in_flight_.end() && it->second <= c.last_sequence) in_flight_.erase(it);
  SendReceipt(c.host, c.boot, c.checkpoint_from, &c);
}

void AgentChannel::SendReceipt(const std::string& host, const std::string& boot,
                               uint64_t checkpoint_from, const Completion* appended) {
  const SequenceMark* mark = sequences_.Find(host, boot);
  auto route = routes_.find(host);
  if (mark == nullptr || route == routes_.end()) return;
  auto base = proof_base_.find(host);
  if (base != proof_base_.end()) checkpoint_from = base->second;
  std::string note = ledger_.checkpoint_note();
  tlog::Checkpoint cp;
  Status s = tlog::OpenCheckpoint(note, ledger_.verifier(), &cp);
  std::vector<tlog::Hash> inclusion, consistency;
  if (s.ok()) s = ledger_.InclusionProof(mark->index, cp.size, &inclusion);
  if (s.ok() && checkpoint_from > 0 && checkpoint_from <= cp.size) {
    s = ledger_.ConsistencyProof(checkpoint_from, cp.size, &consistency);
  }
  if (!s.ok()) {
    logging::Default().Error("cannot build a receipt; the agent resends",
                             {{"host", host}, {"error", s.ToString()}});
    return;
  }
  capnp::MallocMessageBuilder m;
  auto r = m.initRoot<schema::Envelope>().initReceipt();
  r.setBootId(schema::AsData(boot));
  r.setThroughSequence(mark->sequence);
  r.setThroughIndex(mark->index);
  r.setThroughReceiveTimeNs(mark->receive_time_ns);
  if (appended != nullptr) {
    r.setAppendedFirstSequence(appended->first_sequence);
    r.setAppendedFirstIndex(appended->first_index);
    r.setAppendedCount(appended->count);
  }
  r.setCheckpoint(schema::AsData(note));
  auto inc = r.initInclusionProof(static_cast<unsigned>(inclusion.size()));
  for (unsigned i = 0; i < inclusion.size(); ++i) inc.set(i, {inclusion[i].data(), 32});
  r.setConsistencyFrom(checkpoint_from);
  auto session = session_.find(host);
  r.setSession(session != session_.end() ? session->second : 0);
  auto con = r.initConsistencyProof(static_cast<unsigned>(consistency.size()));
  for (unsigned i = 0; i < consistency.size(); ++i) con.set(i, {consistency[i].data(), 32});
  counters_.receipts++;
  proof_base_[host] = cp.size;
  Send(route->second, schema::EncodeFrame(m));
}

void AgentChannel::SendWitnessed(const std::string& note) {
  for (const auto& [host, route] : routes_) SendWitnessedTo(host, note);
}

void AgentChannel::SendWitnessedTo(const std::string& host, const std::string& note) {
  auto route = routes_.find(host);
  if (note.empty() || route == routes_.end()) return;
  tlog::Checkpoint w;
  if (!tlog::OpenCheckpoint(note, ledger_.verifier(), &w).ok()) return;
  // From the size the agent holds (as receipts left it), in whichever
  // direction: the witnessed checkpoint usually lags the latest receipt.
  auto base = proof_base_.find(host);
  const uint64_t from = base != proof_base_.end() ? base->second : 0;
  std::vector<tlog::Hash> proof;
  if (from > 0 && from != w.size) {
    Status s = ledger_.ConsistencyProof(std::min(from, w.size), std::max(from, w.size), &proof);
    if (!s.ok()) {
      logging::Default().Error("cannot prove the witnessed checkpoint to an agent",
                               {{"host", host}, {"error", s.ToString()}});
      return;
    }
  }
  capnp::MallocMessageBuilder m;
  auto msg = m.initRoot<schema::Envelope>().initWitnessed();
  msg.setCheckpoint(schema::AsData(note));
  msg.setProofFrom(from);
  auto p = msg.initProof(static_cast<unsigned>(proof.size()));
  for (unsigned i = 0; i < proof.size(); ++i) p.set(i, {proof[i].data(), 32});
  Send(route->second, schema::EncodeFrame(m));
}

}  // namespace latch::collector
