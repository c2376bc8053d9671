// The collector's HTTPS API: its route table, and the routes that read the
// ledger's state (health, metrics, checkpoint, tiles, consistency proofs).
// The ApiServer authenticates on the loop and hands each request to
// RouteApi, which finds its route: those on the loop are queued behind the
// loop's work and an action in flight (their state is the loop's); ledger
// and index reads run on a worker. The workflow's routes are in
// workflow_api.cc, the events' in events_api.cc.
#include <nlohmann/json.hpp>
#include <set>
#include <string_view>

#include "collector/api/tls_identity.h"
#include "collector/ingest/api_answer.h"
#include "collector/ingest/collector_server.h"
#include "lib/logging/logger.h"
#include "lib/tlog/base64.h"
#include "lib/tlog/tile_path.h"

namespace latch::collector {

Status CollectorServer::StartApi() {
  api::ApiOptions o;
  o.listen_address = config_.api_address;
  o.port = config_.api_port;
  o.cert_path = config_.api_cert.empty() ? config_.data_dir + "/api.crt" : config_.api_cert;
  o.key_path = config_.api_key.empty() ? config_.data_dir + "/api.key" : config_.api_key;
  o.token_hashes = AcceptedTokens();
  o.client_cert_hashes = AcceptedCerts();
  o.idle_timeout_ms = config_.api_idle_timeout_ms;
  o.max_connections_per_address = config_.api_max_connections_per_address;
  o.public_log = config_.api_public_log;
  // The web console's files are public; what they show is not.
  o.open_paths.insert("/");
  o.open_prefixes.push_back("/console/");
  LATCH_RETURN_IF_ERROR(
      api::EnsureTlsIdentity(o.cert_path, o.key_path, api::ListenNames(config_.api_address)));
  AddRoutes();
  api_ = std::make_unique<api::ApiServer>(
      loop_->io(), o,
      [this](api::ApiRequest r, api::ApiServer::Respond respond) {
        RouteApi(std::move(r), std::move(respond));
      },
      [this](const std::string& what, const std::string& detail, const std::string& peer,
             const std::string& identity) {
        // Recorded like every refusal (folded per second), on the loop: the
        // hook is called there, or from a stream's thread.
        MutexLock lock(calls_mu_);
        calls_.push_back([this, what, detail, peer, identity] {
          refusals_.Count(what, detail, peer, identity);
        });
      });
  return api_->Start();
}

void CollectorServer::AddRoutes() {
  using api::RunsOn;
  // A route whose handler is a member taking (request, args, respond).
  auto add = [this](const char* method, const char* pattern, RunsOn runs_on, ApiRoute handler) {
    routes_.Add(method, pattern, runs_on,
                [this, handler](const api::ApiRequest& req, const api::RouteArgs& args,
                                const api::ApiServer::Respond& respond) {
                  return (this->*handler)(req, args, respond);
                });
  };
  // A read on a worker: the ledger's and the index's own read connections.
  auto read = [this](const char* pattern,
                     api::ApiResponse (CollectorServer::*handler)(const api::ApiRequest&)) {
    routes_.Add("GET", pattern, RunsOn::kWorker,
                [this, handler](const api::ApiRequest& req, const api::RouteArgs&,
                                const api::ApiServer::Respond&) { return (this->*handler)(req); });
  };
  add("GET", "/healthz", RunsOn::kLoop, &CollectorServer::ApiHealth);
  add("GET", "/metrics", RunsOn::kLoop, &CollectorServer::ApiMetrics);
  add("GET", "/checkpoint", RunsOn::kLoop, &CollectorServer::ApiCheckpoint);
  add("GET", "/tile/*", RunsOn::kLoop, &CollectorServer::ApiTile);
  add("GET", "/v1/proof/consistency", RunsOn::kLoop, &CollectorServer::ApiConsistencyProof);
  read("/v1/proof/inclusion", &CollectorServer::HandleInclusionProof);
  read("/v1/events", &CollectorServer::HandleEventsQuery);
  read("/v1/events/stream", &CollectorServer::HandleEventsStream);
  // Static, so on a worker: a page loads without waiting for the loop.
  add("GET", "/", RunsOn::kWorker, &CollectorServer::ApiConsoleFile);
  add("GET", "/console/*", RunsOn::kWorker, &CollectorServer::ApiConsoleFile);
  add("POST", "/v1/session", RunsOn::kLoop, &CollectorServer::ApiSignIn);
  add("GET", "/v1/session", RunsOn::kLoop, &CollectorServer::ApiWhoAmI);
  add("POST", "/v1/session/end", RunsOn::kLoop, &CollectorServer::ApiSignOut);
  add("GET", "/v1/grants", RunsOn::kLoop, &CollectorServer::ApiGrants);
  add("GET", "/v1/hosts", RunsOn::kLoop, &CollectorServer::ApiHosts);
  add("GET", "/v1/agents", RunsOn::kLoop, &CollectorServer::ApiAgents);
  add("POST", "/v1/agents/tokens", RunsOn::kLoop, &CollectorServer::ApiNewJoinToken);
  add("POST", "/v1/agents/remove", RunsOn::kLoop, &CollectorServer::ApiRemoveAgent);
  add("GET", "/v1/credentials", RunsOn::kLoop, &CollectorServer::ApiCredentials);
  add("POST", "/v1/credentials", RunsOn::kLoop, &CollectorServer::ApiAddCredential);
  add("POST", "/v1/credentials/remove", RunsOn::kLoop, &CollectorServer::ApiRemoveCredential);
  add("POST", "/v1/grants/{id}/revoke", RunsOn::kLoop, &CollectorServer::ApiRevoke);
  add("GET", "/v1/requests", RunsOn::kLoop, &CollectorServer::ApiRequests);
  add("POST", "/v1/requests", RunsOn::kLoop, &CollectorServer::ApiNewRequest);
  add("GET", "/v1/requests/{id}", RunsOn::kLoop, &CollectorServer::ApiOneRequest);
  for (const char* verb :
       {"/v1/requests/{id}/approve", "/v1/requests/{id}/deny", "/v1/requests/{id}/cancel"}) {
    add("POST", verb, RunsOn::kLoop, &CollectorServer::ApiReview);
  }
}

void CollectorServer::RouteApi(api::ApiRequest req, api::ApiServer::Respond respond) {
  LATCH_ASSERT_ON_LOOP(*loop_);
  if (stopping_) return respond(Error(503, "the collector is stopping"));
  const std::string path = req.target.substr(0, req.target.find('?'));
  api::RouteTable::Found found = routes_.Find(req.method, path);
  if (found.route == nullptr) {
    return respond(found.status_if_none == 405 ? Error(405, "method not allowed on " + path)
                                               : Error(404, "no such path"));
  }
  const api::RouteTable::Route* route = found.route;
  if (standby_ && req.method != "GET" && req.method != "HEAD") return respond(StandbyRefusal());
  auto run = [this, route, req = std::move(req), args = std::move(found.args), respond] {
    // No request may stop the loop or a worker: whatever a handler throws
    // becomes a 500 for that request and a log line (issue 14).
    try {
      if (route->runs_on == api::RunsOn::kLoop && req.method != "GET" && !recorder_->writable()) {
        return respond(Error(503, recorder_->reason() + "; nothing was changed, try again later"));
      }
      if (std::optional<api::ApiResponse> answer = route->handler(req, args, respond)) {
        respond(std::move(*answer));
      }
    } catch (const std::exception& e) {
      logging::Default().Error("API handler failed; answered 500",
                               {{"method", req.method},
                                {"path", req.target.substr(0, req.target.find('?'))},
                                {"error", e.what()}});
      respond(Error(500, "internal error"));
    }
  };
  if (route->runs_on == api::RunsOn::kWorker) {
    // Ledger reads and the index's own read connection: on a worker, so
    // queries never hold up the loop.
    PostToWorker(std::move(run));
    return;
  }
  // Queued behind this turn's work, in arrival order with the agents'
  // messages, and after an action in flight: what a route reads or changes
  // is on record.
  MutexLock lock(calls_mu_);
  calls_.push_back([this, run = std::move(run)] { WhenSettled(run); });
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

std::optional<api::ApiResponse> CollectorServer::ApiHealth(const api::ApiRequest&,
                                                           const api::RouteArgs&,
                                                           const api::ApiServer::Respond&) {
  // Not ready while the ledger refuses writes, or on a standby: reads go
  // on, writes do not (a load balancer sends them to the sequencer).
  if (standby_) {
    return Json(503, {{"ok", false},
                      {"role", "standby"},
                      {"reason", "a standby: it answers reads; changes go to the sequencer"}});
  }
  if (!recorder_->writable()) {
    return Json(503, {{"ok", false}, {"role", "sequencer"}, {"reason", recorder_->reason()}});
  }
  return Json(200, {{"ok", true}, {"role", shared_ != nullptr ? "sequencer" : "single"}});
}

std::optional<api::ApiResponse> CollectorServer::ApiTile(const api::ApiRequest&,
                                                         const api::RouteArgs& args,
                                                         const api::ApiServer::Respond&) {
  tlog::TileId tile;
  if (!tlog::TileId::Parse("tile/" + args.rest, &tile).ok()) return Error(400, "not a tile path");
  std::string data;
  Status s = ledger_->ReadTile(tile, &data);
  if (!s.ok()) return Error(404, "no such tile");
  return api::ApiResponse{200, "application/octet-stream", data};
}

std::optional<api::ApiResponse> CollectorServer::ApiMetrics(const api::ApiRequest&,
                                                            const api::RouteArgs&,
                                                            const api::ApiServer::Respond&) {
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
  text += "# TYPE latch_collector_sequencer gauge\nlatch_collector_sequencer " +
          std::string(standby_ ? "0" : "1") + "\n";
  // With a shared ledger: entries taken in as a standby, and those left to
  // replay when this collector became the sequencer (few, if it followed).
  add("standby_followed_entries_total", counters_.standby_followed_entries);
  text +=
      "# TYPE latch_collector_takeover_replayed_entries gauge\n"
      "latch_collector_takeover_replayed_entries " +
      std::to_string(counters_.takeover_replayed_entries.load()) + "\n";
  text += WitnessMetrics();
  text += "# TYPE latch_collector_index_size gauge\nlatch_collector_index_size " +
          std::to_string(index_->indexed()) + "\n";
  // When each enrolled agent was last heard from (0: not since this start):
  // a host whose agent is stopped or cut off falls silent, and this is
  // what an alert on that silence watches.
  text += "# TYPE latch_collector_agent_last_heard_seconds gauge\n";
  std::set<std::string> hosts;
  for (const auto& [key, host] : config_.agents) hosts.insert(host);
  for (const std::string& host : hosts) {
    auto it = channel_->last_heard_ns().find(host);
    int64_t secs = it == channel_->last_heard_ns().end() ? 0 : it->second / 1000000000;
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

std::optional<api::ApiResponse> CollectorServer::ApiConsistencyProof(
    const api::ApiRequest& req, const api::RouteArgs&, const api::ApiServer::Respond&) {
  // ?from=M&to=N: the proof that the tree of M entries is a prefix of N's.
  auto arg = [&](const char* name) -> uint64_t {
    std::string key = std::string(name) + "=";
    size_t at = req.target.find(key);
    if (at == std::string::npos) return 0;
    uint64_t v = 0;
    std::string_view value(req.target);
    value = value.substr(at + key.size(), req.target.find('&', at) - at - key.size());
    return api::ParseId(value, &v) ? v : 0;
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

}  // namespace latch::collector
