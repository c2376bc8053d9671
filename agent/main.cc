// latch-agent: enforces grants in this host's kernel. See agent_daemon.h.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "agent/agent_config.h"
#include "agent/agent_daemon.h"
#include "agent/agent_enrolment.h"
#include "agent/guard_status.h"
#include "lib/logging/log_flags.h"
#include "lib/logging/logger.h"
#include "schemas/curve_key.h"

namespace {

using latch::Status;
using latch::agent::AgentConfig;

int Fail(const Status& s) {
  std::cerr << "latch-agent: " << s.ToString() << "\n";
  return 1;
}

// The daemon could not start: say what failed and what to look at, as a log
// entry (systemd's journal keeps it).
int FailToStart(const Status& s, const std::string& config_path) {
  std::string hint;
  const std::string text = s.ToString();
  if (s.code() == Status::Code::kInvalidArgument) {
    hint = "fix the setting named in " + config_path + " and start again";
  } else if (text.find("config file") != std::string::npos) {
    hint = "check the --config path (" + config_path + ") and that it is readable";
  } else if (text.find("Operation not permitted") != std::string::npos ||
             text.find("Permission denied") != std::string::npos) {
    hint =
        "run as root, or with the capabilities deploy/systemd/latch-agent.service grants "
        "(CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN, ...)";
  } else {
    hint =
        "the guard needs cgroup v2, a kernel with BTF (/sys/kernel/btf/vmlinux) and the "
        "rights to load BPF; --log-level debug shows libbpf's and the verifier's messages";
  }
  latch::logging::Default().Error("cannot start", {{"error", text}, {"hint", hint}});
  return 1;
}

Status LoadConfig(const std::string& path, AgentConfig* config, latch::agent::CollectorKeys keys) {
  LATCH_RETURN_IF_ERROR(latch::agent::LoadAgentConfig(path, config));
  return latch::agent::ResolveAgentDefaults(config, keys);
}

int Main(int argc, char** argv) {
  CLI::App app{
      "latch-agent: refuses connections to protected destinations unless the connecting\n"
      "user or cgroup holds a live grant, enforced in the kernel (eBPF on cgroup v2).\n\n"
      "Examples:\n"
      "  latch-agent --config /etc/latch/agent.toml             run (decisions as JSON lines on "
      "stdout)\n"
      "  latch-agent status --config /etc/latch/agent.toml      what the kernel holds now\n"
      "  latch-agent uninstall --config /etc/latch/agent.toml   detach and remove the pins\n"
      "  latch-agent key --config /etc/latch/agent.toml         this agent's CURVE public key,\n"
      "                                                         for the collector's [[agent]] "
      "list\n"
      "  latch-agent enrol --config /etc/latch/agent.toml --token T --ca-pin sha256:...\n"
      "                                                         enrol with a join token\n"};
  std::string config_path;
  app.add_option("--config", config_path, "Agent configuration file (TOML)")->required();
  latch::logging::LogFlags log_flags;
  log_flags.AddTo(app);
  auto* status =
      app.add_subcommand("status", "Print attached programs, resources, grants, counters");
  auto* uninstall = app.add_subcommand("uninstall", "Detach the guard and remove its pins");
  auto* key = app.add_subcommand(
      "key", "Print this agent's CURVE public key (created on first use) for enrolment");
  key->fallthrough();
  auto* enrol = app.add_subcommand(
      "enrol", "Enrol with the collector by a join token (latch-collector token create)");
  std::string token, ca_pin, collector_endpoint;
  enrol->add_option("--token", token, "the join token (latchjoin1....)")->required();
  enrol
      ->add_option("--ca-pin", ca_pin,
                   "the collector key's pin, sha256:<hex> (latch-collector keys prints it)")
      ->required();
  enrol->add_option("--collector", collector_endpoint,
                    "the collector's agent endpoint (default: the config's first endpoint)");
  enrol->fallthrough();
  enrol->footer(
      "Example:\n  latch-agent enrol --config /etc/latch/agent.toml --token latchjoin1.... "
      "--ca-pin sha256:...\n  systemctl enable --now latch-agent\n"
      "It writes <state_dir>/enrolment.toml; the [collector] settings left out of agent.toml\n"
      "are taken from there.");
  status->footer("Example:\n  latch-agent status --config /etc/latch/agent.toml");
  uninstall->footer(
      "Example:\n  systemctl stop latch-agent && latch-agent uninstall --config "
      "/etc/latch/agent.toml\n(the guard stays attached while the agent is stopped; this removes "
      "it)");
  key->footer(
      "Example:\n  latch-agent key --config /etc/latch/agent.toml   # paste into the collector's "
      "[[agent]] entry");
  // --config may come before or after the subcommand.
  status->fallthrough();
  uninstall->fallthrough();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  log_flags.Apply("latch-agent");
  bool daemon = !*status && !*key && !*uninstall && !*enrol;
  AgentConfig config;
  Status s = LoadConfig(
      config_path, &config,
      daemon ? latch::agent::CollectorKeys::kRequired : latch::agent::CollectorKeys::kOptional);
  if (!s.ok()) return daemon ? FailToStart(s, config_path) : Fail(s);

  if (*status) {
    latch::agent::GuardStatus st;
    s = latch::agent::ReadGuardStatus(config.pin_dir, &st);
    if (!s.ok()) return Fail(s);
    std::cout << "guard pinned at " << config.pin_dir << "\n"
              << latch::agent::FormatGuardStatus(st);
    std::string activity;
    s = latch::agent::ActivityCapture::DescribePinned(latch::agent::ActivityPinDir(config),
                                                      &activity);
    std::cout << (s.ok() ? activity : s.message() + "\n");
    return 0;
  }
  if (*key) {
    if (!config.collector.enabled) {
      return Fail(Status::InvalidArgument("the configuration has no [collector] section"));
    }
    std::filesystem::create_directories(config.collector.state_dir);
    latch::schema::CurveKeyPair pair;
    s = latch::schema::LoadOrCreateCurveKey(config.collector.state_dir + "/agent.key", &pair);
    if (!s.ok()) return Fail(s);
    std::cout << pair.public_z85 << "\n";
    return 0;
  }
  if (*enrol) {
    if (!config.collector.enabled) {
      return Fail(Status::InvalidArgument(
          "the configuration has no [collector] section (with endpoints, or give --collector)"));
    }
    latch::agent::EnrolOptions o;
    o.endpoint = !collector_endpoint.empty()           ? collector_endpoint
                 : !config.collector.endpoints.empty() ? config.collector.endpoints[0]
                                                       : "";
    if (o.endpoint.empty()) {
      return Fail(Status::InvalidArgument(
          "no collector endpoint: give --collector tcp://HOST:7440 or set [collector] endpoints"));
    }
    o.token = token;
    o.ca_pin = ca_pin;
    o.host_id = config.host_id;
    o.state_dir = config.collector.state_dir;
    latch::agent::Enrolment e;
    s = latch::agent::EnrolAgent(o, &e);
    if (!s.ok()) return Fail(s);
    std::cout << "enrolled as " << e.host_id << " with the collector at " << o.endpoint
              << "\nwrote " << latch::agent::EnrolmentPath(o.state_dir)
              << "\nstart the agent: systemctl enable --now latch-agent\n";
    return 0;
  }
  if (*uninstall) {
    const std::string activity = latch::agent::ActivityPinDir(config);
    s = latch::agent::Guard::Uninstall(
        config.pin_dir, [&] { return latch::agent::ActivityCapture::Uninstall(activity); });
    if (!s.ok()) return Fail(s);
    std::cerr << "latch-agent: guard and activity capture detached, pins under " << config.pin_dir
              << " removed\n";
    return 0;
  }
  latch::agent::AgentDaemon agent(std::move(config), std::cout, latch::logging::Default());
  s = agent.Start();
  if (!s.ok()) return FailToStart(s, config_path);
  s = agent.Run();
  if (!s.ok()) {
    latch::logging::Default().Error("stopped on an error", {{"error", s.ToString()}});
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "latch-agent: unexpected error: " << e.what() << "\n";
    return 1;
  }
}
