// latch-agent: enforces grants in this host's kernel. See agent_daemon.h.
#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "agent/agent_config.h"
#include "agent/agent_daemon.h"
#include "agent/guard_status.h"
#include "schemas/curve_key.h"

namespace {

using latch::Status;
using latch::agent::AgentConfig;

int Fail(const Status& s) {
  std::cerr << "latch-agent: " << s.ToString() << "\n";
  return 1;
}

Status LoadConfig(const std::string& path, AgentConfig* config) {
  LATCH_RETURN_IF_ERROR(latch::agent::LoadAgentConfig(path, config));
  return latch::agent::ResolveAgentDefaults(config);
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
      "list\n"};
  std::string config_path;
  app.add_option("--config", config_path, "Agent configuration file (TOML)")->required();
  auto* status =
      app.add_subcommand("status", "Print attached programs, resources, grants, counters");
  auto* uninstall = app.add_subcommand("uninstall", "Detach the guard and remove its pins");
  auto* key = app.add_subcommand(
      "key", "Print this agent's CURVE public key (created on first use) for enrolment");
  key->fallthrough();
  // --config may come before or after the subcommand.
  status->fallthrough();
  uninstall->fallthrough();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  AgentConfig config;
  Status s = LoadConfig(config_path, &config);
  if (!s.ok()) return Fail(s);

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
  if (*uninstall) {
    s = latch::agent::ActivityCapture::Uninstall(latch::agent::ActivityPinDir(config));
    if (s.ok()) s = latch::agent::Guard::Uninstall(config.pin_dir);
    if (!s.ok()) return Fail(s);
    std::cerr << "latch-agent: guard and activity capture detached, pins under " << config.pin_dir
              << " removed\n";
    return 0;
  }
  latch::agent::AgentDaemon daemon(std::move(config), std::cout, std::cerr);
  s = daemon.Start();
  if (!s.ok()) return Fail(s.WithContext("start"));
  s = daemon.Run();
  if (!s.ok()) return Fail(s);
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
