#include "agent/collector_link.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <unistd.h>

#include <cstring>

#include "agent/boot_clock.h"
#include "agent/receipt_check.h"
#include "lib/tlog/merkle_hash.h"
#include "lib/tlog/proof.h"
#include "schemas/canonical.h"
#include "schemas/record_codec.h"
#include "schemas/wire_frame.h"

namespace latch::agent {
namespace {

using Clock = std::chrono::steady_clock;

std::vector<tlog::Hash> Hashes(capnp::List<capnp::Data>::Reader list, bool* ok) {
  std::vector<tlog::Hash> out;
  *ok = true;
  for (auto h : list) {
    if (h.size() != 32) {
      *ok = false;
      return {};
    }
    tlog::Hash x;
    std::memcpy(x.data(), h.begin(), 32);
    out.push_back(x);
  }
  return out;
}

}  // namespace

CollectorLink::CollectorLink(boost::asio::io_context& io, CollectorLinkOptions options,
                             Spool& spool, CheckpointWitness& witness,
                             std::function<uint64_t()> grant_version, GrantSetHandler on_grant_set,
                             logging::Logger& log)
    : CollectorLink(io, options, spool, witness, std::move(grant_version), std::move(on_grant_set),
                    log, MakeZmqLinkTransport(io, {options.server_public_key, options.key})) {}

CollectorLink::CollectorLink(boost::asio::io_context& io, CollectorLinkOptions options,
                             Spool& spool, CheckpointWitness& witness,
                             std::function<uint64_t()> grant_version, GrantSetHandler on_grant_set,
                             logging::Logger& log, std::unique_ptr<LinkTransport> transport)
    : io_(io),
      options_(std::move(options)),
      spool_(spool),
      witness_(witness),
      grant_version_(std::move(grant_version)),
      on_grant_set_(std::move(on_grant_set)),
      log_(log),
      transport_(std::move(transport)),
      timer_(io),
      round_trip_(options_.receipt_timeout, options_.receipt_timeout_max),
      coverage_(witness.key(), options_.witnessing) {
  transport_->SetReceiver([this](std::string_view frame) {
    last_heard_ = Clock::now();
    heard_this_session_ = true;
    OnMessage(frame);
  });
  transport_->SetRefusalHandler([this](const std::string& why) { NoteNotEnrolled(why); });
}

void CollectorLink::NoteNotEnrolled(const std::string& why) {
  // Said once per minute at most: the socket retries every few seconds.
  counters_.refused++;
  auto now = Clock::now();
  if (last_refusal_logged_ != Clock::time_point{} &&
      now - last_refusal_logged_ < std::chrono::minutes(1)) {
    return;
  }
  last_refusal_logged_ = now;
  log_.Error("the collector refused this agent: its key is not enrolled there",
             {{"detail", why},
              {"host_id", options_.host_id},
              {"curve_public_key", options_.key.public_z85},
              {"hint",
               "enrol it with a join token (latch-collector token create there, latch-agent "
               "enrol here), or add an [[agent]] with this host_id and curve_public_key to the "
               "collector's config and reload it (systemctl reload: SIGHUP)"}});
}

CollectorLink::~CollectorLink() = default;

Status CollectorLink::Start() {
  if (options_.endpoints.empty()) return Status::InvalidArgument("no collector endpoints");
  LATCH_RETURN_IF_ERROR(Connect());
  Tick();
  return Status::Ok();
}

Status CollectorLink::Connect() {
  LATCH_RETURN_IF_ERROR(transport_->Connect(endpoint()));
  log_.Info("connecting to the collector", {{"endpoint", endpoint()}});
  collector_holds_.clear();  // what another endpoint said is no guide to this one
  last_heard_ = Clock::now();
  NewSession("connected");
  return Status::Ok();
}

void CollectorLink::NewSession(const char* why) {
  counters_.sessions++;
  session_started_ = Clock::now();
  heard_this_session_ = false;
  if (!in_flight_.empty()) {
    log_.Info("new session with the collector; resending what it has not acknowledged",
              {{"why", why}, {"records", spool_.unacknowledged()}});
  }
  in_flight_.clear();
  spool_.Rewind(collector_holds_);
  ++session_;
  capnp::MallocMessageBuilder m;
  auto h = m.initRoot<schema::Envelope>().initHello();
  h.setSession(session_);
  h.setHostId(options_.host_id);
  h.setBootId(schema::AsData(spool_.boot_id()));
  h.setCheckpointSize(witness_.size());
  h.setGrantSetVersion(grant_version_());
  h.setLastAcknowledgedSequence(spool_.acknowledged(spool_.boot_id()));
  awaiting_welcome_ = true;
  Send(m);
}

void CollectorLink::StartSending() {
  awaiting_welcome_ = false;
  spool_.Rewind(collector_holds_);
  Pump();
}

bool CollectorLink::Send(capnp::MessageBuilder& m) {
  return transport_->Send(schema::EncodeFrame(m));
}

void CollectorLink::Pump() {
  if (awaiting_welcome_) return;
  while (in_flight_.size() < options_.window_batches) {
    SpoolBatch b;
    Status s = spool_.NextBatch(options_.batch_records, &b);
    if (!s.ok()) {
      log_.Error("reading the spool", {{"error", s.ToString()}});
      return;
    }
    if (b.records.empty()) return;
    capnp::MallocMessageBuilder m;
    auto eb = m.initRoot<schema::Envelope>().initEventBatch();
    eb.setBootId(schema::AsData(b.boot_id));
    eb.setCheckpointSize(witness_.size());
    auto rs = eb.initRecords(static_cast<unsigned>(b.records.size()));
    for (unsigned i = 0; i < b.records.size(); ++i) {
      const SpooledRecord& r = b.records[i];
      rs[i].setSequence(r.sequence);
      rs[i].setKind(static_cast<schema::RecordKind>(r.kind));
      rs[i].setEventTimeNs(r.event_time_ns);
      rs[i].setPayload(schema::AsData(r.payload));
    }
    // Not sent (no connection yet): the receipt timeout resends it.
    if (Send(m)) {
      counters_.batches_sent++;
      counters_.records_sent += b.records.size();
    }
    in_flight_.push_back({std::move(b), Clock::now()});
  }
}

void CollectorLink::OnMessage(std::string_view msg) {
  if (msg.size() == 0 || msg.size() % sizeof(capnp::word) != 0) {
    log_.Warn("malformed message from the collector, ignored", {{"bytes", msg.size()}});
    return;
  }
  Status read = schema::ReadFrame(msg, [this](schema::Envelope::Reader env) { OnEnvelope(env); });
  if (!read.ok()) {
    log_.Warn("undecodable message from the collector, ignored", {{"error", read.message()}});
  }
}

void CollectorLink::OnEnvelope(schema::Envelope::Reader env) {
  switch (env.which()) {
    case schema::Envelope::RECEIPT:
      OnReceipt(env.getReceipt());
      break;
    case schema::Envelope::GRANT_SET:
      counters_.grant_sets++;
      on_grant_set_(env.getGrantSet());
      break;
    case schema::Envelope::RESEND_FROM: {
      // Older queued batches reached a new collector after newer ones. One
      // new session is enough for a burst of these; it starts where the
      // collector says it is missing records.
      auto rf = env.getResendFrom();
      auto held = collector_holds_.find(schema::AsString(rf.getBootId()));
      if (held != collector_holds_.end() && rf.getSequence() > 0) {
        held->second = std::min(held->second, rf.getSequence() - 1);
      }
      if (Clock::now() - session_started_ > round_trip_.timeout() / 4) {
        NewSession("the collector is missing records");
      } else if (!awaiting_welcome_ && in_flight_.empty()) {
        // A session this young has nothing in flight whose timeout would
        // bring the missing records: send them now.
        StartSending();
      }
      break;
    }
    case schema::Envelope::WELCOME: {
      // Everything sent before the Hello has been taken in: send what
      // follows what the collector holds. An earlier session's Welcome
      // (its Hello crossed a newer one) is only a hint of what is held.
      auto w = env.getWelcome();
      if (w.getHeldThroughSequence() > 0) {
        NoteCollectorHolds(schema::AsString(w.getBootId()), w.getHeldThroughSequence());
      }
      if (awaiting_welcome_ && w.getSession() == session_) StartSending();
      break;
    }
    case schema::Envelope::WITNESSED:
      OnWitnessed(env.getWitnessed());
      break;
    case schema::Envelope::REFUSED:
      // A key let in only to enrol (a join token is open) is told "not
      // enrolled" for anything else: the same news as a refused handshake.
      if (std::string_view(env.getRefused().cStr()) == "not enrolled") {
        NoteNotEnrolled("the collector answers: not enrolled");
        break;
      }
      log_.Error("the collector refused a message", {{"reason", env.getRefused().cStr()}});
      break;
    default:
      break;  // heartbeats: hearing anything is what counts
  }
}

const SpooledRecord* CollectorLink::FindInFlight(const std::string& boot, uint64_t sequence) const {
  for (const InFlight& f : in_flight_) {
    if (f.batch.boot_id != boot || f.batch.records.empty()) continue;
    uint64_t first = f.batch.records.front().sequence;
    if (sequence >= first && sequence - first < f.batch.records.size()) {
      const SpooledRecord& r = f.batch.records[sequence - first];
      if (r.sequence == sequence) return &r;
    }
  }
  return nullptr;
}

void CollectorLink::OnReceipt(schema::Receipt::Reader r) {
  counters_.receipts++;
  std::string boot = schema::AsString(r.getBootId());
  std::string note = schema::AsString(r.getCheckpoint());
  bool ok_con = false, ok_inc = false;
  std::vector<tlog::Hash> consistency = Hashes(r.getConsistencyProof(), &ok_con);
  std::vector<tlog::Hash> inclusion = Hashes(r.getInclusionProof(), &ok_inc);
  if (!ok_con || !ok_inc) {
    counters_.receipts_rejected++;
    RaiseAlarm("malformed_receipt", "proof hashes are not 32 bytes", note);
    return;
  }
  if (r.getSession() != 0 && r.getSession() != session_) {
    // Built on the size an earlier session's Hello gave (it was on its way
    // when the latest Hello left): using it for the checkpoint would move the
    // held size under the proofs the collector is now building from the new
    // Hello's. What it says the collector holds still spares a resend.
    counters_.receipts_stale++;
    NoteCollectorHolds(boot, r.getThroughSequence());
    return;
  }
  tlog::Checkpoint shown;
  std::string alarm;
  Status s = witness_.Advance(note, r.getConsistencyFrom(), consistency, &shown, &alarm);
  if (!s.ok() && alarm.empty()) {
    // Within one session the collector proves each receipt from the last
    // one's size: a mismatch means a receipt was lost on the way.
    NoteCollectorHolds(boot, r.getThroughSequence());
    // A proof from a size we do not hold: a new session tells the collector
    // what we hold, and the resend gets receipts that can be checked. A
    // collector that never manages that is withholding proofs: alarm.
    if (++unprovable_receipts_ >= 50) {
      unprovable_receipts_ = 0;
      RaiseAlarm("unprovable_checkpoint", "50 receipts in a row without a usable consistency proof",
                 note);
    }
    if (Clock::now() - session_started_ > round_trip_.timeout() / 4) {
      NewSession(s.message().c_str());
    }
    return;
  }
  unprovable_receipts_ = 0;
  if (!s.ok()) {
    counters_.receipts_rejected++;
    RaiseAlarm(alarm, s.ToString(), note);
    return;
  }
  uint64_t through = r.getThroughSequence();
  if (s.ok()) NoteCollectorHolds(boot, through);
  const SpooledRecord* rec = FindInFlight(boot, through);
  SpooledRecord held;
  if (rec == nullptr) {
    // A receipt for a record outside the batches in flight: the collector
    // already had what we sent (a resend after a restart or a lost receipt)
    // and names the last record of this boot it holds. If the spool still
    // has that record, its proof can be checked as well as any other, and
    // everything up to it forgotten (issue 13.4: ignoring these stalled a
    // host's delivery for good).
    if (through <= spool_.acknowledged(boot) || !spool_.Find(boot, through, &held).ok()) return;
    rec = &held;
  }
  SpooledEntry entry{options_.host_id,   boot,
                     rec->sequence,      rec->kind,
                     rec->event_time_ns, r.getThroughReceiveTimeNs(),
                     rec->payload};
  s = CheckEntryIncluded(entry, r.getThroughIndex(), inclusion, shown);
  if (!s.ok()) {
    counters_.receipts_rejected++;
    RaiseAlarm("bad_inclusion_proof",
               "record " + std::to_string(through) + " at index " +
                   std::to_string(r.getThroughIndex()) + ": " + s.ToString(),
               note);
    return;
  }
  uint64_t before = spool_.unacknowledged();
  s = spool_.Acknowledge(boot, through);
  if (!s.ok()) log_.Error("acknowledging spooled records", {{"error", s.ToString()}});
  counters_.records_acknowledged += before - spool_.unacknowledged();
  auto now = Clock::now();
  coverage_.Acknowledged(r.getThroughIndex(), now);
  while (!in_flight_.empty() && in_flight_.front().batch.boot_id == boot &&
         in_flight_.front().batch.records.back().sequence <= through) {
    round_trip_.Sample(
        std::chrono::duration_cast<RoundTripEstimator::Duration>(now - in_flight_.front().sent));
    in_flight_.pop_front();
  }
  fruitless_sessions_ = 0;
  Pump();
}

void CollectorLink::OnWitnessed(schema::Witnessed::Reader w) {
  if (!coverage_.enabled()) return;
  const std::string note = schema::AsString(w.getCheckpoint());
  bool ok = false;
  std::vector<tlog::Hash> proof = Hashes(w.getProof(), &ok);
  if (!ok) {
    RaiseAlarm("malformed_witnessed", "proof hashes are not 32 bytes", note);
    return;
  }
  std::string alarm;
  Status s = coverage_.Offer(note, w.getProofFrom(), proof, witness_.held(), &alarm);
  if (s.ok()) {
    counters_.witnessed_accepted++;
    log_.Debug("witnessed checkpoint", {{"size", coverage_.witnessed_size()}});
  } else if (alarm.empty()) {
    counters_.witnessed_ignored++;
    log_.Debug("witnessed checkpoint not used", {{"why", s.message()}});
  } else {
    RaiseAlarm(alarm, s.ToString(), note);
  }
}

void CollectorLink::NoteCollectorHolds(const std::string& boot, uint64_t through) {
  uint64_t& held = collector_holds_[boot];
  held = std::max(held, through);
}

void CollectorLink::RaiseAlarm(const std::string& kind, const std::string& detail,
                               const std::string& shown) {
  counters_.alarms++;
  if (kind == "unwitnessed" || kind.find("witness") != std::string::npos) {
    log_.Alert("ALARM: the collector's history is not witnessed as this agent requires",
               {{"kind", kind},
                {"detail", detail},
                {"hint",
                 "the collector may be showing this host a history others do not see (a split "
                 "view), or its witnesses are down; the spool keeps what it can; compare "
                 "checkpoints with the witnesses'"}});
  } else if (kind == "stalled") {
    log_.Alert("ALARM: delivery to the collector is stalled",
               {{"kind", kind},
                {"detail", detail},
                {"hint",
                 "the spool keeps the records; check the collector's log and the link "
                 "between them"}});
  } else {
    log_.Alert("ALARM: a receipt from the collector does not hold",
               {{"kind", kind},
                {"detail", detail},
                {"hint",
                 "the collector's ledger may have been rolled back or rewritten; the spool "
                 "keeps these records; compare checkpoints before trusting the ledger"}});
  }
  auto now = Clock::now();
  auto& last = last_alarm_[kind];
  if (last != Clock::time_point{} && now - last < std::chrono::seconds(10)) return;
  last = now;
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::Envelope>().initAlarm();
  a.setKind(kind);
  a.setDetail(detail);
  a.setHeldCheckpoint(schema::AsData(witness_.note()));
  a.setShownCheckpoint(schema::AsData(shown));
  Send(m);
  // Every other endpoint hears it too: one of them may be honest.
  std::string frame = schema::EncodeFrame(m);
  for (size_t i = 0; i < options_.endpoints.size(); ++i) {
    if (i != endpoint_index_) transport_->SendOnce(options_.endpoints[i], frame);
  }
}

void CollectorLink::SendAlarm(const std::string& kind, const std::string& detail) {
  counters_.alarms++;
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::Envelope>().initAlarm();
  a.setKind(kind);
  a.setDetail(detail);
  Send(m);
}

void CollectorLink::SendApplied(const AppliedReport& report) {
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::Envelope>().initApplied();
  a.setVersion(report.version);
  a.setAppliedAtNs(report.applied_at_ns);
  auto ids = a.initGrantIds(static_cast<unsigned>(report.grant_ids.size()));
  for (unsigned i = 0; i < report.grant_ids.size(); ++i) ids.set(i, report.grant_ids[i]);
  auto rej = a.initRejected(static_cast<unsigned>(report.rejected.size()));
  for (unsigned i = 0; i < report.rejected.size(); ++i) {
    rej[i].setGrantId(report.rejected[i].first);
    rej[i].setReason(report.rejected[i].second);
  }
  a.setRejectedSet(report.rejected_set);
  auto removed = a.initRemovedGrantIds(static_cast<unsigned>(report.removed_grant_ids.size()));
  for (unsigned i = 0; i < report.removed_grant_ids.size(); ++i) {
    removed.set(i, report.removed_grant_ids[i]);
  }
  Send(m);
}

void CollectorLink::Tick() {
  auto now = Clock::now();
  if (now - last_heard_ > options_.failover_after) {
    counters_.failovers++;
    endpoint_index_ = (endpoint_index_ + 1) % options_.endpoints.size();
    log_.Warn("collector silent; trying the next endpoint",
              {{"silent_ms",
                std::chrono::duration_cast<std::chrono::milliseconds>(now - last_heard_).count()},
               {"endpoint", endpoint()}});
    Status s = Connect();
    if (!s.ok()) log_.Error("connecting to the collector", {{"error", s.ToString()}});
  } else if (awaiting_welcome_ && now - session_started_ > round_trip_.timeout()) {
    // No answer to the Hello: a collector too old to send one, or the Hello
    // or its answer lost. Send from what is known; receipts (or their
    // timeout) take it from there.
    counters_.welcomes_missed++;
    log_.Warn("no answer to the hello in time; sending from the last acknowledged record",
              {{"session", session_}});
    StartSending();
  } else if (!in_flight_.empty() && now - in_flight_.front().sent > round_trip_.timeout()) {
    // Sessions that end without a single usable receipt while the collector
    // was talking to us: after a few the link is stalled, not slow, and that
    // is raised, not retried silently. A collector that is down is not this
    // (it falls silent, and the link fails over).
    if (heard_this_session_ && ++fruitless_sessions_ == options_.stalled_after_sessions) {
      RaiseAlarm("stalled",
                 std::to_string(fruitless_sessions_) +
                     " sessions in a row without a usable receipt; " +
                     std::to_string(spool_.unacknowledged()) + " records wait in the spool",
                 "");
    }
    round_trip_.BackOff();
    NewSession("no receipt in time");
  } else {
    capnp::MallocMessageBuilder m;
    m.initRoot<schema::Envelope>().setHeartbeat(NowUnixNs());
    Send(m);
    Pump();
  }
  // Acknowledged records still not in a witnessed checkpoint past the
  // bound: raised again every 10 s while it lasts.
  if (std::string detail; coverage_.Overdue(Clock::now(), &detail) &&
                          Clock::now() - overdue_raised_ >= std::chrono::seconds(10)) {
    overdue_raised_ = Clock::now();
    RaiseAlarm("unwitnessed", detail, "");
  }
  Status s = witness_.Save();
  if (!s.ok()) log_.Error("saving the checkpoint witness", {{"error", s.ToString()}});
  s = spool_.SaveAcknowledged();
  if (!s.ok()) log_.Warn("saving spool acknowledgements", {{"error", s.ToString()}});
  timer_.expires_after(options_.tick);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) Tick();
  });
}

}  // namespace latch::agent
