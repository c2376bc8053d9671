// The agents' API routes (issue 16): enrolled agents and open join tokens
// (GET /v1/agents), a join token made (POST /v1/agents/tokens), a host
// enrolled by token removed (POST /v1/agents/remove). Making tokens and
// removing agents is for the policy's admin_groups; auditors may look.
// Each change is an action, answered once it is on record.
#include <nlohmann/json.hpp>

#include "collector/api/json_body.h"
#include "collector/ingest/api_answer.h"
#include "collector/ingest/collector_server.h"
#include "collector/workflow/duration.h"

namespace latch::collector {
namespace {

// An enrolment reply ({ok, status, error} or the answer) as an API response.
api::ApiResponse Answer(const nlohmann::json& reply) {
  if (reply.value("ok", false)) {
    nlohmann::json body = reply;
    body.erase("ok");
    return Json(200, body);
  }
  return Error(reply.value("status", 500), reply.value("error", std::string("failed")));
}

}  // namespace

std::optional<api::ApiResponse> CollectorServer::ApiAgents(const api::ApiRequest& req,
                                                           const api::RouteArgs&,
                                                           const api::ApiServer::Respond&) {
  const workflow::Policy* policy = workflow_->policy();
  if (policy == nullptr) return Error(409, "no policy is loaded");
  if (!policy->IsAdmin(req.identity) && !policy->IsAuditor(req.identity)) {
    return Error(403, "only admins and auditors may list agents");
  }
  return Answer(DescribeAgents());
}

std::optional<api::ApiResponse> CollectorServer::ApiNewJoinToken(
    const api::ApiRequest& req, const api::RouteArgs&, const api::ApiServer::Respond& respond) {
  const workflow::Policy* policy = workflow_->policy();
  if (policy == nullptr) return Error(409, "no policy is loaded");
  if (!policy->IsAdmin(req.identity)) {
    return Error(403, "only members of the policy's admin_groups may make join tokens");
  }
  nlohmann::json body;
  std::string why;
  if (!api::ParseJsonBody(req.body, {"host", "ttl"}, &body, &why)) return Error(400, why);
  if (!body.contains("host") || !body["host"].is_string()) {
    return Error(400, "host must be a string");
  }
  if (body.contains("ttl") && !body["ttl"].is_string()) {
    return Error(400, "ttl must be a string like \"1h\"");
  }
  int64_t ttl_ns = 0;
  Status parsed = workflow::ParseDuration(body.value("ttl", std::string("1h")), &ttl_ns);
  if (!parsed.ok()) return Error(400, parsed.message());
  CreateJoinToken(body["host"].get<std::string>(), ttl_ns, req.identity,
                  [respond](const nlohmann::json& reply) { respond(Answer(reply)); });
  return std::nullopt;  // answered once on record
}

std::optional<api::ApiResponse> CollectorServer::ApiRemoveAgent(
    const api::ApiRequest& req, const api::RouteArgs&, const api::ApiServer::Respond& respond) {
  const workflow::Policy* policy = workflow_->policy();
  if (policy == nullptr) return Error(409, "no policy is loaded");
  if (!policy->IsAdmin(req.identity)) {
    return Error(403, "only members of the policy's admin_groups may remove agents");
  }
  nlohmann::json body;
  std::string why;
  if (!api::ParseJsonBody(req.body, {"host"}, &body, &why)) return Error(400, why);
  if (!body.contains("host") || !body["host"].is_string()) {
    return Error(400, "host must be a string");
  }
  RemoveAgent(body["host"].get<std::string>(), req.identity,
              [respond](const nlohmann::json& reply) { respond(Answer(reply)); });
  return std::nullopt;
}

}  // namespace latch::collector
