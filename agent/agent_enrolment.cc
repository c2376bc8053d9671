#include "agent/agent_enrolment.h"

#include <capnp/message.h>
#include <toml++/toml.h>
#include <zmq.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <sstream>
#include <zmq.hpp>

#include "agent/agent_config.h"
#include "lib/storage/append_file.h"
#include "lib/tlog/signed_note.h"
#include "schemas/curve_key.h"
#include "schemas/host_id.h"
#include "schemas/join_token.h"
#include "schemas/wire.capnp.h"
#include "schemas/wire_frame.h"

namespace latch::agent {

namespace {

std::string NormalizePin(std::string pin) {
  std::transform(pin.begin(), pin.end(), pin.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (pin.rfind("sha256:", 0) != 0) pin = "sha256:" + pin;
  return pin;
}

// What the collector answered: Enrolled, or the text of a refusal.
struct Answer {
  bool enrolled = false;
  std::string refused;
  Enrolment enrolment;
  std::string key;  // the CURVE key the collector says it enrolled
};

Status ReadAnswer(const zmq::message_t& msg, Answer* out) {
  return schema::ReadFrame({static_cast<const char*>(msg.data()), msg.size()},
                           [&](schema::Envelope::Reader env) {
                             if (env.which() == schema::Envelope::REFUSED) {
                               out->refused = env.getRefused();
                             } else if (env.which() == schema::Envelope::ENROLLED) {
                               auto e = env.getEnrolled();
                               out->enrolled = true;
                               out->enrolment.host_id = e.getHostId();
                               out->key = e.getCurvePublicKey();
                               for (auto k : e.getGrantKeys())
                                 out->enrolment.grant_keys.push_back(k);
                               out->enrolment.ledger_key = e.getLedgerKey();
                             }
                           });
}

}  // namespace

std::string FormatEnrolment(const Enrolment& e) {
  toml::array endpoints, grant_keys;
  for (const auto& s : e.endpoints) endpoints.push_back(s);
  for (const auto& s : e.grant_keys) grant_keys.push_back(s);
  toml::table t{{"host_id", e.host_id},
                {"endpoints", endpoints},
                {"server_public_key", e.server_public_key},
                {"grant_key", grant_keys},
                {"ledger_key", e.ledger_key}};
  std::ostringstream out;
  out << "# Written by latch-agent enrol: what the collector gave this agent when it\n"
         "# enrolled. The [collector] settings in agent.toml, where set, win over these.\n"
      << t << "\n";
  return out.str();
}

Status EnrolAgent(const EnrolOptions& o, Enrolment* out) {
  if (!schema::IsHostId(o.host_id)) {
    return Status::InvalidArgument("host_id '" + o.host_id + "' is not a host id (" +
                                   schema::kHostIdRule + ")");
  }
  schema::JoinToken token;
  LATCH_RETURN_IF_ERROR(schema::DecodeJoinToken(o.token, &token));
  const std::string pin = schema::CurveKeyPin(token.collector_key);
  if (NormalizePin(o.ca_pin) != pin) {
    return Status::VerifyFailed(
        "the token names a collector key whose pin is " + pin +
        ", not the --ca-pin given: the token is not from your collector, or the pin is "
        "mistyped (latch-collector keys prints it); nothing was sent");
  }
  const std::string server_key = schema::CurveKeyZ85(token.collector_key);
  std::error_code ec;
  std::filesystem::create_directories(o.state_dir, ec);
  if (ec) return Status::IoError("creating " + o.state_dir + ": " + ec.message());
  schema::CurveKeyPair key;
  LATCH_RETURN_IF_ERROR(schema::LoadOrCreateCurveKey(o.state_dir + "/agent.key", &key)
                            .WithContext("nothing was sent; the token is still good"));
  // A token is spent once the collector answers: make sure the answer can
  // be kept (a full or read-only state directory) before asking. A file of
  // the answer's size is written and removed.
  const std::string probe_name = "enrolment.toml.probe";
  Status writable =
      storage::WriteFileAtomically(o.state_dir, probe_name, std::string(4096, '#'), 0600);
  std::filesystem::remove(o.state_dir + "/" + probe_name, ec);
  if (!writable.ok()) {
    return writable.WithContext("cannot keep the enrolment in " + o.state_dir +
                                "; nothing was sent, the token is still good");
  }

  zmq::context_t ctx;
  zmq::socket_t socket(ctx, zmq::socket_type::dealer);
  zmq::socket_t monitor(ctx, zmq::socket_type::pair);
  Answer answer;
  std::string handshake_failure;
  try {
    socket.set(zmq::sockopt::curve_serverkey, server_key);
    socket.set(zmq::sockopt::curve_publickey, key.public_z85);
    socket.set(zmq::sockopt::curve_secretkey, key.secret_z85);
    socket.set(zmq::sockopt::linger, 1000);
    // Handshake failures are otherwise silent: the collector refuses an
    // unknown key at the handshake when no join token is open.
    const std::string monitor_endpoint = "inproc://latch-enrol-monitor";
    if (zmq_socket_monitor(socket.handle(), monitor_endpoint.c_str(),
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                               ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) != 0) {
      return Status::IoError("zmq_socket_monitor failed");
    }
    monitor.connect(monitor_endpoint);
    socket.connect(o.endpoint);
    capnp::MallocMessageBuilder m;
    auto enrol = m.initRoot<schema::Envelope>().initEnrol();
    enrol.setHostId(o.host_id);
    enrol.setSecret(capnp::Data::Reader(token.secret.data(), token.secret.size()));
    std::string frame = schema::EncodeFrame(m);
    socket.send(zmq::buffer(frame), zmq::send_flags::none);
    const auto deadline = std::chrono::steady_clock::now() + o.timeout;
    while (!answer.enrolled && answer.refused.empty() && handshake_failure.empty()) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      zmq::pollitem_t items[] = {{socket.handle(), 0, ZMQ_POLLIN, 0},
                                 {monitor.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 2, left);
      if (items[1].revents & ZMQ_POLLIN) {
        zmq::message_t event, address;
        (void)monitor.recv(event);
        if (event.more()) (void)monitor.recv(address);
        uint16_t id = 0;
        if (event.size() >= 2) std::memcpy(&id, event.data(), 2);
        handshake_failure = id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
                                ? "the collector refused this agent's key at the handshake: no "
                                  "join token is open (it expired, or was used); make a new one"
                                : "the CURVE handshake with " + o.endpoint +
                                      " failed: is that the collector the token is from?";
      }
      if (items[0].revents & ZMQ_POLLIN) {
        zmq::message_t msg;
        (void)socket.recv(msg);
        Answer a;
        if (ReadAnswer(msg, &a).ok() && (a.enrolled || !a.refused.empty())) answer = a;
      }
    }
    zmq_socket_monitor(socket.handle(), nullptr, 0);
  } catch (const zmq::error_t& e) {
    return Status::IoError("talking to " + o.endpoint + ": " + e.what());
  }
  if (!handshake_failure.empty()) return Status::FailedPrecondition(handshake_failure);
  if (!answer.refused.empty()) {
    return Status::FailedPrecondition("the collector says: " + answer.refused);
  }
  if (!answer.enrolled) {
    return Status::IoError("no answer from " + o.endpoint + " within " +
                           std::to_string(o.timeout.count() / 1000) +
                           " s: is it the collector's agent endpoint, and reachable?");
  }
  Enrolment& e = answer.enrolment;
  if (e.host_id != o.host_id || answer.key != key.public_z85) {
    return Status::VerifyFailed("the collector's answer names another host or key");
  }
  tlog::NoteVerifier v;
  for (const std::string& k : e.grant_keys) {
    if (!tlog::NoteVerifier::Parse(k, &v).ok()) {
      return Status::Corruption("the collector sent a grant key that does not parse");
    }
  }
  if (e.grant_keys.empty() || !tlog::NoteVerifier::Parse(e.ledger_key, &v).ok()) {
    return Status::Corruption("the collector sent no usable grant or ledger key");
  }
  e.endpoints = {o.endpoint};
  e.server_public_key = server_key;
  const std::string text = FormatEnrolment(e);
  Status kept = storage::WriteFileAtomically(
      o.state_dir, std::filesystem::path(EnrolmentPath(o.state_dir)).filename().string(), text,
      0600);
  if (!kept.ok()) {
    // Enrolled, and the token spent: what the collector gave is not lost,
    // it goes to the operator.
    return Status::IoError("enrolled, but " + EnrolmentPath(o.state_dir) +
                           " could not be written (" + kept.message() +
                           "); put this in agent.toml's [collector] section instead:\n" + text);
  }
  *out = e;
  return Status::Ok();
}

}  // namespace latch::agent
