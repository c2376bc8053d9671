#include "collector/ingest/agent_channel.h"

#include <capnp/message.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <utility>

#include "lib/logging/logger.h"
#include "lib/tlog/checkpoint.h"
#include "schemas/canonical.h"
#include "schemas/event.capnp.h"
#include "schemas/host_id.h"
#include "schemas/join_token.h"
#include "schemas/record_codec.h"
#include "schemas/wire.capnp.h"
#include "schemas/wire_frame.h"
#include "schemas/workflow.capnp.h"

namespace latch::collector {

namespace {
// ZAP's User-Id for a key admitted only to enrol: no host id has a ':'.
constexpr std::string_view kEnrollingPrefix = "enrol:";
}  // namespace

AgentChannel::AgentChannel(const CollectorConfig& config, const EnrolmentBook& enrolment,
                           ledger::Ledger& ledger, Recorder& recorder, GrantService& grants,
                           RefusalLog& refusals, Dispatcher& loop, CollectorCounters& counters)
    : config_(config),
      enrolment_(enrolment),
      ledger_(ledger),
      recorder_(recorder),
      grants_(grants),
      refusals_(refusals),
      loop_(loop),
      counters_(counters) {
  EnrolmentChanged();
}

void AgentChannel::EnrolmentChanged() {
  enrolled_hosts_.clear();
  for (const auto& [key, host] : config_.agents) enrolled_hosts_.insert(host);
  for (const auto& [key, host] : enrolment_.keys()) enrolled_hosts_.insert(host);
}

namespace {
// TCP keepalives on each agent's connection: a peer that stops answering is
// dropped after 10 s idle plus 3 probes 2 s apart.
constexpr int kKeepaliveIdleS = 10;
constexpr int kKeepaliveIntervalS = 2;
constexpr int kKeepaliveProbes = 3;
}  // namespace

Status AgentChannel::Bind(zmq::context_t& context, const schema::CurveKeyPair& curve) {
  try {
    zap_ = std::make_unique<zmq::socket_t>(context, zmq::socket_type::rep);
    zap_->bind("inproc://zeromq.zap.01");
    router_ = std::make_unique<zmq::socket_t>(context, zmq::socket_type::router);
    router_->set(zmq::sockopt::curve_server, 1);
    router_->set(zmq::sockopt::curve_secretkey, curve.secret_z85);
    router_->set(zmq::sockopt::zap_domain, "latch");
    router_->set(zmq::sockopt::router_mandatory, 1);
    router_->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(config_.max_message_bytes * 4));
    // Dead peers are found by the kernel's TCP keepalives (~16 s for a
    // machine that vanished), not by ZeroMQ heartbeats from this side:
    // libzmq keeps every connection's heartbeat timers in one ordered map
    // per I/O thread and cancels one by walking it, so a heartbeat each
    // second to each of 10,000 agents costs ~10^8 steps a second, all on
    // the I/O threads that also take the agents' handshakes
    // (fleet_bench). Agents still heartbeat the collector (they notice a dead
    // one within 5 s) and this side answers their pings; a silent agent is
    // noticed by the ingest's own silence timer.
    router_->set(zmq::sockopt::heartbeat_ivl, 0);
    router_->set(zmq::sockopt::tcp_keepalive, 1);
    router_->set(zmq::sockopt::tcp_keepalive_idle, kKeepaliveIdleS);
    router_->set(zmq::sockopt::tcp_keepalive_intvl, kKeepaliveIntervalS);
    router_->set(zmq::sockopt::tcp_keepalive_cnt, kKeepaliveProbes);
    router_->set(zmq::sockopt::linger, 0);
    for (const std::string& e : config_.endpoints) router_->bind(e);
  } catch (const zmq::error_t& e) {
    return Status::IoError(std::string("binding the agents' sockets: ") + e.what());
  }
  return Status::Ok();
}

int AgentChannel::router_fd() const { return router_->get(zmq::sockopt::fd); }
int AgentChannel::zap_fd() const { return zap_->get(zmq::sockopt::fd); }

bool AgentChannel::Turn() {
  LATCH_ASSERT_ON_LOOP(loop_);
  while (zap_->get(zmq::sockopt::events) & ZMQ_POLLIN) HandleZap();
  // Bounded turns per wake-up, so the rest of the loop is never starved.
  for (int i = 0; i < 256 && (router_->get(zmq::sockopt::events) & ZMQ_POLLIN); ++i) {
    HandleAgentMessage();
  }
  return (router_->get(zmq::sockopt::events) & ZMQ_POLLIN) ||
         (zap_->get(zmq::sockopt::events) & ZMQ_POLLIN);
}

std::vector<std::string> AgentChannel::connected() const {
  std::vector<std::string> hosts;
  for (const auto& [host, route] : routes_) hosts.push_back(host);
  return hosts;
}

void AgentChannel::PushDeferred() {
  std::set<std::string> push;
  push.swap(push_deferred_);
  for (const std::string& host : push) PushGrantSet(host);
}

void AgentChannel::AskForFailedAppends() {
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

void AgentChannel::Refuse(const std::string& what, const std::string& detail,
                          const std::string& route, const std::string& reply,
                          const std::string& peer) {
  refusals_.Count(what, detail, peer.empty() && !route.empty() ? current_peer_ : peer);
  if (!route.empty()) {
    capnp::MallocMessageBuilder m;
    m.initRoot<schema::Envelope>().setRefused(reply);
    Send(route, schema::EncodeFrame(m));
  }
}

// A host that had been talking and then stays unheard (agents send a
// heartbeat twice a second) goes on the record, once per silence: on a host
// whose agent is stopped or cut off, enforcement is no longer observed.
void AgentChannel::RecordSilentAgents() {
  // The loop turns at least every 200 ms. A longer gap is this collector's
  // own pause (SIGSTOP, a frozen VM, a stall): agents were not silent, we
  // were deaf, so the gap does not count towards anyone's silence (issue 14:
  // a 60 s freeze recorded agentSilent for an agent that never stopped).
  auto turn = std::chrono::steady_clock::now();
  if (last_turn_ != std::chrono::steady_clock::time_point{}) {
    int64_t gap_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(turn - last_turn_).count();
    if (gap_ns > 2'000'000'000) {
      silence_counts_from_ns_ = WallClockNs();  // everyone's silence starts again now
      logging::Default().Warn(
          "this collector was paused; the pause is not counted as agents' silence",
          {{"paused_ms", gap_ns / 1'000'000}});
    }
  }
  last_turn_ = turn;
  int64_t now = WallClockNs();
  int64_t after = static_cast<int64_t>(config_.agent_silent_after_ms) * 1'000'000;
  for (const auto& [host, heard] : last_heard_ns_) {
    if (now - std::max(heard, silence_counts_from_ns_) < after || silent_.count(host)) continue;
    silent_.insert(host);
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor(host);
    a.initAgentSilent().setLastHeardNs(heard);
    recorder_.RecordLater(schema::CanonicalBytes(a.asReader()), host);
    logging::Default().Warn("agent silent",
                            {{"host", host},
                             {"silent_ms", (now - heard) / 1'000'000},
                             {"hint", "is latch-agent running on it, and can it reach us?"}});
  }
}

void AgentChannel::HandleZap() {
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
    auto enrolled = enrolment_.keys().find(z85);
    if (it != config_.agents.end() || enrolled != enrolment_.keys().end()) {
      code = "200";
      text = "OK";
      user = it != config_.agents.end() ? it->second : enrolled->second;
    } else if (enrolment_.AnyOpen(WallClockNs())) {
      // While a join token is open, an unknown key may connect to spend it
      // (and do nothing else: OnEnrolling). With none open, unknown keys
      // never get past the handshake.
      code = "200";
      text = "OK";
      user = std::string(kEnrollingPrefix) + z85;
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

void AgentChannel::HandleAgentMessage() {
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

void AgentChannel::OnEnvelope(const std::string& route, const std::string& host,
                              schema::Envelope::Reader env) {
  if (host.compare(0, kEnrollingPrefix.size(), kEnrollingPrefix) == 0) {
    return OnEnrolling(route, host.substr(kEnrollingPrefix.size()), env);
  }
  if (enrolled_hosts_.count(host) == 0) {
    // Admitted by a key that a configuration reload has since removed.
    counters_.refused_keys++;
    Refuse("unenrolled_key", host + " is no longer enrolled", route, "not enrolled");
    return;
  }
  bool first_contact = routes_.find(host) == routes_.end();
  routes_[host] = route;
  last_heard_ns_[host] = WallClockNs();
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
        // Operators watch these (issue 16: an agent's arrival was not logged).
        logging::Default().Info("agent connected",
                                {{"host", host},
                                 {"address", current_peer_},
                                 {"session", hello.getSession()},
                                 {"checkpoint_size", hello.getCheckpointSize()},
                                 {"grant_set_version", hello.getGrantSetVersion()}});
        connected_boot_[host] = boot;
        capnp::MallocMessageBuilder m;
        auto a = m.initRoot<schema::WorkflowAction>();
        a.setActor(host);
        auto c = a.initAgentConnected();
        c.setBootId(hello.getBootId());
        c.setCheckpointSize(hello.getCheckpointSize());
        c.setGrantSetVersion(hello.getGrantSetVersion());
        recorder_.RecordLater(schema::CanonicalBytes(a.asReader()), host);
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
      if (witnessed_) SendWitnessedTo(host, witnessed_());
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
      m.initRoot<schema::Envelope>().setHeartbeat(WallClockNs());
      Send(route, schema::EncodeFrame(m));
      return;
    }
    default:
      Refuse("unexpected_message", host + " sent a collector-only message", route,
             "unexpected message kind");
      return;
  }
}

void AgentChannel::OnEnrolling(const std::string& route, const std::string& curve_key,
                               schema::Envelope::Reader env) {
  if (env.which() != schema::Envelope::ENROL) {
    // An agent started before its enrolment, or a stranger: the agent's log
    // says "not enrolled" (issue 16).
    counters_.refused_keys++;
    Refuse("unenrolled_key", "CURVE key " + curve_key + " sent a message before enrolling", route,
           "not enrolled");
    return;
  }
  auto enrol = env.getEnrol();
  EnrolAsk ask;
  ask.route = route;
  ask.host = enrol.getHostId();
  ask.curve_key = curve_key;
  ask.address = current_peer_;
  std::string why;
  if (!schema::IsHostId(ask.host)) {
    why = std::string("host id is not valid (") + schema::kHostIdRule + ")";
    ask.host = "(invalid)";
  } else if (enrol.getSecret().size() != 32) {
    why = "join token secret is not 32 bytes";
  } else {
    std::array<uint8_t, 32> secret{};
    std::memcpy(secret.data(), enrol.getSecret().begin(), 32);
    ask.secret_hash = schema::JoinSecretHash(secret);
    why = enrolment_.Refusal(ask.secret_hash, ask.host, WallClockNs());
    if (why.empty() && enrolling_.count(ask.secret_hash)) why = "join token already used";
    if (why.empty() && config_.agents.count(curve_key)) {
      why = "this key is enrolled by the configuration already";
    }
  }
  if (!why.empty()) return RefuseEnrolment(ask, why);
  enrolling_.insert(ask.secret_hash);
  if (on_enrol_) on_enrol_(ask);
}

void AgentChannel::RefuseEnrolment(const EnrolAsk& ask, const std::string& why) {
  enrolling_.erase(ask.secret_hash);
  logging::Default().Warn("enrolment refused",
                          {{"host", ask.host},
                           {"reason", why},
                           {"address", ask.address},
                           {"hint", "make a new token: latch-collector token create"}});
  // On record, folded (a flood of guesses cannot flood the ledger). Only a
  // prefix of the secret's hash: enough to tell tokens apart.
  Refuse("join_token_refused",
         ask.host + ": " + why + " (key " + ask.curve_key + ", token sha256 " +
             ask.secret_hash.substr(0, 16) + ")",
         ask.route, "enrolment refused: " + why, ask.address);
}

void AgentChannel::SendEnrolled(const EnrolAsk& ask) {
  enrolling_.erase(ask.secret_hash);
  EnrolmentChanged();
  logging::Default().Info(
      "agent enrolled",
      {{"host", ask.host}, {"curve_public_key", ask.curve_key}, {"address", ask.address}});
  capnp::MallocMessageBuilder m;
  auto e = m.initRoot<schema::Envelope>().initEnrolled();
  e.setHostId(ask.host);
  e.setCurvePublicKey(ask.curve_key);
  const auto& retired = grants_.retired_keys();
  auto keys = e.initGrantKeys(static_cast<unsigned>(1 + retired.size()));
  keys.set(0, grants_.key().verifier().ToString());
  for (unsigned i = 0; i < retired.size(); ++i) keys.set(i + 1, retired[i].ToString());
  e.setLedgerKey(ledger_.verifier().ToString());
  Send(ask.route, schema::EncodeFrame(m));
}

void AgentChannel::Send(const std::string& route, const std::string& payload) {
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

void AgentChannel::PushGrantSet(const std::string& host) {
  auto route = routes_.find(host);
  if (route == routes_.end()) return;
  if (grants_.acting()) {
    push_deferred_.insert(host);  // its set may hold a grant not yet on record
    return;
  }
  std::string signed_set;
  Status s = grants_.SignedSet(host, WallClockNs(), &signed_set);
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

void AgentChannel::OnApplied(const std::string& host, schema::Applied::Reader applied) {
  counters_.applied_reports++;
  grants_.NoteApplied(host, applied.getVersion(), applied.getGrantIds(), applied.getAppliedAtNs());
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(host);
  auto g = a.initGrantSetApplied();
  g.setVersion(applied.getVersion());
  g.setAppliedAtNs(applied.getAppliedAtNs());
  g.setGrantIds(applied.getGrantIds());
  g.setRejected(applied.getRejected());
  g.setRejectedSet(applied.getRejectedSet());
  g.setRemovedGrantIds(applied.getRemovedGrantIds());
  // The same set applied again (a new session, a restart adopting the
  // pinned grants) changes nothing on the host: one record per change. The
  // time it took effect is the first report's.
  capnp::MallocMessageBuilder same;
  auto key = same.initRoot<schema::GrantSetApplied>();
  key.setVersion(applied.getVersion());
  key.setGrantIds(applied.getGrantIds());
  key.setRejected(applied.getRejected());
  key.setRejectedSet(applied.getRejectedSet());
  key.setRemovedGrantIds(applied.getRemovedGrantIds());
  std::string canonical = schema::CanonicalBytes(key.asReader());
  auto last = applied_set_.find(host);
  if (last != applied_set_.end() && last->second == canonical) return;
  applied_set_[host] = canonical;
  recorder_.RecordLater(schema::CanonicalBytes(a.asReader()), host);
}

void AgentChannel::OnAlarm(const std::string& host, schema::Alarm::Reader alarm) {
  counters_.alarms++;
  if (alarm.getKind() == "resource_mismatch") {
    logging::Default().Alert(
        "ALARM from an agent: its own resource list differs from the policy's",
        {{"host", host},
         {"kind", "resource_mismatch"},
         {"detail", alarm.getDetail().cStr()},
         {"hint",
          "the agent enforces the policy's resources; remove [[resource]] from its "
          "configuration, or correct the policy"}});
  } else if (alarm.getKind() == "stalled") {
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
  recorder_.RecordLater(schema::CanonicalBytes(a.asReader()), host);
}
}  // namespace latch::collector
