// CollectorServer's enrolment (issue 16): join tokens made, keys enrolled by
// spending them, enrolled keys removed. Each is an action: on record before
// it takes effect (promise 7), so a token that works, and a key admitted,
// are always in the ledger.

#include <capnp/message.h>

#include <memory>

#include "collector/ingest/collector_server.h"
#include "lib/logging/logger.h"
#include "schemas/canonical.h"
#include "schemas/host_id.h"
#include "schemas/join_token.h"
#include "schemas/workflow.capnp.h"

namespace latch::collector {

namespace {
// A record kept with its builder: recorded by the action, then applied to
// the enrolment book once durable.
struct KeptAction {
  capnp::MallocMessageBuilder message;
  schema::WorkflowAction::Builder action = message.initRoot<schema::WorkflowAction>();
  std::string Bytes() { return schema::CanonicalBytes(action.asReader()); }
};
}  // namespace

void CollectorServer::CreateJoinToken(const std::string& host, int64_t ttl_ns,
                                      const std::string& actor,
                                      std::function<void(nlohmann::json)> reply) {
  if (!schema::IsHostId(host)) {
    return reply({{"ok", false},
                  {"status", 400},
                  {"error", "'" + host + "' is not a host id (" + schema::kHostIdRule + ")"}});
  }
  constexpr int64_t kMinute = 60'000'000'000, kMaxTtl = 30 * 24 * 60 * kMinute;
  if (ttl_ns < kMinute || ttl_ns > kMaxTtl) {
    return reply(
        {{"ok", false}, {"status", 400}, {"error", "a token lives from 1m to 30d (--ttl)"}});
  }
  auto token = std::make_shared<schema::JoinToken>();
  Status made = schema::MakeJoinToken(curve_.public_z85, token.get());
  if (!made.ok()) return reply({{"ok", false}, {"status", 500}, {"error", made.ToString()}});
  auto kept = std::make_shared<KeptAction>();
  kept->action.setActor(actor);
  auto c = kept->action.initJoinTokenCreated();
  c.setHostId(host);
  c.setSecretHash(schema::JoinSecretHash(token->secret));
  c.setExpiresAtNs(NowNs() + ttl_ns);
  Act([this, kept] { return recorder_->Record(kept->Bytes(), "", NowNs()); },
      [this, kept, token, host, reply](const Status& s) {
        if (!s.ok()) return reply({{"ok", false}, {"status", 503}, {"error", s.ToString()}});
        enrolment_.Apply(kept->action.asReader());
        const int64_t expires = kept->action.asReader().getJoinTokenCreated().getExpiresAtNs();
        logging::Default().Info("join token created", {{"host", host}, {"expires_at_ns", expires}});
        reply({{"ok", true},
               {"host", host},
               {"token", schema::EncodeJoinToken(*token)},
               {"ca_pin", schema::CurveKeyPin(curve_.public_z85)},
               {"expires_at_ns", expires}});
      });
}

void CollectorServer::Enrol(const AgentChannel::EnrolAsk& ask) {
  auto kept = std::make_shared<KeptAction>();
  kept->action.setActor(ask.host);
  auto e = kept->action.initAgentEnrolled();
  e.setHostId(ask.host);
  e.setCurvePublicKey(ask.curve_key);
  e.setSecretHash(ask.secret_hash);
  e.setAddress(ask.address);
  auto refused = std::make_shared<std::string>();
  Act(
      [this, kept, ask, refused] {
        // The book as of now, past any action queued before this one.
        *refused = enrolment_.Refusal(ask.secret_hash, ask.host, NowNs());
        if (!refused->empty()) return Status::FailedPrecondition(*refused);
        return recorder_->Record(kept->Bytes(), ask.host, NowNs());
      },
      [this, kept, ask, refused](const Status& s) {
        if (!refused->empty()) return channel_->RefuseEnrolment(ask, *refused);
        if (!s.ok()) {
          return channel_->RefuseEnrolment(
              ask, "not recorded (" + s.ToString() + "); the token is not spent, try again");
        }
        enrolment_.Apply(kept->action.asReader());
        channel_->SendEnrolled(ask);
      });
}

void CollectorServer::RemoveAgent(const std::string& host, const std::string& actor,
                                  std::function<void(nlohmann::json)> reply) {
  std::vector<std::string> keys;
  for (const auto& [key, h] : enrolment_.keys()) {
    if (h == host) keys.push_back(key);
  }
  if (keys.empty()) {
    for (const auto& [key, h] : config_.agents) {
      if (h == host) {
        return reply({{"ok", false},
                      {"status", 409},
                      {"error", "'" + host +
                                    "' is enrolled by the configuration file: remove its "
                                    "[[agent]] entry and send SIGHUP"}});
      }
    }
    return reply(
        {{"ok", false}, {"status", 404}, {"error", "no agent is enrolled as '" + host + "'"}});
  }
  auto kept = std::make_shared<std::vector<std::unique_ptr<KeptAction>>>();
  for (const std::string& key : keys) {
    auto k = std::make_unique<KeptAction>();
    k->action.setActor(actor);
    auto r = k->action.initAgentRemoved();
    r.setHostId(host);
    r.setCurvePublicKey(key);
    kept->push_back(std::move(k));
  }
  Act(
      [this, kept] {
        for (auto& k : *kept) LATCH_RETURN_IF_ERROR(recorder_->Record(k->Bytes(), "", NowNs()));
        return Status::Ok();
      },
      [this, kept, host, reply](const Status& s) {
        if (!s.ok()) return reply({{"ok", false}, {"status", 503}, {"error", s.ToString()}});
        for (auto& k : *kept) enrolment_.Apply(k->action.asReader());
        channel_->EnrolmentChanged();
        logging::Default().Info("agent removed", {{"host", host}, {"keys", kept->size()}});
        reply({{"ok", true}, {"host", host}, {"keys_removed", kept->size()}});
      });
}

nlohmann::json CollectorServer::DescribeAgents() const {
  nlohmann::json agents = nlohmann::json::array(), tokens = nlohmann::json::array();
  std::vector<std::string> connected = channel_->connected();
  auto is_connected = [&](const std::string& host) {
    return std::find(connected.begin(), connected.end(), host) != connected.end();
  };
  for (const auto& [key, host] : config_.agents) {
    agents.push_back({{"host", host},
                      {"curve_public_key", key},
                      {"source", "config"},
                      {"connected", is_connected(host)}});
  }
  for (const auto& [key, host] : enrolment_.keys()) {
    agents.push_back({{"host", host},
                      {"curve_public_key", key},
                      {"source", "enrolment"},
                      {"connected", is_connected(host)}});
  }
  const int64_t now = NowNs();
  for (const auto& [hash, t] : enrolment_.tokens()) {
    if (t.spent || now >= t.expires_at_ns) continue;  // only those still open
    tokens.push_back(
        {{"host", t.host}, {"expires_at_ns", t.expires_at_ns}, {"sha256", hash.substr(0, 16)}});
  }
  return {{"ok", true}, {"agents", agents}, {"open_tokens", tokens}};
}

}  // namespace latch::collector
