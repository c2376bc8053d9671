#include "collector/workflow/workflow_service.h"

#include <capnp/message.h>

#include <algorithm>
#include <cstdio>

#include "lib/logging/logger.h"
#include "schemas/canonical.h"
#include "schemas/host_policy.h"

namespace latch::workflow {
namespace {

void WritePrincipal(const Identity& id, schema::Principal::Builder out) {
  switch (id.principal) {
    case Identity::Principal::kUser:
      out.setUserName(id.host_user);
      break;
    case Identity::Principal::kUid:
      out.setUid(id.uid);
      break;
    case Identity::Principal::kCgroup:
      out.setCgroupPath(id.host_user);
      break;
    case Identity::Principal::kNone:
      break;
  }
}

// What each host the policy names enforces (issue 16: the policy is the one
// source of resources): its resources, and every identity that holds a
// principal, so that its agent can name who a denial was for.
void WriteHostPolicies(const Policy& policy, capnp::List<schema::HostPolicyEntry>::Builder out) {
  std::vector<const Identity*> holders;
  for (const auto& [name, id] : policy.identities()) {
    if (id.principal != Identity::Principal::kNone) holders.push_back(&id);
  }
  unsigned h = 0;
  for (const std::string& host : policy.HostIds()) {
    out[h].setHostId(host);
    auto hp = out[h].initPolicy();
    std::vector<const resource::Resource*> mine;
    for (const auto& [name, r] : policy.resources()) {
      if (std::find(r.hosts.begin(), r.hosts.end(), host) != r.hosts.end()) {
        mine.push_back(&r.resource);
      }
    }
    auto resources = hp.initResources(static_cast<unsigned>(mine.size()));
    for (unsigned i = 0; i < mine.size(); ++i) resource::ResourceToSchema(*mine[i], resources[i]);
    auto identities = hp.initIdentities(static_cast<unsigned>(holders.size()));
    for (unsigned i = 0; i < holders.size(); ++i) {
      identities[i].setIdentity(holders[i]->name);
      WritePrincipal(*holders[i], identities[i].initPrincipal());
    }
    ++h;
  }
}

RequestState StateFromName(const std::string& s) {
  if (s == "approved") return RequestState::kApproved;
  if (s == "denied") return RequestState::kDenied;
  if (s == "cancelled") return RequestState::kCancelled;
  return RequestState::kExpired;
}

}  // namespace

Status WorkflowService::LoadPolicy(const std::string& path, int64_t now_ns, std::string* record) {
  std::unique_ptr<Policy> next;
  LATCH_RETURN_IF_ERROR(Policy::Load(path, &next));
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor("collector");
  auto p = a.initPolicyLoaded();
  p.setSha256(next->hash());
  p.setSource(path);
  // Names for the ids decisions carry, so that a denial before any request
  // is shown by its resource's name (issue 16: "#1").
  auto names = p.initResources(static_cast<unsigned>(next->resources().size()));
  unsigned i = 0;
  for (const auto& [name, r] : next->resources()) {
    names[i].setId(r.resource.id);
    names[i].setName(name);
    ++i;
  }
  WriteHostPolicies(*next, p.initHosts(static_cast<unsigned>(next->HostIds().size())));
  std::string bytes = schema::CanonicalBytes(a.asReader());
  LATCH_RETURN_IF_ERROR(sink_.Record(bytes, "", now_ns));
  policy_ = std::move(next);
  if (record != nullptr) *record = std::move(bytes);
  return Status::Ok();
}

void WorkflowService::Replay(schema::WorkflowAction::Reader a, int64_t at_ns) {
  switch (a.which()) {
    case schema::WorkflowAction::REQUEST_CREATED: {
      auto c = a.getRequestCreated();
      AccessRequest r;
      r.id = c.getRequestId();
      r.requester = c.getRequester();
      r.resource = c.getResource();
      r.duration_ns = c.getDurationNs();
      r.reason = c.getReason();
      r.created_ns = at_ns;
      r.pending_until_ns = c.getPendingUntilNs();
      book_.RestoreCreated(r);
      break;
    }
    case schema::WorkflowAction::REQUEST_REVIEWED: {
      auto v = a.getRequestReviewed();
      book_.RestoreReview(v.getRequestId(),
                          {v.getReviewer(), v.getApprove(), v.getComment(), at_ns});
      break;
    }
    case schema::WorkflowAction::REQUEST_DECIDED: {
      auto d = a.getRequestDecided();
      book_.RestoreDecided(d.getRequestId(), StateFromName(d.getState()), d.getBreakGlass(), at_ns);
      break;
    }
    default:
      break;
  }
}

Status WorkflowService::Request(const std::string& identity, const std::string& resource,
                                int64_t duration_ns, const std::string& reason, int64_t now_ns,
                                AccessRequest* out) {
  if (!policy_) return Status::FailedPrecondition("no policy is loaded");
  RequestBook trial = book_;  // decided first, recorded, then kept
  AccessRequest r;
  LATCH_RETURN_IF_ERROR(
      trial.Create(*policy_, identity, resource, duration_ns, reason, now_ns, &r));
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(identity);
  auto c = a.initRequestCreated();
  c.setRequestId(r.id);
  c.setRequester(identity);
  c.setResource(resource);
  c.setDurationNs(duration_ns);
  c.setReason(reason);
  c.setPendingUntilNs(r.pending_until_ns);
  LATCH_RETURN_IF_ERROR(sink_.Record(schema::CanonicalBytes(a.asReader()), "", now_ns));
  book_ = std::move(trial);
  *out = r;
  return Status::Ok();
}

Status WorkflowService::RecordDecision(const AccessRequest& r, uint64_t grant_id,
                                       const std::string& actor, int64_t at_ns) {
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(actor);
  auto d = a.initRequestDecided();
  d.setRequestId(r.id);
  d.setState(RequestStateName(r.state));
  d.setGrantId(grant_id);
  d.setBreakGlass(r.break_glass);
  return sink_.Record(schema::CanonicalBytes(a.asReader()), "", at_ns);
}

Status WorkflowService::Review(const std::string& identity, uint64_t id, bool approve,
                               const std::string& comment, int64_t now_ns, AccessRequest* out,
                               uint64_t* grant_id) {
  if (!policy_) return Status::FailedPrecondition("no policy is loaded");
  *grant_id = 0;
  RequestBook trial = book_;
  AccessRequest r;
  LATCH_RETURN_IF_ERROR(trial.Review(*policy_, id, identity, approve, comment, now_ns, &r));
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(identity);
  auto v = a.initRequestReviewed();
  v.setRequestId(id);
  v.setReviewer(identity);
  v.setApprove(approve);
  v.setComment(comment);
  LATCH_RETURN_IF_ERROR(sink_.Record(schema::CanonicalBytes(a.asReader()), "", now_ns));
  book_ = std::move(trial);
  if (r.state == RequestState::kApproved) {
    const PolicyResource* res = policy_->FindResource(r.resource);
    ApprovedGrant g;
    g.identity = policy_->FindIdentity(r.requester);
    if (res == nullptr || g.identity == nullptr) {
      return Status::FailedPrecondition("the policy no longer has '" + r.resource + "' or '" +
                                        r.requester + "'");
    }
    g.resource_id = res->resource.id;
    g.hosts = res->hosts;
    g.not_before_unix_ns = now_ns;
    g.not_after_unix_ns = now_ns + r.duration_ns;
    g.break_glass = r.break_glass;
    LATCH_RETURN_IF_ERROR(sink_.IssueGrant(g, identity, grant_id));
    LATCH_RETURN_IF_ERROR(RecordDecision(r, *grant_id, identity, now_ns));
  } else if (r.state == RequestState::kDenied) {
    LATCH_RETURN_IF_ERROR(RecordDecision(r, 0, identity, now_ns));
  }
  *out = r;
  return Status::Ok();
}

Status WorkflowService::Cancel(const std::string& identity, uint64_t id, int64_t now_ns,
                               AccessRequest* out) {
  RequestBook trial = book_;
  AccessRequest r;
  LATCH_RETURN_IF_ERROR(trial.Cancel(id, identity, now_ns, &r));
  LATCH_RETURN_IF_ERROR(RecordDecision(r, 0, identity, now_ns));
  book_ = std::move(trial);
  *out = r;
  return Status::Ok();
}

Status WorkflowService::ExpireDue(int64_t now_ns) {
  RequestBook trial = book_;
  for (const AccessRequest& r : trial.ExpireDue(now_ns)) {
    LATCH_RETURN_IF_ERROR(
        RecordDecision(r, 0, "collector", now_ns)
            .WithContext("recording request " + std::to_string(r.id) + "'s expiry"));
    book_.RestoreDecided(r.id, RequestState::kExpired, false, now_ns);
  }
  return Status::Ok();
}

}  // namespace latch::workflow
