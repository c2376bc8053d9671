// The workflow's API routes: requests (list, create, one), reviews
// (approve, deny, cancel), grants (list, revoke). They run on the loop,
// which owns the request and grant books; a change is an action (Act) and
// is answered once it is on record. The policy decides who may see, review
// and revoke what.
#include <memory>
#include <nlohmann/json.hpp>

#include "collector/api/json_body.h"
#include "collector/ingest/api_answer.h"
#include "collector/ingest/collector_server.h"
#include "collector/workflow/duration.h"
#include "collector/workflow/free_text.h"

namespace latch::collector {
namespace {

int StatusFor(const Status& s) {
  switch (s.code()) {
    case Status::Code::kNotFound:
      return 404;
    case Status::Code::kInvalidArgument:
      return 400;
    case Status::Code::kFailedPrecondition:
      return 409;
    default:
      return 500;
  }
}

// A refused workflow action: the rules' refusals are 403s.
api::ApiResponse WorkflowError(const Status& s) {
  return Error(s.code() == Status::Code::kFailedPrecondition ? 403 : StatusFor(s), s.message());
}

// A request as the API shows it.
nlohmann::json RequestJson(const workflow::AccessRequest& q) {
  nlohmann::json reviews = nlohmann::json::array();
  for (const auto& v : q.reviews) {
    reviews.push_back({{"reviewer", v.reviewer}, {"approve", v.approve}, {"comment", v.comment}});
  }
  return nlohmann::json{{"id", q.id},
                        {"requester", q.requester},
                        {"resource", q.resource},
                        {"duration", workflow::FormatDuration(q.duration_ns)},
                        {"reason", q.reason},
                        {"state", workflow::RequestStateName(q.state)},
                        {"break_glass", q.break_glass},
                        {"created_at_ns", q.created_ns},
                        {"reviews", reviews}};
}

// The hosts the policy enforces a request's resource on, by name.
nlohmann::json RequestHosts(const workflow::Policy& policy, const workflow::AccessRequest& q) {
  const workflow::PolicyResource* r = policy.FindResource(q.resource);
  return r == nullptr ? nlohmann::json::array() : nlohmann::json(r->hosts);
}

// Whether `who` is among a grant's principals (GrantBook::Describe's form):
// by user name, uid or cgroup, as the policy names their principal.
bool GrantHeldBy(const nlohmann::json& grant, const workflow::Identity& who) {
  if (!grant.is_object() || !grant.contains("principals")) return false;
  for (const auto& p : grant["principals"]) {
    using P = workflow::Identity::Principal;
    if (who.principal == P::kUid && p.contains("uid") && p["uid"] == who.uid) return true;
    if (who.principal == P::kUser && p.contains("user") && p["user"] == who.host_user) return true;
    if (who.principal == P::kCgroup && p.contains("cgroup") && p["cgroup"] == who.host_user) {
      return true;
    }
  }
  return false;
}

// A grant's principals and resources as the policy names them (issue 16:
// `latchctl grants` showed [{"uid":4242}] and [1]): the identities holding
// each principal on the hosts ("uid 4242" if none does), and each
// resource's name ("#7" if the policy has none by that id now).
nlohmann::json GrantNames(const workflow::Policy& policy, const nlohmann::json& grant) {
  nlohmann::json principals = nlohmann::json::array();
  for (const auto& p : grant["principals"]) {
    std::vector<std::string> holders;
    for (const auto& [name, who] : policy.identities()) {
      nlohmann::json one = {{"principals", nlohmann::json::array({p})}};
      if (GrantHeldBy(one, who)) holders.push_back(name);
    }
    if (holders.empty()) {
      holders.push_back(p.contains("uid")    ? "uid " + std::to_string(p["uid"].get<uint32_t>())
                        : p.contains("user") ? "user " + p["user"].get<std::string>()
                                             : "cgroup " + p.value("cgroup", std::string()));
    }
    for (auto& h : holders) principals.push_back(std::move(h));
  }
  nlohmann::json resources = nlohmann::json::array();
  for (const auto& id : grant["resources"]) {
    std::string name = "#" + std::to_string(id.get<uint32_t>());
    for (const auto& [n, r] : policy.resources()) {
      if (r.resource.id == id.get<uint32_t>()) name = n;
    }
    resources.push_back(name);
  }
  return {{"principals", principals}, {"resources", resources}};
}

}  // namespace

std::optional<api::ApiResponse> CollectorServer::ApiGrants(const api::ApiRequest& req,
                                                           const api::RouteArgs&,
                                                           const api::ApiServer::Respond&) {
  // The events query's rule: auditors and approvers see every grant,
  // anyone else the grants they hold.
  bool all = workflow_->policy() != nullptr && workflow_->policy()->MayReadAllEvents(req.identity);
  const workflow::Identity* who =
      workflow_->policy() == nullptr ? nullptr : workflow_->policy()->FindIdentity(req.identity);
  auto visible = [&](const nlohmann::json& grant) {
    return all || (who != nullptr && GrantHeldBy(grant, *who));
  };
  // ?past=1: the ended ones too, newest first, with how and when they ended.
  nlohmann::json answer =
      grants_->Describe(req.target.find("past=1") != std::string::npos, visible);
  if (const workflow::Policy* policy = workflow_->policy()) {
    for (const char* list : {"grants", "past"}) {
      if (!answer.contains(list)) continue;
      for (auto& g : answer[list]) g["names"] = GrantNames(*policy, g["grant"]);
    }
  }
  return Json(200, answer);
}

// Per host, the resources the policy gives it and since when its kernel
// holds them (issue 16): what auditors and approvers check enforcement by.
std::optional<api::ApiResponse> CollectorServer::ApiHosts(const api::ApiRequest& req,
                                                          const api::RouteArgs&,
                                                          const api::ApiServer::Respond&) {
  if (workflow_->policy() == nullptr || !workflow_->policy()->MayReadAllEvents(req.identity)) {
    return Error(403, "only auditors and approvers may see the hosts' resources");
  }
  return Json(200, {{"hosts", grants_->DescribeHosts()}});
}

std::optional<api::ApiResponse> CollectorServer::ApiRequests(const api::ApiRequest& req,
                                                             const api::RouteArgs&,
                                                             const api::ApiServer::Respond&) {
  if (workflow_->policy() == nullptr) return Error(409, "no policy is loaded");
  nlohmann::json list = nlohmann::json::array();
  for (const auto& [id, q] : workflow_->requests().all()) {
    bool mine = q.requester == req.identity;
    bool inbox = workflow_->requests().MayReview(*workflow_->policy(), q, req.identity);
    bool all = req.target.find("all=1") != std::string::npos &&
               workflow_->policy()->MayReadAllEvents(req.identity);
    if (mine || inbox || all) {
      auto j = RequestJson(q);
      j["may_review"] = inbox;
      j["still_needed"] = workflow_->requests().StillNeeded(*workflow_->policy(), q);
      j["hosts"] = RequestHosts(*workflow_->policy(), q);
      list.push_back(j);
    }
  }
  return Json(200, {{"requests", list}});
}

std::optional<api::ApiResponse> CollectorServer::ApiNewRequest(
    const api::ApiRequest& req, const api::RouteArgs&, const api::ApiServer::Respond& respond) {
  if (workflow_->policy() == nullptr) return Error(409, "no policy is loaded");
  nlohmann::json body;
  std::string why;
  if (!api::ParseJsonBody(req.body, {"resource", "duration", "reason"}, &body, &why)) {
    return Error(400, why);
  }
  if (!body.contains("resource") || !body["resource"].is_string() || !body.contains("duration") ||
      !body["duration"].is_string() || (body.contains("reason") && !body["reason"].is_string())) {
    return Error(400, "resource and duration are required strings");
  }
  int64_t duration = 0;
  Status s = workflow::ParseDuration(body["duration"].get<std::string>(), &duration);
  if (!s.ok()) return WorkflowError(s);
  auto r = std::make_shared<workflow::AccessRequest>();
  Act([this, identity = req.identity, resource = body["resource"].get<std::string>(), duration,
       reason = body.value("reason", ""),
       r] { return workflow_->Request(identity, resource, duration, reason, NowNs(), r.get()); },
      [respond, r](const Status& st) {
        respond(st.ok() ? Json(201, RequestJson(*r)) : WorkflowError(st));
      });
  return std::nullopt;  // answered once on record
}

// One request: its state, the reviews so far, who may still approve.
std::optional<api::ApiResponse> CollectorServer::ApiOneRequest(const api::ApiRequest& req,
                                                               const api::RouteArgs& args,
                                                               const api::ApiServer::Respond&) {
  if (workflow_->policy() == nullptr) return Error(409, "no policy is loaded");
  auto it = workflow_->requests().all().find(args.id);
  if (it == workflow_->requests().all().end()) return Error(404, "no such request");
  const workflow::AccessRequest& q = it->second;
  bool inbox = workflow_->requests().MayReview(*workflow_->policy(), q, req.identity);
  if (q.requester != req.identity && !inbox &&
      !workflow_->policy()->MayReadAllEvents(req.identity)) {
    return Error(403, "only the requester, its reviewers and auditors may see a request");
  }
  auto j = RequestJson(q);
  j["may_review"] = inbox;
  j["still_needed"] = workflow_->requests().StillNeeded(*workflow_->policy(), q);
  j["hosts"] = RequestHosts(*workflow_->policy(), q);
  return Json(200, j);
}

// POST /v1/requests/{id}/approve, /deny or /cancel.
std::optional<api::ApiResponse> CollectorServer::ApiReview(const api::ApiRequest& req,
                                                           const api::RouteArgs& args,
                                                           const api::ApiServer::Respond& respond) {
  if (workflow_->policy() == nullptr) return Error(409, "no policy is loaded");
  nlohmann::json body;
  std::string why;
  if (!api::ParseJsonBody(req.body, {"comment"}, &body, &why)) return Error(400, why);
  if (body.contains("comment") && !body["comment"].is_string()) {
    return Error(400, "comment must be a string");
  }
  std::string path = req.target.substr(0, req.target.find('?'));
  std::string verb = path.substr(path.rfind('/') + 1);
  auto r = std::make_shared<workflow::AccessRequest>();
  auto grant_id = std::make_shared<uint64_t>(0);
  // A review with its grant and decision: one batch, one sync.
  Act(
      [this, identity = req.identity, id = args.id, verb, comment = body.value("comment", ""), r,
       grant_id] {
        if (verb == "cancel") return workflow_->Cancel(identity, id, NowNs(), r.get());
        return workflow_->Review(identity, id, verb == "approve", comment, NowNs(), r.get(),
                                 grant_id.get());
      },
      [respond, r, grant_id](const Status& st) {
        if (!st.ok()) return respond(WorkflowError(st));
        auto j = RequestJson(*r);
        if (*grant_id != 0) j["grant_id"] = *grant_id;
        respond(Json(200, j));
      });
  return std::nullopt;  // answered once on record
}

std::optional<api::ApiResponse> CollectorServer::ApiRevoke(const api::ApiRequest& req,
                                                           const api::RouteArgs& args,
                                                           const api::ApiServer::Respond& respond) {
  if (workflow_->policy() == nullptr) return Error(409, "no policy is loaded");
  nlohmann::json body;
  std::string why;
  if (!api::ParseJsonBody(req.body, {"reason"}, &body, &why)) return Error(400, why);
  if (body.contains("reason") && !body["reason"].is_string()) {
    return Error(400, "reason must be a string");
  }
  if (Status checked = workflow::CheckFreeText(body.value("reason", ""), "the reason");
      !checked.ok()) {
    return Error(400, checked.message());
  }
  // Who may revoke: auditors, and the approvers of one of the grant's
  // resources; an approver of another resource may not (issue 14).
  const uint64_t id = args.id;
  nlohmann::json grant = grants_->DescribeLive(id);
  if (grant.is_null()) return Error(404, "no live grant " + std::to_string(id));
  if (!workflow_->policy()->MayRevoke(req.identity,
                                      grant["resources"].get<std::vector<uint32_t>>())) {
    return Error(403, "only auditors and the approvers of the grant's resources may revoke it");
  }
  Act([this, id, identity = req.identity,
       reason = body.value("reason", "")] { return grants_->Revoke(id, identity, reason); },
      [respond, id](const Status& st) {
        respond(st.ok() ? Json(200, {{"revoked", id}}) : Error(StatusFor(st), st.message()));
      });
  return std::nullopt;  // answered once on record
}

}  // namespace latch::collector
