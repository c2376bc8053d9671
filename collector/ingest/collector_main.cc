// latch-collector: ingest agents' events into the ledger and push signed
// grants to them.
//
//   latch-collector --config FILE            serve (until SIGINT/SIGTERM)
//   latch-collector keys --config FILE       print the keys agents are configured with
//   latch-collector grant --config FILE --host H (--uid N | --user NAME | --cgroup PATH)
//                   --resource R [--for SECONDS]
//   latch-collector revoke --config FILE --id N [--reason TEXT]
//   latch-collector status --config FILE
//   latch-collector request --config FILE --as IDENTITY --resource NAME --for 30m --reason TEXT
//   latch-collector review --config FILE --as IDENTITY --id N (--approve | --deny) [--comment TEXT]
//   latch-collector requests --config FILE
//   latch-collector token create --config FILE --host H [--ttl 1h]
//   latch-collector agents --config FILE
//   latch-collector agents remove --config FILE --host H
// grant, revoke, status, token and agents talk to the running collector over its admin
// socket (data_dir/admin.sock, reachable only by who can enter data_dir).
#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "collector/api/api_server.h"
#include "collector/api/tls_identity.h"
#include "collector/grants/grant_keys.h"
#include "collector/ingest/collector_config.h"
#include "collector/ingest/collector_keys.h"
#include "collector/ingest/collector_server.h"
#include "collector/ingest/ledger_storage.h"
#include "lib/logging/log_flags.h"
#include "lib/logging/logger.h"
#include "schemas/join_token.h"

namespace {

using latch::Status;
using latch::collector::CollectorConfig;
using latch::collector::CollectorServer;

CollectorServer* g_server = nullptr;
// Set by a signal before the server exists (while a start replays the
// ledger): the server stops as soon as it runs.
std::atomic<bool> g_stop{false};
void OnSignal(int) {
  g_stop = true;
  if (g_server != nullptr) g_server->Stop();
}
void OnHangup(int) {
  if (g_server != nullptr) g_server->RequestPolicyReload();
}

int Fail(const Status& s) {
  std::fprintf(stderr, "latch-collector: %s\n", s.ToString().c_str());
  return 1;
}

// The server could not start or stopped on an error: what failed and what to
// look at, as a log entry (systemd's journal keeps it).
int FailServing(const Status& s, const std::string& config_path) {
  std::string hint;
  if (s.code() == Status::Code::kInvalidArgument) {
    hint = "fix the setting named in " + config_path + " and start again";
  } else if (s.ToString().find("config file") != std::string::npos) {
    hint = "check the --config path (" + config_path + ") and that it is readable";
  } else if (s.ToString().find("stepped down") != std::string::npos) {
    // Not a fault of this host: several collectors share the ledger.
    latch::logging::Default().Warn(
        "stepped down", {{"error", s.ToString()},
                         {"hint",
                          "another collector is the sequencer; started again (Restart=on-failure), "
                          "this one waits as a standby"}});
    return 1;
  } else if (s.ToString().find("[storage] postgres") != std::string::npos) {
    hint = "check [storage] postgres in " + config_path +
           ", that the database is up and reachable, and that the collector's role may use it";
  } else if (s.code() == Status::Code::kCorruption || s.code() == Status::Code::kVerifyFailed) {
    hint =
        "the ledger under data_dir fails its checks: keep it for investigation, restore it from "
        "a backup, and run latch-ledger verify on it";
  } else {
    hint =
        "check that data_dir is writable by this user and that the endpoints and [api] listen "
        "address are free (ss -ltn)";
  }
  latch::logging::Default().Error("cannot serve", {{"error", s.ToString()}, {"hint", hint}});
  return 1;
}

// Sends one admin request to the running collector; its reply in `*out`
// (printed as JSON when `out` is null). 0 when it says ok.
int Admin(const CollectorConfig& config, const nlohmann::json& request,
          nlohmann::json* answer = nullptr) {
  zmq::context_t ctx;
  zmq::socket_t s(ctx, zmq::socket_type::req);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::rcvtimeo, 10000);
  s.connect("ipc://" + config.data_dir + "/admin.sock");
  std::string out = request.dump();
  s.send(zmq::buffer(out), zmq::send_flags::none);
  zmq::message_t reply;
  if (!s.recv(reply)) {
    std::fprintf(stderr,
                 "latch-collector: no answer from the collector at %s/admin.sock "
                 "(is it running?)\n",
                 config.data_dir.c_str());
    return 1;
  }
  auto j = nlohmann::json::parse(reply.to_string(), nullptr, false);
  const bool ok = j.is_object() && j.value("ok", false);
  if (answer == nullptr) {
    std::printf("%s\n", j.dump(2).c_str());
  } else if (!ok) {
    std::fprintf(stderr, "latch-collector: %s\n",
                 j.is_object() ? j.value("error", std::string("refused")).c_str() : "bad answer");
  }
  if (answer != nullptr) *answer = j;
  return ok ? 0 : 1;
}

// Whether a collector answers on this data_dir's admin socket.
bool CollectorRunning(const CollectorConfig& config) {
  zmq::context_t ctx;
  zmq::socket_t s(ctx, zmq::socket_type::req);
  s.set(zmq::sockopt::linger, 0);
  s.set(zmq::sockopt::rcvtimeo, 1000);
  s.connect("ipc://" + config.data_dir + "/admin.sock");
  std::string out = nlohmann::json({{"op", "status"}}).dump();
  s.send(zmq::buffer(out), zmq::send_flags::none);
  zmq::message_t reply;
  return s.recv(reply).has_value();
}

// latch-collector grant-key: prepare a successor to the grant key, or make
// the prepared one the signing key (grant_keys.h explains the rotation).
int GrantKey(const CollectorConfig& config, bool next, bool promote) {
  if (next == promote) return Fail(Status::InvalidArgument("give one of --next, --promote"));
  if (next) {
    std::string vkey;
    Status s = latch::collector::PrepareNextGrantKey(config.data_dir, config.origin, &vkey);
    if (!s.ok()) return Fail(s);
    std::printf(
        "next grant key: %s\n\n"
        "Add it to every agent's [collector] grant_key list, keeping the current key:\n"
        "  grant_key = [\"<current>\", \"%s\"]\n"
        "and restart the agents (enforcement goes on meanwhile). Then stop the collector,\n"
        "run latch-collector grant-key --promote, and start it again.\n",
        vkey.c_str(), vkey.c_str());
    return 0;
  }
  if (CollectorRunning(config)) {
    return Fail(Status::FailedPrecondition(
        "the collector is running; stop it first (it signs with the key it started with)"));
  }
  std::string retired, now;
  Status s = latch::collector::PromoteNextGrantKey(config.data_dir, &retired, &now);
  if (!s.ok()) return Fail(s);
  std::printf(
      "grant key now: %s\nretired: %s\n\n"
      "Start the collector: it records the change and signs grant sets with the new key.\n"
      "Grants the retired key signed stay valid until they end; after that, remove the\n"
      "retired key from the agents' grant_key lists.\n",
      now.c_str(), retired.c_str());
  return 0;
}

// latch-collector token create: a one-time join token, and the command that
// spends it on the host.
int CreateToken(const CollectorConfig& config, const std::string& host, const std::string& ttl) {
  nlohmann::json j;
  int rc = Admin(
      config,
      {{"op", "token_create"}, {"host", host}, {"ttl", ttl}, {"actor", "latch-collector cli"}}, &j);
  if (rc != 0) return rc;
  const int64_t expires_s = j.at("expires_at_ns").get<int64_t>() / 1'000'000'000;
  char when[32];
  std::time_t t = static_cast<std::time_t>(expires_s);
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  std::printf(
      "join token for %s (one use, until %s):\n  %s\n"
      "collector key pin:\n  %s\n\n"
      "On %s, with host_id = \"%s\" and [collector] endpoints in its agent.toml:\n"
      "  latch-agent enrol --config /etc/latch/agent.toml --token %s --ca-pin %s\n",
      host.c_str(), when, j.at("token").get<std::string>().c_str(),
      j.at("ca_pin").get<std::string>().c_str(), host.c_str(), host.c_str(),
      j.at("token").get<std::string>().c_str(), j.at("ca_pin").get<std::string>().c_str());
  return 0;
}

// latch-collector agents: who is enrolled, how, and whether connected.
int ListAgents(const CollectorConfig& config) {
  nlohmann::json j;
  int rc = Admin(config, {{"op", "agents"}}, &j);
  if (rc != 0) return rc;
  std::printf("%-24s %-10s %-9s %s\n", "HOST", "SOURCE", "CONNECTED", "CURVE KEY");
  for (const auto& a : j.at("agents")) {
    std::printf("%-24s %-10s %-9s %s\n", a.at("host").get<std::string>().c_str(),
                a.at("source").get<std::string>().c_str(),
                a.at("connected").get<bool>() ? "yes" : "no",
                a.at("curve_public_key").get<std::string>().c_str());
  }
  for (const auto& tk : j.at("open_tokens")) {
    std::printf("open join token for %s (sha256 %s...), expires at %lld ns\n",
                tk.at("host").get<std::string>().c_str(),
                tk.at("sha256").get<std::string>().c_str(),
                static_cast<long long>(tk.at("expires_at_ns").get<int64_t>()));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "latch-collector: the audit ledger's ingest from agents, the signed grant channel to\n"
      "them, the approval workflow and its HTTPS API.\n\n"
      "Examples:\n"
      "  latch-collector --config /etc/latch/collector.toml          run\n"
      "  latch-collector keys --config /etc/latch/collector.toml     the keys agents need\n"
      "  latch-collector status --config /etc/latch/collector.toml   counters of the running one\n"
      "  latch-collector grant --config C --host db-1 --uid 1000 --resource 1 --for 600\n"
      "  latch-collector request --config C --as alice --resource db --for 30m --reason \"...\"\n"
      "  latch-collector review --config C --as bob --id 1 --approve --comment ok\n"
      "  echo -n \"$TOKEN\" | latch-collector token-hash              for an [[api_token]] "
      "entry\n"};
  std::string config_path;
  auto* config_option = app.add_option("--config", config_path, "collector configuration (TOML)");
  latch::logging::LogFlags log_flags;
  log_flags.AddTo(app);
  auto* keys = app.add_subcommand("keys", "print the CURVE, grant and ledger keys agents need");
  auto* grant = app.add_subcommand("grant", "issue a grant through the running collector");
  std::string host, user, cgroup, reason;
  int64_t uid = -1, seconds = 3600;
  uint64_t id = 0;
  std::vector<uint32_t> resources;
  grant->add_option("--host", host, "host the grant applies on")->required();
  grant->add_option("--uid", uid, "principal: a uid");
  grant->add_option("--user", user, "principal: a user name, resolved on the host");
  grant->add_option("--cgroup", cgroup, "principal: a cgroup path (and its descendants)");
  grant->add_option("--resource", resources, "resource id(s)")->required();
  grant->add_option("--for", seconds, "duration in seconds")->check(CLI::Range(1, 86400 * 365));
  auto* revoke = app.add_subcommand("revoke", "revoke a grant through the running collector");
  revoke->add_option("--id", id, "grant id")->required();
  revoke->add_option("--reason", reason, "why");
  auto* status = app.add_subcommand("status", "counters of the running collector");
  auto* storage = app.add_subcommand("storage", "the ledger's storage in PostgreSQL ([storage])");
  storage->require_subcommand(1);
  auto* storage_init = storage->add_subcommand(
      "init", "make the ledger's signing key if absent, and its tables in the database");
  auto* join_token = app.add_subcommand("token", "join tokens for enrolling agents");
  join_token->require_subcommand(1);
  auto* token_create =
      join_token->add_subcommand("create", "make a one-time join token for a host (on record)");
  std::string ttl = "1h";
  token_create->add_option("--host", host, "the host id it enrols")->required();
  token_create->add_option("--ttl", ttl, "how long it can be used, like 30m or 1h (1m to 30d)");
  auto* agents = app.add_subcommand("agents", "list enrolled agents and open join tokens");
  auto* agents_remove =
      agents->add_subcommand("remove", "remove an agent enrolled with a join token (on record)");
  agents_remove->add_option("--host", host, "its host id")->required();
  // The workflow through the admin socket (latchctl over HTTPS is issue 5).
  std::string as, resource_name, duration = "1h", comment;
  bool approve = false, deny = false;
  auto* request = app.add_subcommand("request", "ask for access under the policy");
  request->add_option("--as", as, "the identity asking")->required();
  request->add_option("--resource", resource_name, "resource name in the policy")->required();
  request->add_option("--for", duration, "how long, like 30m or 2h");
  request->add_option("--reason", reason, "why (the policy may require it)");
  auto* review = app.add_subcommand("review", "approve or deny a pending request");
  review->add_option("--as", as, "the identity reviewing")->required();
  review->add_option("--id", id, "request id")->required();
  review->add_flag("--approve", approve);
  review->add_flag("--deny", deny);
  review->add_option("--comment", comment);
  auto* requests = app.add_subcommand("requests", "list requests and their state");
  auto* token_hash = app.add_subcommand(
      "token-hash", "read an API token on stdin, print the sha256 an [[api_token]] entry holds");
  std::string cert_file;
  auto* grant_key =
      app.add_subcommand("grant-key",
                         "rotate the grant key: prepare a successor (--next), then make it the one "
                         "in use (--promote, with the collector stopped)");
  bool next_key = false, promote_key = false;
  grant_key->add_flag("--next", next_key, "make (or show) the successor key");
  grant_key->add_flag("--promote", promote_key,
                      "the successor becomes the signing key; the current one is retired");
  auto* cert_hash = app.add_subcommand(
      "cert-hash",
      "print the sha256 of a PEM client certificate, as an [[api_client]] entry holds");
  cert_hash->add_option("CERT", cert_file, "PEM certificate file")->required();
  // An example under every subcommand's --help.
  const std::string c = " --config /etc/latch/collector.toml";
  keys->footer("Example:\n  latch-collector keys" + c + "   # into each agent's [collector]");
  grant->footer("Example:\n  latch-collector grant" + c +
                " --host db-1 --uid 1000 --resource 1 --for 600");
  revoke->footer("Example:\n  latch-collector revoke" + c + " --id 7 --reason \"left the team\"");
  status->footer("Example:\n  latch-collector status" + c);
  storage_init->footer(
      "Example (once, on one collector; then copy [storage] key to the others):\n"
      "  latch-collector storage init" +
      c);
  storage->footer("Example:\n  latch-collector storage init" + c);
  request->footer("Example:\n  latch-collector request" + c +
                  " --as alice --resource db --for 30m --reason \"OPS-12\"");
  review->footer("Example:\n  latch-collector review" + c +
                 " --as bob --id 1 --approve --comment ok");
  requests->footer("Example:\n  latch-collector requests" + c);
  token_create->footer("Example:\n  latch-collector token create" + c +
                       " --host db-2 --ttl 1h\nthen, on db-2: latch-agent enrol --config "
                       "/etc/latch/agent.toml --token <token> --ca-pin <pin>");
  join_token->footer("Example:\n  latch-collector token create" + c + " --host db-2 --ttl 1h");
  agents->footer("Example:\n  latch-collector agents" + c + "\n  latch-collector agents remove" +
                 c + " --host db-2");
  agents_remove->footer("Example:\n  latch-collector agents remove" + c + " --host db-2");
  token_hash->footer(
      "Example:\n  openssl rand -base64 24 | tee alice.token | latch-collector token-hash");
  cert_hash->footer("Example:\n  latch-collector cert-hash bob.crt");
  // --config may come before or after the subcommand.
  grant_key->footer(
      "Example (no enforcement gap; grants in force stay valid):\n"
      "  latch-collector grant-key" +
      c +
      " --next      # add its key to every agent's grant_key\n"
      "  systemctl stop latch-collector\n"
      "  latch-collector grant-key" +
      c +
      " --promote\n"
      "  systemctl start latch-collector");
  for (auto* sub : {keys, grant, revoke, status, request, review, requests, grant_key, join_token,
                    token_create, agents, agents_remove, storage, storage_init})
    sub->fallthrough();
  CLI11_PARSE(app, argc, argv);
  if (cert_hash->parsed()) {
    std::string hex;
    Status st = latch::api::CertificateFingerprint(cert_file, &hex);
    if (!st.ok()) return Fail(st);
    std::printf("%s\n", hex.c_str());
    return 0;
  }
  if (!token_hash->parsed() && config_option->count() == 0) {
    std::fprintf(stderr, "latch-collector: --config is required\n");
    return 2;
  }

  if (token_hash->parsed()) {
    std::string token;
    std::getline(std::cin, token);
    if (token.size() < 16)
      return Fail(Status::InvalidArgument("use a token of 16 characters or more"));
    std::printf("%s\n", latch::api::TokenHash(token).c_str());
    return 0;
  }
  log_flags.Apply("latch-collector");
  const bool serving = !keys->parsed() && !grant->parsed() && !revoke->parsed() &&
                       !status->parsed() && !request->parsed() && !review->parsed() &&
                       !requests->parsed() && !grant_key->parsed() && !join_token->parsed() &&
                       !agents->parsed() && !storage->parsed();
  CollectorConfig config;
  Status s = latch::collector::LoadCollectorConfig(config_path, &config);
  if (!s.ok()) return serving ? FailServing(s, config_path) : Fail(s);

  if (storage_init->parsed()) {
    std::string vkey;
    s = latch::collector::InitPostgresStorage(config, &vkey);
    if (!s.ok()) return Fail(s);
    std::printf("ledger '%s' ready in the database\nledger_key = \"%s\"\n", config.origin.c_str(),
                vkey.c_str());
    return 0;
  }
  if (grant->parsed()) {
    nlohmann::json p;
    if (uid >= 0)
      p = {{"uid", uid}};
    else if (!user.empty())
      p = {{"user", user}};
    else if (!cgroup.empty())
      p = {{"cgroup", cgroup}};
    else
      return Fail(Status::InvalidArgument("give one of --uid, --user, --cgroup"));
    return Admin(config, {{"op", "issue"},
                          {"principals", {p}},
                          {"resources", resources},
                          {"hosts", {host}},
                          {"duration_s", seconds},
                          {"actor", "latch-collector cli"}});
  }
  if (revoke->parsed()) {
    return Admin(
        config,
        {{"op", "revoke"}, {"grant_id", id}, {"reason", reason}, {"actor", "latch-collector cli"}});
  }
  if (status->parsed()) return Admin(config, {{"op", "status"}});
  if (request->parsed()) {
    return Admin(config, {{"op", "request"},
                          {"identity", as},
                          {"resource", resource_name},
                          {"duration", duration},
                          {"reason", reason}});
  }
  if (review->parsed()) {
    if (approve == deny) return Fail(Status::InvalidArgument("give one of --approve, --deny"));
    return Admin(config, {{"op", "review"},
                          {"identity", as},
                          {"request_id", id},
                          {"approve", approve},
                          {"comment", comment}});
  }
  if (requests->parsed()) return Admin(config, {{"op", "requests"}});
  if (token_create->parsed()) return CreateToken(config, host, ttl);
  if (agents_remove->parsed()) {
    return Admin(config,
                 {{"op", "agent_remove"}, {"host", host}, {"actor", "latch-collector cli"}});
  }
  if (agents->parsed()) return ListAgents(config);
  if (grant_key->parsed()) {
    int rc = GrantKey(config, next_key, promote_key);
    Status owned = latch::collector::MatchDataDirOwner(config.data_dir);
    return owned.ok() ? rc : Fail(owned);
  }
  if (keys->parsed()) {
    latch::collector::CollectorKeys k;
    s = latch::collector::LoadOrMakeCollectorKeys(config, &k);
    if (!s.ok()) return Fail(s);
    std::printf(
        "curve_public_key = \"%s\"\ngrant_key = \"%s\"\nledger_key = \"%s\"\n"
        "# for latch-agent enrol --ca-pin:\n# curve_key_pin = %s\n",
        k.curve_public_key.c_str(), k.grant_key.c_str(), k.ledger_key.c_str(),
        latch::schema::CurveKeyPin(k.curve_public_key).c_str());
    return 0;
  }

  std::unique_ptr<CollectorServer> server;
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  s = CollectorServer::Open(config, &server);
  if (!s.ok() && g_stop) {
    latch::logging::Default().Info("stopped", {{"while", s.ToString()}});
    return 0;
  }
  if (!s.ok()) return serving ? FailServing(s, config_path) : Fail(s);
  g_server = server.get();
  if (g_stop) server->Stop();
  std::signal(SIGHUP, OnHangup);
  s = server->Run();
  g_server = nullptr;
  if (!s.ok()) return FailServing(s, config_path);
  latch::logging::Default().Info("stopped");
  return 0;
}
