// Issue 16: docs/OPERATIONS.md's walk "A collector and two hosts, from
// packages", followed as a new operator would, with the installed binaries:
// the packages CPack builds, installed with dpkg into a scratch root; the
// shipped examples copied and given the edits the walk names; a join token
// made and spent; a request approved; and the connection it allows made on
// the enrolled host. Nobody copies a key by hand.
//
// What the test adds to the walk, and why: the collector and the agent run
// from the scratch root (not under systemd, which does not run here), their
// data and state in the test's directory, on loopback ports that are free;
// the agent guards a cgroup the test makes (never the root cgroup); alice is
// a uid (the example names a host user, which this machine does not have).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "kernel_sandbox.h"
#include "run_tool.h"
#include "scratch_install.h"

namespace latch::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr uint32_t kAliceUid = 4747;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Replaces the one line of `text` that starts with `key` by `line`.
void SetLine(std::string* text, const std::string& key, const std::string& line) {
  size_t at = text->find("\n" + key);
  ASSERT_NE(at, std::string::npos) << key << " is not in the example";
  size_t end = text->find('\n', at + 1);
  text->replace(at + 1, end - at - 1, line);
}

class WalkthroughTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LATCH_SKIP_UNLESS_KERNEL_TEST_CAN_RUN();
    char tmpl[] = "/tmp/latch-walk-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ASSERT_EQ(sandbox_.Create("latch-walk"), "");
  }
  void TearDown() override {
    for (pid_t* p : {&agent_, &collector_, &listener_}) {
      if (*p > 0) {
        ::kill(*p, SIGKILL);
        ::waitpid(*p, nullptr, 0);
      }
    }
    std::string out;
    if (!root_.empty() && fs::exists(dir_ + "/agent.toml")) {
      RunTool({root_ + "/usr/bin/latch-agent", "uninstall", "--config", dir_ + "/agent.toml"},
              &out);
    }
    if (!dir_.empty() && !std::getenv("LATCH_KEEP")) fs::remove_all(dir_);
  }
  // A documented command, run with the installed binary; counted.
  int Run(std::vector<std::string> argv, std::string* out,
          const std::map<std::string, std::string>& env = {}) {
    ++documented_commands_;
    argv[0] = root_ + "/usr/bin/" + argv[0];
    return RunTool(argv, out, env, true);
  }
  pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
    pid_t pid = ::fork();
    if (pid == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      ::dup2(fd, STDERR_FILENO);
      ::dup2(fd, STDOUT_FILENO);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    return pid;
  }
  // One connect to the protected port as alice's uid in the guarded cgroup:
  // 0, or the errno.
  int ConnectAsAlice() {
    return agent::ConnectFromCgroupAs(sandbox_.cgroup(), kAliceUid, db_port_);
  }
  // Waits until a connect as alice gives `want`.
  bool ConnectGives(int want, int seconds) {
    auto deadline = Clock::now() + std::chrono::seconds(seconds);
    while (Clock::now() < deadline) {
      if (ConnectAsAlice() == want) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  std::string dir_, root_;
  agent::KernelSandbox sandbox_;
  pid_t agent_ = -1, collector_ = -1, listener_ = -1;
  uint16_t db_port_ = 0;
  int documented_commands_ = 0;
};

TEST_F(WalkthroughTest, FromPackagesToAWorkingGrantOnAnEnrolledHost) {
  const auto started = Clock::now();
  std::string out;
  // The packages, built and installed (apt-get install ./latch-*.deb).
  const std::string failed = BuildAndInstallPackages(dir_, &root_);
  ASSERT_EQ(failed, "");
  const auto installed = Clock::now();

  // The collector: the shipped examples, with the walk's edits.
  const std::string examples = root_ + "/usr/share/doc/latch-collector/examples/";
  std::string collector = Slurp(examples + "collector.toml");
  std::string policy = Slurp(examples + "policy.toml");
  const uint16_t agent_port = agent::FreeLoopbackPort(), api_port = agent::FreeLoopbackPort();
  db_port_ = agent::FreeLoopbackPort();
  SetLine(&collector, "data_dir", "data_dir = \"" + dir_ + "/collector\"");
  SetLine(&collector, "endpoints",
          "endpoints = [\"tcp://127.0.0.1:" + std::to_string(agent_port) + "\"]");
  SetLine(&collector, "policy", "policy = \"" + dir_ + "/policy.toml\"");
  SetLine(&collector, "listen", "listen = \"127.0.0.1:" + std::to_string(api_port) + "\"");
  // The policy names the host db-2 (the walk's second host); alice by uid.
  SetLine(&policy, "id = \"db-host-1\"", "id = \"db-2\"");
  SetLine(&policy, "host_user", "uid = " + std::to_string(kAliceUid));
  SetLine(&policy, "ports", "ports = \"" + std::to_string(db_port_) + "\"");
  std::ofstream(dir_ + "/policy.toml") << policy;
  // Each person's token, from token-hash, in an [[api_token]].
  std::map<std::string, std::string> tokens = {{"alice", "alice-token-0123456789abcdef"},
                                               {"bob", "bob-token-0123456789abcdef01"}};
  for (const auto& [who, token] : tokens) {
    std::ofstream(dir_ + "/" + who + ".token") << token << "\n";
    std::string hash;
    ++documented_commands_;
    ASSERT_EQ(RunTool({"/bin/sh", "-c",
                       "cat " + dir_ + "/" + who + ".token | " + root_ +
                           "/usr/bin/latch-collector token-hash"},
                      &hash),
              0);
    collector += "\n[[api_token]]\nidentity = \"" + who + "\"\nsha256 = \"" +
                 hash.substr(0, hash.find('\n')) + "\"\n";
  }
  std::ofstream(dir_ + "/collector.toml") << collector;
  ++documented_commands_;  // systemctl enable --now latch-collector
  collector_ = Spawn({root_ + "/usr/bin/latch-collector", "--config", dir_ + "/collector.toml"},
                     dir_ + "/collector.log");
  bool up = false;
  for (int i = 0; i < 100 && !up; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    up = RunTool(
             {root_ + "/usr/bin/latch-collector", "status", "--config", dir_ + "/collector.toml"},
             &out) == 0;
  }
  ASSERT_TRUE(up) << Slurp(dir_ + "/collector.log");
  ASSERT_EQ(Run({"latch-collector", "token", "create", "--config", dir_ + "/collector.toml",
                 "--host", "db-2", "--ttl", "1h"},
                &out),
            0)
      << out;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(out, m, std::regex("(latchjoin1\\.[A-Za-z0-9_-]+)"))) << out;
  const std::string token = m[1];
  ASSERT_TRUE(std::regex_search(out, m, std::regex("(sha256:[0-9a-f]{64})"))) << out;
  const std::string pin = m[1];

  // The host db-2: the shipped agent example, its host_id and endpoints set.
  std::string agent = Slurp(root_ + "/usr/share/doc/latch-agent/examples/agent.toml");
  SetLine(&agent, "host_id", "host_id = \"db-2\"");
  SetLine(&agent, "endpoints",
          "endpoints = [\"tcp://127.0.0.1:" + std::to_string(agent_port) + "\"]\nstate_dir = \"" +
              dir_ + "/agent-state\"");
  SetLine(&agent, "metrics_listen",
          "metrics_listen = \"127.0.0.1:0\"\ncgroup = \"" + sandbox_.cgroup() + "\"\npin_dir = \"" +
              sandbox_.pin_dir() + "\"");
  std::ofstream(dir_ + "/agent.toml") << agent;
  ASSERT_EQ(Run({"latch-agent", "enrol", "--config", dir_ + "/agent.toml", "--token", token,
                 "--ca-pin", pin},
                &out),
            0)
      << out;
  ++documented_commands_;  // systemctl enable --now latch-agent
  agent_ = Spawn({root_ + "/usr/bin/latch-agent", "--config", dir_ + "/agent.toml"},
                 dir_ + "/agent.log");
  listener_ = ::fork();
  if (listener_ == 0) {
    int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in a = agent::Loopback4(db_port_);
    if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(l, 64) != 0)
      ::_exit(1);
    for (;;) {
      int c = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0) ::close(c);
    }
  }
  // The policy's resource reaches db-2 signed, with nothing listed locally:
  // alice is refused until a grant.
  ASSERT_TRUE(ConnectGives(EPERM, 30)) << Slurp(dir_ + "/agent.log") << "\n"
                                       << Slurp(dir_ + "/collector.log");

  // From anywhere with latch-tools: alice asks, bob approves.
  const std::string url = "https://127.0.0.1:" + std::to_string(api_port);
  auto as = [&](const std::string& who) {
    return std::map<std::string, std::string>{{"LATCH_SERVER", url},
                                              {"LATCH_CA", dir_ + "/collector/api.crt"},
                                              {"LATCH_TOKEN", tokens[who]},
                                              {"HOME", dir_ + "/home-" + who}};
  };
  ASSERT_EQ(Run({"latchctl", "request", "postgres", "--for", "30m", "--reason",
                 "OPS-42: fix the replica"},
                &out, as("alice")),
            0)
      << out;
  ASSERT_EQ(Run({"latchctl", "approve", "1", "--comment", "ok"}, &out, as("bob")), 0) << out;
  EXPECT_TRUE(ConnectGives(0, 15)) << "the approved grant did not open the way\n"
                                   << Slurp(dir_ + "/agent.log");
  const double install_to_grant = std::chrono::duration<double>(Clock::now() - installed).count();
  ASSERT_EQ(Run({"latchctl", "hosts"}, &out, as("bob")), 0) << out;
  EXPECT_NE(out.find("db-2"), std::string::npos) << out;
  std::printf(
      "walkthrough: %d documented commands from installed packages to a working grant on an "
      "enrolled host, %.1f s (with packaging: %.1f s)\n",
      documented_commands_, install_to_grant,
      std::chrono::duration<double>(Clock::now() - started).count());
  RecordProperty("documented_commands", documented_commands_);
  EXPECT_LE(documented_commands_, 10) << "not a handful";
}

}  // namespace
}  // namespace latch::testing
