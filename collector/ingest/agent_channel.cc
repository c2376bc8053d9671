// CollectorServer's channel to agents: ZAP admission of enrolled keys,
// sessions (Hello, Welcome), batches appended exactly once, receipts with
// proofs once they are durable, grant sets pushed, applied reports, alarms,
// and agents gone silent.

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

#include "collector/grants/grant_keys.h"
#include "collector/ingest/collector_server.h"
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
namespace {

constexpr uint32_t kMaxPayload = 60000;  // leaves room for the record envelope in 64 KiB

}  // namespace

// A host that had been talking and then stays unheard (agents send a
// heartbeat twice a second) goes on the record, once per silence: on a host
// whose agent is stopped or cut off, enforcement is no longer observed.
void CollectorServer::RecordSilentAgents() {
  // The loop turns at least every 200 ms. A longer gap is this collector's
  // own pause (SIGSTOP, a frozen VM, a stall): agents were not silent, we
  // were deaf, so the gap does not count towards anyone's silence (issue 14:
  // a 60 s freeze recorded agentSilent for an agent that never stopped).
  auto turn = std::chrono::steady_clock::now();
  if (last_turn_ != std::chrono::steady_clock::time_point{}) {
    int64_t gap_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(turn - last_turn_).count();
    if (gap_ns > 2'000'000'000) {
      silence_counts_from_ns_ = NowNs();  // everyone's silence starts again now
      logging::Default().Warn(
          "this collector was paused; the pause is not counted as agents' silence",
          {{"paused_ms", gap_ns / 1'000'000}});
    }
  }
  last_turn_ = turn;
  int64_t now = NowNs();
  int64_t after = static_cast<int64_t>(config_.agent_silent_after_ms) * 1'000'000;
  for (const auto& [host, heard] : last_heard_ns_) {
    if (now - std::max(heard, silence_counts_from_ns_) < after || silent_.count(host)) continue;
    silent_.insert(host);
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor(host);
    a.initAgentSilent().setLastHeardNs(heard);
    recorder_->RecordLater(schema::CanonicalBytes(a.asReader()), host);
    logging::Default().Warn("agent silent",
                            {{"host", host},
                             {"silent_ms", (now - heard) / 1'000'000},
                             {"hint", "is latch-agent running on it, and can it reach us?"}});
  }
}

void CollectorServer::HandleZap() {
  std::vector<zmq::message_t> frames;
  while (true) {
    zmq::message_t f;
    if (!zap_->recv(f, zmq::recv_flags::dontwait)) break;
    bool more = f.more();
    frames.push_back(std::move(f));
    if (!more) break;
  }
  if (frames.size() < 6) return;
  std::string version = frames[0].to_string(), request_id = frames[1].to_string();
  std::string mechanism = frames[5].to_string(), address = frames[3].to_string();
  std::string code = "400", text = "not enrolled", user;
  if (mechanism == "CURVE" && frames.size() >= 7 && frames[6].size() == 32) {
    char z85[41];
    zmq_z85_encode(z85, static_cast<const uint8_t*>(frames[6].data()), 32);
    auto it = config_.agents.find(z85);
    if (it != config_.agents.end()) {
      code = "200";
      text = "OK";
      user = it->second;
    } else {
      counters_.refused_keys++;
      Refuse("unenrolled_key", std::string("CURVE key ") + z85, "", "", address);
    }
  } else {
    counters_.refused_keys++;
    Refuse("unenrolled_key", "mechanism " + mechanism, "", "", address);
  }
  zap_->send(zmq::buffer(version), zmq::send_flags::sndmore);
  zap_->send(zmq::buffer(request_id), zmq::send_flags::sndmore);
  zap_->send(zmq::buffer(code), zmq::send_flags::sndmore);
  zap_->send(zmq::buffer(text), zmq::send_flags::sndmore);
  zap_->send(zmq::buffer(user), zmq::send_flags::sndmore);
  zap_->send(zmq::message_t(), zmq::send_flags::none);
}

void CollectorServer::HandleAgentMessage() {
  zmq::message_t route_msg, payload;
  if (!router_->recv(route_msg, zmq::recv_flags::dontwait)) return;
  if (!route_msg.more()) return;
  (void)router_->recv(payload, zmq::recv_flags::none);
  while (payload.more()) {  // a DEALER sends one frame; drop any extra
    zmq::message_t extra;
    (void)router_->recv(extra, zmq::recv_flags::none);
    if (!extra.more()) break;
  }
  std::string route = route_msg.to_string();
  std::string host = payload.gets("User-Id");
  // Not every transport has a peer address (inproc, ipc): gets() throws then.
  const char* address = zmq_msg_gets(payload.handle(), "Peer-Address");
  current_peer_ = address != nullptr ? address : "";
  if (payload.size() > config_.max_message_bytes) {
    counters_.oversized_messages++;
    Refuse("oversized_message", host + " sent " + std::to_string(payload.size()) + " bytes", route,
           "message larger than " + std::to_string(config_.max_message_bytes) + " bytes");
    return;
  }
  // Whatever the frame's structure makes a reader throw (a hostile pointer,
  // a wrong type) refuses that message only.
  Status read =
      schema::ReadFrame({static_cast<const char*>(payload.data()), payload.size()},
                        [&](schema::Envelope::Reader env) { OnEnvelope(route, host, env); });
  if (!read.ok()) {
    counters_.malformed_messages++;
    Refuse("malformed_message", host + ": " + read.message(), route, "malformed message");
  }
}

void CollectorServer::OnEnvelope(const std::string& route, const std::string& host,
                                 schema::Envelope::Reader env) {
  bool first_contact = routes_.find(host) == routes_.end();
  routes_[host] = route;
  last_heard_ns_[host] = NowNs();
  silent_.erase(host);
  // A host heard from for the first time since this collector started
  // gets its grant set even without a Hello (it may be mid-session).
  if (first_contact && env.which() != schema::Envelope::HELLO) PushGrantSet(host);
  switch (env.which()) {
    case schema::Envelope::HELLO: {
      auto hello = env.getHello();
      if (hello.getHostId() != host) {
        Refuse(
            "host_id_mismatch",
            "key enrolled as '" + host + "' says '" + std::string(hello.getHostId().cStr()) + "'",
            route, "host id does not match the enrolled key");
        return;
      }
      proof_base_[host] = hello.getCheckpointSize();
      session_[host] = hello.getSession();
      std::string boot = schema::AsString(hello.getBootId());
      auto known = connected_boot_.find(host);
      // A new agent boot, or the first Hello of this collector's run, is on
      // the record; a new session of the same boot is not news.
      if (known == connected_boot_.end() || known->second != boot) {
        connected_boot_[host] = boot;
        capnp::MallocMessageBuilder m;
        auto a = m.initRoot<schema::WorkflowAction>();
        a.setActor(host);
        auto c = a.initAgentConnected();
        c.setBootId(hello.getBootId());
        c.setCheckpointSize(hello.getCheckpointSize());
        c.setGrantSetVersion(hello.getGrantSetVersion());
        recorder_->RecordLater(schema::CanonicalBytes(a.asReader()), host);
      }
      PushGrantSet(host);
      // What this collector already holds of the boot is acknowledged at
      // once: the agent resends from there, not from what it last had
      // proven (issue 13.5: a lossy link resent everything in flight).
      const SequenceMark* mark = sequences_.Find(host, boot);
      auto appending = in_flight_.find({host, boot});
      if (mark != nullptr && mark->sequence > hello.getLastAcknowledgedSequence() &&
          appending == in_flight_.end()) {
        SendReceipt(host, boot, hello.getCheckpointSize());
      }
      // Then the answer the agent waits for before it sends: what is held
      // or being appended, so a new session resends none of it (a session
      // that timed out while its batches queued here used to resend them
      // all: ~8,000 duplicates of 16,000 on a loaded machine).
      capnp::MallocMessageBuilder w;
      auto welcome = w.initRoot<schema::Envelope>().initWelcome();
      welcome.setSession(hello.getSession());
      welcome.setBootId(hello.getBootId());
      uint64_t held = mark != nullptr ? mark->sequence : 0;
      if (appending != in_flight_.end()) held = std::max(held, appending->second);
      welcome.setHeldThroughSequence(held);
      Send(route, schema::EncodeFrame(w));
      return;
    }
    case schema::Envelope::EVENT_BATCH:
      return OnBatch(route, host, env.getEventBatch());
    case schema::Envelope::APPLIED:
      return OnApplied(host, env.getApplied());
    case schema::Envelope::ALARM:
      return OnAlarm(host, env.getAlarm());
    case schema::Envelope::HEARTBEAT: {
      capnp::MallocMessageBuilder m;
      m.initRoot<schema::Envelope>().setHeartbeat(NowNs());
      Send(route, schema::EncodeFrame(m));
      return;
    }
    default:
      Refuse("unexpected_message", host + " sent a collector-only message", route,
             "unexpected message kind");
      return;
  }
}

// Whether `r` is a loss record that stands for the agent's records from
// `next` up to its own sequence (records lost in a damaged spool file). A
// malformed payload declares nothing.
bool CollectorServer::DeclaresLostFrom(schema::SpooledRecord::Reader r, uint64_t next) const {
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

void CollectorServer::OnBatch(const std::string& route, const std::string& host,
                              schema::EventBatch::Reader batch) {
  std::string boot = schema::AsString(batch.getBootId());
  auto records = batch.getRecords();
  if (boot.size() != 16 || records.size() == 0) {
    counters_.malformed_messages++;
    Refuse("malformed_message", host + ": batch without a 16-byte boot id or records", route,
           "malformed batch");
    return;
  }
  if (!recorder_->writable()) {
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
  int64_t now = NowNs();
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
  auto c = std::make_unique<Completion>();
  c->host = host;
  c->boot = boot;
  c->first_sequence = first;
  c->last_sequence = last;
  c->count = count;
  c->receive_time_ns = now;
  c->checkpoint_from = from;
  Completion* raw = c.release();
  recorder_->CommitStarted();  // until HandleCompletions has taken its completion
  recorder_->batcher().Submit(std::move(entries),
                              [this, raw](const Status& s, uint64_t first_index) {
                                std::unique_ptr<Completion> done(raw);
                                done->status = s;
                                done->first_index = first_index;
                                {
                                  MutexLock lock(completions_mu_);
                                  completions_.push_back(std::move(done));
                                }
                                uint64_t one = 1;
                                (void)!::write(wake_fd_, &one, sizeof(one));
                              });
}

void CollectorServer::HandleCompletions() {
  uint64_t n;
  (void)!::read(wake_fd_, &n, sizeof(n));
  std::vector<std::unique_ptr<Completion>> done;
  {
    MutexLock lock(completions_mu_);
    done.swap(completions_);
  }
  for (auto& c : done) {
    recorder_->CommitEnded();
    auto key = std::make_pair(c->host, c->boot);
    if (!c->status.ok()) {
      // Nothing of it is acknowledged: the agent keeps the records and sends
      // them again. What follows it for this boot failed too (the ledger
      // refuses every commit after a failed one), so nothing is in flight.
      recorder_->NoteFailure(c->status);
      in_flight_.erase(key);
      failed_appends_.insert(key);
      continue;
    }
    counters_.records_appended += c->count;
    uint64_t last_sequence = c->last_sequence;
    // The mark is the last record appended, at the last index.
    sequences_.Advance(c->host, c->boot,
                       {last_sequence, c->first_index + c->count - 1, c->receive_time_ns});
    auto it = in_flight_.find(key);
    if (it != in_flight_.end() && it->second <= last_sequence) in_flight_.erase(it);
    SendReceipt(c->host, c->boot, c->checkpoint_from, c.get());
  }
}

void CollectorServer::SendReceipt(const std::string& host, const std::string& boot,
                                  uint64_t checkpoint_from, const Completion* appended) {
  const SequenceMark* mark = sequences_.Find(host, boot);
  auto route = routes_.find(host);
  if (mark == nullptr || route == routes_.end()) return;
  auto base = proof_base_.find(host);
  if (base != proof_base_.end()) checkpoint_from = base->second;
  std::string note = ledger_->checkpoint_note();
  tlog::Checkpoint cp;
  Status s = tlog::OpenCheckpoint(note, ledger_->verifier(), &cp);
  std::vector<tlog::Hash> inclusion, consistency;
  if (s.ok()) s = ledger_->InclusionProof(mark->index, cp.size, &inclusion);
  if (s.ok() && checkpoint_from > 0 && checkpoint_from <= cp.size) {
    s = ledger_->ConsistencyProof(checkpoint_from, cp.size, &consistency);
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

void CollectorServer::Send(const std::string& route, const std::string& payload) {
  try {
    // Never blocks: an agent that stops reading (stuck, or hostile) fills its
    // queue, and a blocking send would stop the loop, and with it every
    // agent and the API (found by flooding the collector with Hellos while
    // reading nothing). Once the first part is queued, the rest is too.
    if (!router_->send(zmq::buffer(route), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      // Its queue is full: the reply is dropped. Receipts and grant sets are
      // asked for again (a receipt timeout starts a new session, whose Hello
      // gets the set), so nothing is lost but time.
      const uint64_t dropped = ++counters_.replies_dropped;
      if ((dropped & (dropped - 1)) == 0) {  // the 1st, 2nd, 4th, 8th...: not a flood of lines
        logging::Default().Warn("an agent is not reading its replies; dropping them",
                                {{"dropped", dropped}});
      }
      return;
    }
    router_->send(zmq::buffer(payload), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    // The peer is gone (EHOSTUNREACH) or its queue is full: it will reconnect
    // and its spool resends; nothing is lost by dropping this reply.
    for (auto it = routes_.begin(); it != routes_.end(); ++it) {
      if (it->second == route) {
        routes_.erase(it);
        break;
      }
    }
  }
}

void CollectorServer::PushGrantSet(const std::string& host) {
  auto route = routes_.find(host);
  if (route == routes_.end()) return;
  if (grants_->acting()) {
    push_when_settled_.insert(host);  // its set may hold a grant not yet on record
    return;
  }
  std::string signed_set;
  Status s = grants_->SignedSet(host, NowNs(), &signed_set);
  if (!s.ok()) {
    logging::Default().Error("cannot build a grant set", {{"host", host}, {"error", s.ToString()}});
    return;
  }
  capnp::MallocMessageBuilder m;
  auto env = m.initRoot<schema::Envelope>();
  s = schema::ReadCanonical<schema::SignedGrantSet>(signed_set, "grant set",
                                                    [&](schema::SignedGrantSet::Reader r) {
                                                      env.setGrantSet(r);
                                                      return Status::Ok();
                                                    });
  if (!s.ok()) return;
  counters_.grant_sets_sent++;
  Send(route->second, schema::EncodeFrame(m));
}

void CollectorServer::OnApplied(const std::string& host, schema::Applied::Reader applied) {
  counters_.applied_reports++;
  grants_->NoteApplied(host, applied.getGrantIds(), applied.getAppliedAtNs());
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(host);
  auto g = a.initGrantSetApplied();
  g.setVersion(applied.getVersion());
  g.setAppliedAtNs(applied.getAppliedAtNs());
  g.setGrantIds(applied.getGrantIds());
  g.setRejected(applied.getRejected());
  g.setRejectedSet(applied.getRejectedSet());
  // The same set applied again (a new session, a restart adopting the
  // pinned grants) changes nothing on the host: one record per change. The
  // time it took effect is the first report's.
  capnp::MallocMessageBuilder same;
  auto key = same.initRoot<schema::GrantSetApplied>();
  key.setVersion(applied.getVersion());
  key.setGrantIds(applied.getGrantIds());
  key.setRejected(applied.getRejected());
  key.setRejectedSet(applied.getRejectedSet());
  std::string canonical = schema::CanonicalBytes(key.asReader());
  auto last = applied_set_.find(host);
  if (last != applied_set_.end() && last->second == canonical) return;
  applied_set_[host] = canonical;
  recorder_->RecordLater(schema::CanonicalBytes(a.asReader()), host);
}

void CollectorServer::OnAlarm(const std::string& host, schema::Alarm::Reader alarm) {
  counters_.alarms++;
  if (alarm.getKind() == "stalled") {
    logging::Default().Alert("ALARM from an agent: its delivery is stalled",
                             {{"host", host},
                              {"kind", "stalled"},
                              {"detail", alarm.getDetail().cStr()},
                              {"hint",
                               "its records wait in its spool; compare its log with ours "
                               "(receipts sent, duplicates counted)"}});
  } else {
    logging::Default().Alert("ALARM from an agent: a receipt did not hold",
                             {{"host", host},
                              {"kind", alarm.getKind().cStr()},
                              {"detail", alarm.getDetail().cStr()},
                              {"hint",
                               "the ledger may have been rolled back or rewritten; compare "
                               "its checkpoint with the agent's held one (recorded)"}});
  }
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(host);
  a.initAgentAlarm().setAlarm(alarm);
  recorder_->RecordLater(schema::CanonicalBytes(a.asReader()), host);
}
}  // namespace latch::collector
