// CollectorServer's grants: signed, recorded, then pushed to the hosts they
// change; revoked and expired the same way.

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

#include "collector/ingest/collector_server.h"
#include "collector/ingest/grant_keys.h"
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

// Grants past their window: recorded as expired and dropped from the hosts'
// sets (the kernels have refused them since notAfter on their own).
void CollectorServer::RecordEndedGrants() {
  for (uint64_t id : grants_->EndedBy(NowNs())) {
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor("collector");
    a.initGrantExpired().setGrantId(id);
    const int64_t now = NowNs();
    Status s = RecordWorkflow(schema::CanonicalBytes(a.asReader()), "", now);
    if (!s.ok()) {
      logging::Default().Error("recording a grant's expiry; tried again shortly",
                               {{"grant", id}, {"error", s.ToString()}});
      return;  // tried again at the next turn
    }
    std::vector<std::string> changed;
    EndGrant(id, "expired", now, &changed);
    for (const std::string& h : changed) PushGrantSet(h);
  }
}

void CollectorServer::EndGrant(uint64_t id, const std::string& how, int64_t at_ns,
                               std::vector<std::string>* changed) {
  if (!grants_->Has(id)) return;
  past_grants_[id] = {grants_->Describe(id), how, at_ns};
  (void)grants_->ApplyRevoked(id, changed);
}

Status CollectorServer::IssueGrant(const workflow::ApprovedGrant& g, const std::string& actor,
                                   uint64_t* grant_id) {
  GrantSpec spec;
  GrantPrincipal p;
  switch (g.identity->principal) {
    case workflow::Identity::Principal::kUid:
      p.kind = GrantPrincipal::Kind::kUid;
      p.uid = g.identity->uid;
      break;
    case workflow::Identity::Principal::kUser:
      p.kind = GrantPrincipal::Kind::kUserName;
      p.name = g.identity->host_user;
      break;
    case workflow::Identity::Principal::kCgroup:
      p.kind = GrantPrincipal::Kind::kCgroupPath;
      p.name = g.identity->host_user;
      break;
    case workflow::Identity::Principal::kNone:
      return Status::FailedPrecondition("'" + g.identity->name + "' has no principal on hosts");
  }
  spec.principals = {p};
  spec.resource_ids = {g.resource_id};
  spec.host_ids = g.hosts;
  spec.not_before_unix_ns = g.not_before_unix_ns;
  spec.not_after_unix_ns = g.not_after_unix_ns;
  spec.break_glass = g.break_glass;
  return IssueGrant(spec, actor, grant_id, g.not_before_unix_ns);
}

Status CollectorServer::IssueGrant(const GrantSpec& spec, const std::string& actor, uint64_t* id,
                                   int64_t at_ns) {
  std::string signed_grant;
  LATCH_RETURN_IF_ERROR(grants_->Sign(spec, &signed_grant));
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(actor);
  LATCH_RETURN_IF_ERROR(schema::ReadCanonical<schema::SignedGrant>(
      signed_grant, "signed grant", [&](schema::SignedGrant::Reader g) {
        a.initGrantIssued().setGrant(g);
        return Status::Ok();
      }));
  // In the ledger first: a grant that is not recorded never takes effect.
  LATCH_RETURN_IF_ERROR(
      RecordWorkflow(schema::CanonicalBytes(a.asReader()), "", at_ns != 0 ? at_ns : NowNs()));
  std::vector<std::string> changed;
  Status s = grants_->ApplyIssued(signed_grant, id, &changed);
  if (!s.ok()) {
    // Recorded but not applicable: should not happen (Sign checked the id).
    logging::Default().Error("recorded grant not applied (should not happen)",
                             {{"error", s.ToString()}});
    return s;
  }
  if (open_action_) {
    // Pushed once the action's batch is durable (RecordAsOne).
    open_action_->issued.push_back(*id);
    open_action_->push.insert(changed.begin(), changed.end());
    return Status::Ok();
  }
  for (const std::string& h : changed) PushGrantSet(h);
  return Status::Ok();
}

Status CollectorServer::RevokeGrant(uint64_t id, const std::string& actor,
                                    const std::string& reason) {
  if (!grants_->Has(id)) return Status::NotFound("no live grant " + std::to_string(id));
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(actor);
  auto r = a.initGrantRevoked();
  r.setGrantId(id);
  r.setReason(reason);
  // Recorded, then pushed: the book and every host's set follow the ledger
  // (the time it ended is the record's, as a replay finds it).
  const int64_t now = NowNs();
  LATCH_RETURN_IF_ERROR(RecordWorkflow(schema::CanonicalBytes(a.asReader()), "", now));
  std::vector<std::string> changed;
  EndGrant(id, "revoked", now, &changed);
  for (const std::string& h : changed) PushGrantSet(h);
  return Status::Ok();
}
}  // namespace latch::collector
