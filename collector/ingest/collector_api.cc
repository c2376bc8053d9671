// The collector's HTTPS API routes. The ApiServer authenticates on the loop
// and hands each request to RouteApi: workflow routes run on the loop, which
// owns that state; ledger and index reads run on a worker.
#include <unistd.h>

#include <chrono>
#include <future>
#include <nlohmann/json.hpp>
#include <set>

#include "collector/api/json_body.h"
#include "collector/api/query_string.h"
#include "collector/api/tls_identity.h"
#include "collector/index/event_query.h"
#include "collector/ingest/api_answer.h"
#include "collector/ingest/collector_server.h"
#include "collector/workflow/duration.h"
#include "collector/workflow/free_text.h"
#include "lib/logging/logger.h"
#include "lib/tlog/base64.h"
#include "lib/tlog/tile_path.h"

namespace latch::collector {
namespace {

// Splits "/a/b/c" into {"a","b","c"}.
std::vector<std::string> Segments(const std::string& path) {
  std::vector<std::string> out;
  size_t i = 1;
  while (i <= path.size()) {
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

bool ParseId(const std::string& s, uint64_t* id) {
  if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  *id = std::stoull(s);
  return *id > 0;
}

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
                        {"reviews", reviews}};
}

}  // namespace

Status CollectorServer::StartApi() {
  api::ApiOptions o;
  o.listen_address = config_.api_address;
  o.port = config_.api_port;
  o.cert_path = config_.api_cert.empty() ? config_.data_dir + "/api.crt" : config_.api_cert;
  o.key_path = config_.api_key.empty() ? config_.data_dir + "/api.key" : config_.api_key;
  o.token_hashes = config_.api_tokens;
  o.client_cert_hashes = config_.api_client_certs;
  o.idle_timeout_ms = config_.api_idle_timeout_ms;
  o.max_connections_per_address = config_.api_max_connections_per_address;
  o.public_log = config_.api_public_log;
  LATCH_RETURN_IF_ERROR(api::EnsureTlsIdentity(o.cert_path, o.key_path));
  api_ = std::make_unique<api::ApiServer>(
      loop_->io(), o,
      [this](api::ApiRequest r, api::ApiServer::Respond respond) {
        RouteApi(std::move(r), std::move(respond));
      },
      [this](const std::string& what, const std::string& detail, const std::string& peer) {
        // Recorded like every refusal (folded per second), on the loop: the
        // hook is called there, or from a stream's thread.
        MutexLock lock(calls_mu_);
        calls_.push_back([this, what, detail, peer] { Refuse(what, detail, "", "", peer); });
      });
  return api_->Start();
}

namespace {

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

}  // namespace

void CollectorServer::RouteApi(api::ApiRequest req, api::ApiServer::Respond respond) {
  LATCH_ASSERT_ON_LOOP(*loop_);
  if (stopping_) return respond(Error(503, "the collector is stopping"));
  std::string path = req.target.substr(0, req.target.find('?'));
  api::ApiResponse (CollectorServer::*read)(const api::ApiRequest&) = nullptr;
  if (req.method == "GET" && path == "/v1/events") read = &CollectorServer::HandleEventsQuery;
  if (req.method == "GET" && path == "/v1/events/stream") {
    read = &CollectorServer::HandleEventsStream;
  }
  if (req.method == "GET" && path == "/v1/proof/inclusion") {
    read = &CollectorServer::HandleInclusionProof;
  }
  if (read == nullptr) return CallOnLoop(req, respond);
  // Ledger reads and the index's own read connection: on a worker, so
  // queries never hold up the loop.
  PostToWorker([this, read, req = std::move(req), respond] {
    try {
      respond((this->*read)(req));
    } catch (const std::exception& e) {
      logging::Default().Error(
          "API read failed; answered 500",
          {{"path", req.target.substr(0, req.target.find('?'))}, {"error", e.what()}});
      respond(Error(500, "internal error"));
    }
  });
}

void CollectorServer::CallOnLoop(const api::ApiRequest& req,
                                 const api::ApiServer::Respond& respond) {
  // Queued behind this turn's work, in arrival order with the agents'
  // messages and completions (RunQueuedCalls).
  MutexLock lock(calls_mu_);
  calls_.push_back([this, req, respond] {
    // After an action in flight: what a route reads or changes is on record.
    WhenSettled([this, req, respond] {
      // No request may stop the loop: whatever a handler throws becomes a
      // 500 for that request and a log line (issue 14).
      try {
        if (std::optional<api::ApiResponse> answer = HandleApi(req, respond)) respond(*answer);
      } catch (const std::exception& e) {
        logging::Default().Error("API handler failed; answered 500",
                                 {{"method", req.method},
                                  {"path", req.target.substr(0, req.target.find('?'))},
                                  {"error", e.what()}});
        respond(Error(500, "internal error"));
      }
    });
  });
  PostTurn();
}

void CollectorServer::RunQueuedCalls() {
  std::vector<std::function<void()>> calls;
  {
    MutexLock lock(calls_mu_);
    calls.swap(calls_);
  }
  for (auto& c : calls) {
    try {
      c();
    } catch (const std::exception& e) {
      logging::Default().Error("a queued call on the loop failed", {{"error", e.what()}});
    }
  }
}

std::optional<api::ApiResponse> CollectorServer::HandleApi(const api::ApiRequest& req,
                                                           const api::ApiServer::Respond& respond) {
  std::string path = req.target.substr(0, req.target.find('?'));
  const std::string& m = req.method;
  if (path == "/healthz" && m == "GET") {
    // Not ready while the ledger refuses writes: reads go on, writes do not.
    if (!recorder_->writable()) {
      return Json(503, {{"ok", false}, {"reason", recorder_->reason()}});
    }
    return Json(200, {{"ok", true}});
  }
  if (m != "GET" && !recorder_->writable()) {
    return Error(503, recorder_->reason() + "; nothing was changed, try again later");
  }
  if (path == "/checkpoint" && m == "GET") {
    return api::ApiResponse{200, "text/plain; charset=utf-8", ledger_->checkpoint_note()};
  }
  if (path.rfind("/tile/", 0) == 0 && m == "GET") {
    tlog::TileId tile;
    if (!tlog::TileId::Parse(path.substr(1), &tile).ok()) return Error(400, "not a tile path");
    std::string data;
    Status s = ledger_->ReadTile(tile, &data);
    if (!s.ok()) return Error(404, "no such tile");
    return api::ApiResponse{200, "application/octet-stream", data};
  }
  if (path == "/metrics" && m == "GET") {
    std::string text;
    auto add = [&](const char* name, uint64_t v) {
      text += std::string("# TYPE latch_collector_") + name + " counter\nlatch_collector_" + name +
              " " + std::to_string(v) + "\n";
    };
    add("batches_total", counters_.batches);
    add("records_appended_total", counters_.records_appended);
    add("records_duplicate_total", counters_.records_duplicate);
    add("records_declared_lost_total", counters_.records_declared_lost);
    add("receipts_total", counters_.receipts);
    add("refused_keys_total", counters_.refused_keys);
    add("malformed_messages_total", counters_.malformed_messages);
    add("alarms_total", counters_.alarms);
    add("webhooks_delivered_total", webhooks_->counters().delivered);
    add("webhooks_retried_total", webhooks_->counters().retried);
    add("webhooks_failed_total", webhooks_->counters().failed);
    add("webhooks_dropped_total", webhooks_->counters().dropped);
    add("index_failures_total", index_->failures());
    add("index_rebuilds_total", index_->rebuilds());
    add("ledger_write_failures_total", recorder_->health().failures());
    add("ledger_outages_total", recorder_->health().outages());
    add("batches_unwritable_total", counters_.batches_unwritable);
    add("records_unwritten_dropped_total", recorder_->unwritten_dropped());
    add("replies_dropped_total", counters_.replies_dropped);
    add("snapshots_written_total", counters_.snapshots_written);
    add("snapshot_failures_total", counters_.snapshot_failures);
    text += "# TYPE latch_collector_ledger_writable gauge\nlatch_collector_ledger_writable " +
            std::string(recorder_->writable() ? "1" : "0") + "\n";
    text += "# TYPE latch_collector_ledger_size gauge\nlatch_collector_ledger_size " +
            std::to_string(ledger_->size()) + "\n";
    // Each commit is one sync and one signed checkpoint.
    text +=
        "# TYPE latch_collector_ledger_commits_total counter\n"
        "latch_collector_ledger_commits_total " +
        std::to_string(ledger_->commits()) + "\n";
    text +=
        "# TYPE latch_collector_start_replayed_entries gauge\n"
        "latch_collector_start_replayed_entries " +
        std::to_string(counters_.start_replayed_entries.load()) + "\n";
    text += "# TYPE latch_collector_index_size gauge\nlatch_collector_index_size " +
            std::to_string(index_->indexed()) + "\n";
    // When each enrolled agent was last heard from (0: not since this start):
    // a host whose agent is stopped or cut off falls silent, and this is
    // what an alert on that silence watches.
    text += "# TYPE latch_collector_agent_last_heard_seconds gauge\n";
    std::set<std::string> hosts;
    for (const auto& [key, host] : config_.agents) hosts.insert(host);
    for (const std::string& host : hosts) {
      auto it = last_heard_ns_.find(host);
      int64_t secs = it == last_heard_ns_.end() ? 0 : it->second / 1000000000;
      std::string label;  // Prometheus label value: \ and " escaped
      for (char ch : host) {
        if (ch == '\\' || ch == '"') label += '\\';
        label += ch;
      }
      text += "latch_collector_agent_last_heard_seconds{host=\"" + label + "\"} " +
              std::to_string(secs) + "\n";
    }
    return api::ApiResponse{200, "text/plain; version=0.0.4", text};
  }
  auto seg = Segments(path);
  if (seg.size() < 2 || seg[0] != "v1") return Error(404, "no such path");
  if (seg.size() == 3 && seg[1] == "proof" && seg[2] == "consistency" && m == "GET") {
    // ?from=M&to=N: the proof that the tree of M entries is a prefix of N's.
    auto arg = [&](const char* name) -> uint64_t {
      std::string key = std::string(name) + "=";
      size_t at = req.target.find(key);
      if (at == std::string::npos) return 0;
      uint64_t v = 0;
      return ParseId(req.target.substr(at + key.size(), req.target.find('&', at) - at - key.size()),
                     &v)
                 ? v
                 : 0;
    };
    uint64_t from = arg("from"), to = arg("to");
    if (from == 0 || to < from || to > ledger_->size())
      return Error(400, "need 0 < from <= to <= size");
    std::vector<tlog::Hash> proof;
    Status s = ledger_->ConsistencyProof(from, to, &proof);
    if (!s.ok()) return Error(500, s.message());
    nlohmann::json hashes = nlohmann::json::array();
    for (const auto& h : proof) hashes.push_back(tlog::Base64Encode({h.data(), h.size()}));
    return Json(200, {{"from", from}, {"to", to}, {"proof", hashes}});
  }
  if (seg.size() == 2 && seg[1] == "grants" && m == "GET") {
    // The events query's rule: auditors and approvers see every grant,
    // anyone else the grants they hold.
    bool all =
        workflow_->policy() != nullptr && workflow_->policy()->MayReadAllEvents(req.identity);
    const workflow::Identity* who =
        workflow_->policy() == nullptr ? nullptr : workflow_->policy()->FindIdentity(req.identity);
    auto visible = [&](const nlohmann::json& grant) {
      return all || (who != nullptr && GrantHeldBy(grant, *who));
    };
    // ?past=1: the ended ones too, newest first, with how and when they ended.
    return Json(200, grants_->Describe(req.target.find("past=1") != std::string::npos, visible));
  }
  if (workflow_->policy() == nullptr) return Error(409, "no policy is loaded");
  nlohmann::json body;
  std::string why;
  if (seg[1] == "requests" && seg.size() == 2) {
    if (m == "GET") {
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
          list.push_back(j);
        }
      }
      return Json(200, {{"requests", list}});
    }
    if (m != "POST") return Error(405, "GET or POST");
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
  uint64_t id = 0;
  if (seg[1] == "requests" && seg.size() == 3 && ParseId(seg[2], &id) && m == "GET") {
    // One request: its state, the reviews so far, who may still approve.
    auto it = workflow_->requests().all().find(id);
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
    return Json(200, j);
  }
  if (seg[1] == "requests" && seg.size() == 4 && ParseId(seg[2], &id) && m == "POST") {
    if (!api::ParseJsonBody(req.body, {"comment"}, &body, &why)) return Error(400, why);
    if (body.contains("comment") && !body["comment"].is_string()) {
      return Error(400, "comment must be a string");
    }
    if (seg[3] != "approve" && seg[3] != "deny" && seg[3] != "cancel") {
      return Error(404, "no such action");
    }
    auto r = std::make_shared<workflow::AccessRequest>();
    auto grant_id = std::make_shared<uint64_t>(0);
    // A review with its grant and decision: one batch, one sync.
    Act(
        [this, identity = req.identity, id, verb = seg[3], comment = body.value("comment", ""), r,
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
  if (seg[1] == "grants" && seg.size() == 4 && ParseId(seg[2], &id) && seg[3] == "revoke" &&
      m == "POST") {
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
  return Error(404, "no such path");
}

}  // namespace latch::collector
