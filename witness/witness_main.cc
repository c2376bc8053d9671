// latch-witness (issue 18): cosigns the checkpoints of the logs it is
// configured to witness, each only if it is consistent with every checkpoint
// of that log it cosigned before (C2SP tlog-witness over HTTPS; add_checkpoint.h).
// It runs on a machine the collector's operators do not control, so that a
// ledger shown differently to different parties (a split view) is caught.
//
//   latch-witness --config FILE          serve until SIGINT/SIGTERM
//   latch-witness key --config FILE      its verifier key, for the collector and verifiers
//   latch-witness state --config FILE    what it holds per log
//
// Boost 1.74's Asio needs <utility> first (see agent_daemon.h).
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on

#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>

#include "collector/api/api_server.h"
#include "collector/api/tls_identity.h"
#include "lib/logging/logger.h"
#include "lib/storage/append_file.h"
#include "lib/tlog/base64.h"
#include "witness/add_checkpoint.h"
#include "witness/witness_config.h"

namespace {

using latch::Status;
using latch::witness::WitnessConfig;

int Fail(const Status& s) {
  std::fprintf(stderr, "latch-witness: %s\n", s.ToString().c_str());
  return 1;
}

// The witness's own key: made on first use (mode 0600), then the same.
Status LoadOrMakeKey(const WitnessConfig& config, latch::tlog::CosignatureSigner* out) {
  std::string text;
  Status s = latch::storage::ReadWholeFile(config.key_path(), &text);
  if (s.ok()) {
    while (!text.empty() && text.back() == '\n') text.pop_back();
    LATCH_RETURN_IF_ERROR(
        latch::tlog::CosignatureSigner::Parse(text, out).WithContext(config.key_path()));
    if (out->name() != config.name) {
      return Status::FailedPrecondition(config.key_path() + " is the key of '" + out->name() +
                                        "', the config's name is '" + config.name + "'");
    }
    return Status::Ok();
  }
  if (s.code() != Status::Code::kNotFound) return s;
  if (::mkdir(config.data_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("making " + config.data_dir, errno);
  }
  LATCH_RETURN_IF_ERROR(latch::tlog::CosignatureSigner::Generate(config.name, out));
  LATCH_RETURN_IF_ERROR(latch::storage::WriteFileAtomically(config.data_dir, "witness.key",
                                                            out->ToString() + "\n", 0600));
  latch::logging::Default().Info("made the witness's key", {{"key", config.key_path()}});
  return Status::Ok();
}

// Refusals folded per kind until the next Flush (once a second).
class RefusalTally {
 public:
  void Count(const std::string& what, const std::string& detail, const std::string& peer) {
    std::lock_guard<std::mutex> lock(mu_);
    Kind& k = kinds_[what];
    ++k.count;
    ++total_;
    k.detail = detail;
    k.peer = peer;
  }
  void Flush() {
    std::map<std::string, Kind> kinds;
    {
      std::lock_guard<std::mutex> lock(mu_);
      kinds.swap(kinds_);
    }
    for (const auto& [what, k] : kinds) {
      latch::logging::Default().Warn(
          "refused",
          {{"what", what}, {"count", k.count}, {"last_detail", k.detail}, {"last_peer", k.peer}});
    }
  }
  uint64_t total() const {
    std::lock_guard<std::mutex> lock(mu_);
    return total_;
  }

 private:
  struct Kind {
    uint64_t count = 0;
    std::string detail, peer;
  };
  mutable std::mutex mu_;
  std::map<std::string, Kind> kinds_;
  uint64_t total_ = 0;
};

std::string Metrics(const latch::witness::Witness& w, const RefusalTally& refusals) {
  const latch::witness::WitnessCounters c = w.counters();
  std::string text;
  auto add = [&](const char* name, uint64_t v) {
    text += std::string("# TYPE latch_witness_") + name + " counter\nlatch_witness_" + name + " " +
            std::to_string(v) + "\n";
  };
  add("cosigned_total", c.cosigned);
  add("conflicts_total", c.conflicts);
  add("refused_total", c.refused);
  add("evidence_total", c.evidence);
  add("store_failed_total", c.store_failed);
  add("server_refusals_total", refusals.total());
  text += "# TYPE latch_witness_log_size gauge\n";
  for (const auto& [origin, state] : w.Logs()) {
    text +=
        "latch_witness_log_size{origin=\"" + origin + "\"} " + std::to_string(state.size) + "\n";
  }
  return text;
}

int Serve(const WitnessConfig& config, latch::tlog::CosignatureSigner key) {
  namespace asio = boost::asio;
  latch::witness::WitnessState state;
  Status s = latch::witness::WitnessState::Open(config.state_dir(), &state);
  if (!s.ok()) {
    latch::logging::Default().Error("cannot serve",
                                    {{"error", s.ToString()},
                                     {"hint",
                                      "the witness's state is damaged: keep it for investigation; "
                                      "never start it over empty, or it could cosign a fork"}});
    return 1;
  }
  latch::witness::Witness witness(key, config.logs, std::move(state));
  asio::io_context io;
  RefusalTally refusals;
  asio::thread_pool store(1);  // add-checkpoint syncs to disk: off the connections' thread
  latch::api::ApiOptions o;
  o.listen_address = config.listen_address;
  o.port = config.port;
  o.cert_path = config.cert.empty() ? config.data_dir + "/tls.crt" : config.cert;
  o.key_path = config.key.empty() ? config.data_dir + "/tls.key" : config.key;
  o.idle_timeout_ms = config.idle_timeout_ms;
  o.max_body_bytes = latch::witness::Witness::kMaxBody + 1;  // one byte more: answered 400
  o.open_paths = {"/add-checkpoint", "/metrics"};
  s = latch::api::EnsureTlsIdentity(o.cert_path, o.key_path,
                                    latch::api::ListenNames(config.listen_address));
  if (!s.ok()) return Fail(s);
  latch::api::ApiServer server(
      io, o,
      [&](latch::api::ApiRequest req, latch::api::ApiServer::Respond respond) {
        const std::string path = req.target.substr(0, req.target.find('?'));
        if (path == "/add-checkpoint" && req.method == "POST") {
          asio::post(store, [&witness, body = std::move(req.body), respond] {
            const uint64_t now =
                static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
                                          std::chrono::system_clock::now().time_since_epoch())
                                          .count());
            latch::witness::WitnessAnswer a = witness.AddCheckpoint(body, now);
            respond({a.status, a.content_type, a.body});
          });
          return;
        }
        if (path == "/metrics" && req.method == "GET") {
          return respond({200, "text/plain; version=0.0.4", Metrics(witness, refusals)});
        }
        if (path == "/healthz" && req.method == "GET") {
          return respond({200, "application/json", R"({"ok":true})"});
        }
        respond({404, "text/plain; charset=utf-8", "no such path\n"});
      },
      [&refusals](const std::string& what, const std::string& detail, const std::string& peer,
                  const std::string&) { refusals.Count(what, detail, peer); });
  s = server.Start();
  if (!s.ok()) return Fail(s);
  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) {
    server.Stop();
    io.stop();
  });
  // Refusals (connections past the limits, malformed targets) are logged a
  // line per kind per second with their count: a flood cannot flood the log.
  asio::steady_timer tally_timer(io);
  std::function<void()> flush = [&] {
    tally_timer.expires_after(std::chrono::seconds(1));
    tally_timer.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      refusals.Flush();
      flush();
    });
  };
  flush();
  std::string logs;
  for (const auto& [origin, keys] : config.logs) logs += (logs.empty() ? "" : ",") + origin;
  latch::logging::Default().Info(
      "serving", {{"listen", config.listen_address + ":" + std::to_string(server.port())},
                  {"logs", logs},
                  {"witness_key", key.verifier().ToString()}});
  sd_notify(0, "READY=1\nSTATUS=serving");
  io.run();
  store.join();
  latch::logging::Default().Info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "latch-witness: cosigns a log's checkpoints, each only if it extends every one it cosigned "
      "before (C2SP tlog-witness)"};
  std::string config_path = "/etc/latch/witness.toml";
  app.add_option("--config", config_path, "the witness's TOML configuration")
      ->capture_default_str();
  auto* key_cmd = app.add_subcommand("key", "print the witness's verifier key (made on first use)");
  auto* state_cmd = app.add_subcommand("state", "print what the witness holds per log");
  for (CLI::App* sub : {key_cmd, state_cmd}) {
    sub->add_option("--config", config_path, "the witness's TOML configuration");
  }
  app.footer(
      "Example:\n  latch-witness --config /etc/latch/witness.toml\n"
      "The configuration names the witness, its data_dir and listen address, and each [[log]] it "
      "witnesses (origin and keys).");
  key_cmd->footer(
      "Example:\n  latch-witness key --config /etc/latch/witness.toml\n"
      "Give the key it prints to the collector and to everyone who verifies cosignatures.");
  state_cmd->footer("Example:\n  latch-witness state --config /etc/latch/witness.toml");
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  WitnessConfig config;
  Status s = latch::witness::LoadWitnessConfig(config_path, &config);
  if (!s.ok()) return Fail(s);
  if (state_cmd->parsed()) {
    latch::witness::WitnessState state;
    s = latch::witness::WitnessState::Open(config.state_dir(), &state);
    if (!s.ok()) return Fail(s);
    if (state.logs().empty()) std::printf("no checkpoint cosigned yet\n");
    for (const auto& [origin, log] : state.logs()) {
      std::printf("%s\n  size %llu\n  root %s\n", origin.c_str(),
                  static_cast<unsigned long long>(log.size),
                  latch::tlog::Base64Encode(log.root).c_str());
    }
    return 0;
  }
  latch::tlog::CosignatureSigner key;
  s = LoadOrMakeKey(config, &key);
  if (!s.ok()) return Fail(s);
  if (key_cmd->parsed()) {
    std::printf("%s\n", key.verifier().ToString().c_str());
    return 0;
  }
  return Serve(config, std::move(key));
}
