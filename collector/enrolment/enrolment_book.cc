#include "collector/enrolment/enrolment_book.h"

#include <stdexcept>

namespace latch::collector {

std::string EnrolmentBook::Refusal(const std::string& secret_hash, const std::string& host,
                                   int64_t now_ns) const {
  auto it = tokens_.find(secret_hash);
  if (it == tokens_.end()) return "unknown join token";
  const Token& t = it->second;
  if (t.spent) return "join token already used";
  if (now_ns >= t.expires_at_ns) return "join token expired";
  if (t.host != host) return "join token is for another host";
  return "";
}

bool EnrolmentBook::AnyOpen(int64_t now_ns) const {
  for (const auto& [hash, t] : tokens_) {
    if (!t.spent && now_ns < t.expires_at_ns) return true;
  }
  return false;
}

void EnrolmentBook::Apply(schema::WorkflowAction::Reader a) {
  using W = schema::WorkflowAction;
  switch (a.which()) {
    case W::JOIN_TOKEN_CREATED: {
      auto c = a.getJoinTokenCreated();
      tokens_[c.getSecretHash()] = Token{c.getHostId(), c.getExpiresAtNs(), false};
      return;
    }
    case W::AGENT_ENROLLED: {
      auto e = a.getAgentEnrolled();
      auto t = tokens_.find(e.getSecretHash());
      if (t != tokens_.end()) t->second.spent = true;
      const std::string host = e.getHostId();
      for (auto it = keys_.begin(); it != keys_.end();) {  // its earlier key goes
        it = it->second == host ? keys_.erase(it) : std::next(it);
      }
      keys_[e.getCurvePublicKey()] = host;
      return;
    }
    case W::AGENT_REMOVED:
      keys_.erase(a.getAgentRemoved().getCurvePublicKey());
      return;
    default:
      return;
  }
}

nlohmann::json EnrolmentBook::ToSnapshot() const {
  nlohmann::json tokens = nlohmann::json::object(), keys = nlohmann::json::object();
  for (const auto& [hash, t] : tokens_) {
    tokens[hash] = {{"host", t.host}, {"expires_at_ns", t.expires_at_ns}, {"spent", t.spent}};
  }
  for (const auto& [key, host] : keys_) keys[key] = host;
  return {{"tokens", tokens}, {"keys", keys}};
}

Status EnrolmentBook::FromSnapshot(const nlohmann::json& state) {
  tokens_.clear();
  keys_.clear();
  if (!state.contains("enrolment")) return Status::Ok();
  try {
    const nlohmann::json& e = state.at("enrolment");
    for (const auto& [hash, t] : e.at("tokens").items()) {
      tokens_[hash] = Token{t.at("host").get<std::string>(), t.at("expires_at_ns").get<int64_t>(),
                            t.at("spent").get<bool>()};
    }
    for (const auto& [key, host] : e.at("keys").items()) keys_[key] = host.get<std::string>();
  } catch (const std::exception& ex) {
    tokens_.clear();
    keys_.clear();
    return Status::Corruption(std::string("malformed enrolment state: ") + ex.what());
  }
  return Status::Ok();
}

}  // namespace latch::collector
