// CollectorServer's actions: whatever changes the requests or the grants,
// run on the loop with its records gathered into one batch, appended with
// one sync off the loop; its effects and its answer follow once the batch is
// durable. Also: the workflow's sink, webhooks once records are on record,
// and refusals.

#include <capnp/message.h>

#include <nlohmann/json.hpp>
#include <utility>

#include "collector/index/record_view.h"
#include "collector/ingest/collector_server.h"
#include "lib/logging/logger.h"
#include "schemas/canonical.h"
#include "schemas/wire.capnp.h"
#include "schemas/wire_frame.h"
#include "schemas/workflow.capnp.h"

namespace latch::collector {

void CollectorServer::Act(std::function<Status()> action, std::function<void(const Status&)> done) {
  LATCH_ASSERT_ON_LOOP(*loop_);
  if (acting_) {
    waiting_.push_back([this, action = std::move(action), done = std::move(done)]() mutable {
      Act(std::move(action), std::move(done));
    });
    return;
  }
  acting_ = true;
  // What to put back if nothing of the action gets on record.
  auto before = std::make_shared<workflow::RequestBook>(workflow_->requests());
  recorder_->Open();
  grants_->BeginAction();
  action_webhooks_.clear();
  Status s;
  try {
    s = action();
  } catch (const std::exception& e) {
    // No action may wedge the ones behind it: it fails and is undone.
    logging::Default().Error("an action failed (should not happen); undone", {{"error", e.what()}});
    s = Status::InvalidArgument(std::string("internal error: ") + e.what());
  }
  ledger::EntryBatch batch = recorder_->Close();
  auto undo = [this, before] {
    // Nothing of it is on record, so nothing of it stays: not a review
    // without its decision, not a grant that was never recorded.
    workflow_->RestoreRequests(std::move(*before));
    grants_->Undo();
  };
  if (!s.ok()) {
    undo();
    return Settle(s, done);
  }
  if (batch.empty()) {  // nothing changed (an expiry found nothing due)
    grants_->Durable();
    return Settle(s, done);
  }
  recorder_->Commit(std::move(batch),
                    [this, undo, done, webhooks = std::move(action_webhooks_)](const Status& st) {
                      if (!st.ok()) {
                        undo();
                        return Settle(st, done);
                      }
                      grants_->Durable();  // grant sets pushed
                      for (const std::string& a : webhooks) NotifyWebhooks(a);
                      Settle(st, done);
                    });
}

void CollectorServer::Settle(const Status& s, const std::function<void(const Status&)>& done) {
  acting_ = false;
  try {
    if (done) done(s);
  } catch (const std::exception& e) {
    logging::Default().Error("answering an action failed", {{"error", e.what()}});
  }
  channel_->PushDeferred();
  // What waited runs in order, until one of them starts the next action.
  while (!acting_ && !waiting_.empty()) {
    std::function<void()> next = std::move(waiting_.front());
    waiting_.pop_front();
    try {
      next();
    } catch (const std::exception& e) {
      logging::Default().Error("a call waiting for an action failed", {{"error", e.what()}});
    }
  }
}

void CollectorServer::WhenSettled(std::function<void()> fn) {
  LATCH_ASSERT_ON_LOOP(*loop_);
  if (acting_) {
    waiting_.push_back(std::move(fn));
  } else {
    fn();
  }
}

void CollectorServer::ExpireDue() {
  const int64_t now = NowNs();
  const bool requests_due = workflow_->policy() != nullptr && workflow_->requests().AnyDue(now);
  if (!requests_due && grants_->book().EndedBy(now).empty()) return;
  Act(
      [this, requests_due] {
        // Both record before they act; while nothing can be recorded they
        // wait (agents end a grant at its notAfter on their own).
        const int64_t at = NowNs();
        if (requests_due) LATCH_RETURN_IF_ERROR(workflow_->ExpireDue(at));
        return grants_->ExpireEnded(at);
      },
      [](const Status& s) {
        if (!s.ok()) {
          logging::Default().Error("recording an expiry; tried again shortly",
                                   {{"error", s.ToString()}});
        }
      });
}

Status CollectorServer::Record(const std::string& action, const std::string& actor, int64_t at_ns) {
  // Only the policy a standby loads at start: recorded when it takes over.
  if (deferring_records_) return Status::Ok();
  if (!recorder_->open()) {
    // Only at start, before the loop runs: the policy loaded by Open.
    return recorder_->RecordNow(action, actor, at_ns);
  }
  LATCH_RETURN_IF_ERROR(recorder_->Record(action, actor, at_ns));
  action_webhooks_.push_back(action);  // announced once the action is durable
  return Status::Ok();
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
  // The grant carries the approval's time, as its requestDecided record does.
  return grants_->Issue(spec, actor, grant_id, g.not_before_unix_ns);
}

void CollectorServer::ReloadConfig() {
  if (config_.path.empty()) return;  // built in code: no file to read again
  CollectorConfig next;
  Status s = LoadCollectorConfig(config_.path, &next);
  if (!s.ok()) {
    logging::Default().Error(
        "configuration reload refused; the running one stays",
        {{"error", s.ToString()}, {"hint", "fix the file named and send SIGHUP again"}});
    return;
  }
  std::vector<std::string> restart_needed;
  if (next.data_dir != config_.data_dir) restart_needed.push_back("data_dir");
  if (next.origin != config_.origin) restart_needed.push_back("origin");
  if (next.endpoints != config_.endpoints) restart_needed.push_back("endpoints");
  if (next.policy != config_.policy) restart_needed.push_back("policy");
  if (next.api_enabled != config_.api_enabled || next.api_address != config_.api_address ||
      next.api_port != config_.api_port) {
    restart_needed.push_back("api listen");
  }
  if (!restart_needed.empty()) {
    std::string which;
    for (const std::string& w : restart_needed) which += (which.empty() ? "" : ",") + w;
    logging::Default().Warn("configuration settings that take effect at the next start changed",
                            {{"settings", which}});
  }
  std::vector<std::string> added, removed;
  for (const auto& [key, host] : next.agents) {
    auto it = config_.agents.find(key);
    if (it == config_.agents.end() || it->second != host) added.push_back(host + " " + key);
  }
  for (const auto& [key, host] : config_.agents) {
    auto it = next.agents.find(key);
    if (it == next.agents.end() || it->second != host) removed.push_back(host + " " + key);
  }
  const bool credentials =
      next.api_tokens != config_.api_tokens || next.api_client_certs != config_.api_client_certs;
  if (added.empty() && removed.empty() && !credentials) return;
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor("collector");
  auto c = a.initConfigReloaded();
  c.setSource(config_.path);
  auto add = c.initAgentsAdded(static_cast<unsigned>(added.size()));
  for (unsigned i = 0; i < added.size(); ++i) add.set(i, added[i]);
  auto rem = c.initAgentsRemoved(static_cast<unsigned>(removed.size()));
  for (unsigned i = 0; i < removed.size(); ++i) rem.set(i, removed[i]);
  c.setApiCredentials(static_cast<uint32_t>(next.api_tokens.size() + next.api_client_certs.size()));
  c.setApiCredentialsChanged(credentials);
  auto record = std::make_shared<std::string>(schema::CanonicalBytes(a.asReader()));
  auto loaded = std::make_shared<CollectorConfig>(std::move(next));
  // On record first: an agent is admitted, or a token accepted, only once
  // the ledger says so.
  Act([this, record] { return recorder_->Record(*record, "", NowNs()); },
      [this, loaded, added = added.size(), removed = removed.size()](const Status& st) {
        if (!st.ok()) {
          logging::Default().Error(
              "configuration changes not recorded; not applied, tried again shortly",
              {{"error", st.ToString()}});
          reload_config_ = true;
          return;
        }
        config_.agents = loaded->agents;
        config_.api_tokens = loaded->api_tokens;
        config_.api_client_certs = loaded->api_client_certs;
        if (api_) api_->SetCredentials(AcceptedTokens(), AcceptedCerts());
        channel_->EnrolmentChanged();
        logging::Default().Info("configuration reloaded", {{"agents_added", added},
                                                           {"agents_removed", removed},
                                                           {"agents", config_.agents.size()}});
      });
}

// Requests, reviews and decisions go to the webhooks once they are on record.
void CollectorServer::NotifyWebhooks(const std::string& action) {
  if (!webhooks_->enabled()) return;  // no decoding for nobody
  index::RecordView v;
  if (!index::ViewWorkflowAction(action, &v).ok()) return;
  std::string type = v.kind == "requestCreated"    ? "request.created"
                     : v.kind == "requestReviewed" ? "request.reviewed"
                     : v.kind == "requestDecided"  ? "request.decided"
                                                   : "";
  if (type.empty()) return;
  nlohmann::json body = {{"type", type},
                         {"collector", config_.origin},
                         {"request_id", v.request_id},
                         {"at_ns", NowNs()},
                         {"action", v.detail}};
  webhooks_->Send(type, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

}  // namespace latch::collector
