// The API's credentials through the API (issue 16): admins add a token or a
// client certificate for a policy identity, by its SHA-256 (the secret
// itself never reaches the collector), and remove one; each is an action,
// on record (apiCredentialAdded, apiCredentialRemoved) before it is
// accepted or refused. Credentials the configuration lists change by
// editing it and SIGHUP, not here.
#include <capnp/message.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "collector/api/json_body.h"
#include "collector/ingest/api_answer.h"
#include "collector/ingest/collector_server.h"
#include "lib/logging/logger.h"
#include "schemas/canonical.h"
#include "schemas/workflow.capnp.h"

namespace latch::collector {
namespace {

// From a body: which kind of credential it names, and its hash; a response
// if the body does not name exactly one well-formed hash.
std::optional<api::ApiResponse> ReadCredential(const nlohmann::json& body, std::string* kind,
                                               std::string* sha256) {
  const bool token = body.contains("token_sha256"), cert = body.contains("cert_sha256");
  if (token == cert) return Error(400, "give one of token_sha256, cert_sha256");
  const nlohmann::json& hash = body[token ? "token_sha256" : "cert_sha256"];
  if (!hash.is_string() || !CredentialBook::IsSha256Hex(hash.get<std::string>())) {
    return Error(400,
                 "a credential's sha256 is 64 lowercase hex digits (latch-collector "
                 "token-hash, cert-hash)");
  }
  *kind = token ? "token" : "cert";
  *sha256 = hash.get<std::string>();
  return std::nullopt;
}

}  // namespace

std::map<std::string, std::string> CollectorServer::AcceptedTokens() const {
  std::map<std::string, std::string> all = credentials_.tokens();
  for (const auto& [hash, who] : config_.api_tokens) all[hash] = who;
  return all;
}

std::map<std::string, std::string> CollectorServer::AcceptedCerts() const {
  std::map<std::string, std::string> all = credentials_.certs();
  for (const auto& [hash, who] : config_.api_client_certs) all[hash] = who;
  return all;
}

std::optional<api::ApiResponse> CollectorServer::ApiCredentials(const api::ApiRequest& req,
                                                                const api::RouteArgs&,
                                                                const api::ApiServer::Respond&) {
  const workflow::Policy* policy = workflow_->policy();
  if (policy == nullptr) return Error(409, "no policy is loaded");
  if (!policy->IsAdmin(req.identity)) return Error(403, "only admins may list credentials");
  nlohmann::json list = nlohmann::json::array();
  auto add = [&](const std::map<std::string, std::string>& from, const char* kind,
                 const char* source) {
    for (const auto& [hash, who] : from) {
      list.push_back({{"identity", who}, {"kind", kind}, {"sha256", hash}, {"source", source}});
    }
  };
  add(config_.api_tokens, "token", "config");
  add(config_.api_client_certs, "cert", "config");
  add(credentials_.tokens(), "token", "api");
  add(credentials_.certs(), "cert", "api");
  return Json(200, {{"credentials", list}});
}

std::optional<api::ApiResponse> CollectorServer::ApiAddCredential(
    const api::ApiRequest& req, const api::RouteArgs&, const api::ApiServer::Respond& respond) {
  const workflow::Policy* policy = workflow_->policy();
  if (policy == nullptr) return Error(409, "no policy is loaded");
  if (!policy->IsAdmin(req.identity)) return Error(403, "only admins may add credentials");
  nlohmann::json body;
  std::string why;
  if (!api::ParseJsonBody(req.body, {"identity", "token_sha256", "cert_sha256"}, &body, &why)) {
    return Error(400, why);
  }
  std::string kind, sha256;
  if (auto refused = ReadCredential(body, &kind, &sha256)) return refused;
  if (!body.contains("identity") || !body["identity"].is_string()) {
    return Error(400, "identity must be a string");
  }
  const std::string identity = body["identity"].get<std::string>();
  if (policy->FindIdentity(identity) == nullptr) {
    return Error(400, "'" + identity + "' is not an identity of the policy");
  }
  const auto& configured = kind == "token" ? config_.api_tokens : config_.api_client_certs;
  if (configured.count(sha256) != 0) {
    return Error(409, "the configuration lists this credential already");
  }
  const auto& added = kind == "token" ? credentials_.tokens() : credentials_.certs();
  if (auto it = added.find(sha256); it != added.end() && it->second != identity) {
    return Error(409, "this credential is " + it->second + "'s; remove it first");
  }
  auto m = std::make_shared<capnp::MallocMessageBuilder>();
  auto a = m->initRoot<schema::WorkflowAction>();
  a.setActor(req.identity);
  auto c = a.initApiCredentialAdded();
  c.setIdentity(identity);
  c.setKind(kind);
  c.setSha256(sha256);
  Act(
      [this, m] {
        return recorder_->Record(
            schema::CanonicalBytes(m->getRoot<schema::WorkflowAction>().asReader()), "", NowNs());
      },
      [this, m, respond, identity, kind](const Status& s) {
        if (!s.ok()) return respond(Error(503, s.message()));
        credentials_.Apply(m->getRoot<schema::WorkflowAction>().asReader());
        if (api_) api_->SetCredentials(AcceptedTokens(), AcceptedCerts());
        logging::Default().Info("API credential added", {{"identity", identity}, {"kind", kind}});
        respond(Json(200, {{"identity", identity}, {"kind", kind}}));
      });
  return std::nullopt;  // answered once on record
}

std::optional<api::ApiResponse> CollectorServer::ApiRemoveCredential(
    const api::ApiRequest& req, const api::RouteArgs&, const api::ApiServer::Respond& respond) {
  const workflow::Policy* policy = workflow_->policy();
  if (policy == nullptr) return Error(409, "no policy is loaded");
  if (!policy->IsAdmin(req.identity)) return Error(403, "only admins may remove credentials");
  nlohmann::json body;
  std::string why;
  if (!api::ParseJsonBody(req.body, {"token_sha256", "cert_sha256"}, &body, &why)) {
    return Error(400, why);
  }
  std::string kind, sha256;
  if (auto refused = ReadCredential(body, &kind, &sha256)) return refused;
  const auto& configured = kind == "token" ? config_.api_tokens : config_.api_client_certs;
  if (configured.count(sha256) != 0) {
    return Error(409, "the configuration lists this credential: remove it there and send SIGHUP");
  }
  const auto& added = kind == "token" ? credentials_.tokens() : credentials_.certs();
  auto it = added.find(sha256);
  if (it == added.end()) return Error(404, "no such credential was added through the API");
  auto m = std::make_shared<capnp::MallocMessageBuilder>();
  auto a = m->initRoot<schema::WorkflowAction>();
  a.setActor(req.identity);
  auto c = a.initApiCredentialRemoved();
  c.setIdentity(it->second);
  c.setKind(kind);
  c.setSha256(sha256);
  Act(
      [this, m] {
        return recorder_->Record(
            schema::CanonicalBytes(m->getRoot<schema::WorkflowAction>().asReader()), "", NowNs());
      },
      [this, m, respond, kind](const Status& s) {
        if (!s.ok()) return respond(Error(503, s.message()));
        credentials_.Apply(m->getRoot<schema::WorkflowAction>().asReader());
        if (api_) api_->SetCredentials(AcceptedTokens(), AcceptedCerts());
        respond(Json(200, {{"removed", kind}}));
      });
  return std::nullopt;
}

}  // namespace latch::collector
