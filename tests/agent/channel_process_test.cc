// latch-agent and latch-collector as processes on a real kernel, talking over
// CURVE on loopback: decisions reach the ledger exactly once, also across
// kill -9 of either side; a grant issued at the collector opens the
// protected port on the host within moments and its revocation closes it; a
// collector whose ledger was rolled back is caught by the agent.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "channel_helpers.h"
#include "collector/ledger/ledger.h"
#include "collector/ledger/postgres/postgres_ledger.h"
#include "https_client.h"
#include "kernel_sandbox.h"
#include "lib/storage/append_file.h"
#include "lib/tlog/hex.h"
#include "lib/tlog/sha256.h"
#include "notify_socket.h"
#include "postgres_cluster.h"
#include "schemas/canonical.h"
#include "schemas/record_codec.h"
#include "schemas/workflow.capnp.h"

namespace latch::agent {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr uint32_t kUid = 6262;

class ChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bool ci = std::getenv("CI") != nullptr && std::string(std::getenv("CI")) == "true";
    if (::geteuid() != 0 || !fs::exists("/sys/kernel/btf/vmlinux")) {
      if (ci) FAIL() << "kernel test cannot run under CI: needs root and BTF";
      GTEST_SKIP() << "needs root and BTF";
    }
    std::string why = sandbox_.Create("latch-channel");
    ASSERT_EQ(why, "");
    char tmpl[] = "/tmp/latch-channel-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = Loopback4(0);
    socklen_t len = sizeof(a);
    ASSERT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&a), len), 0);
    ASSERT_EQ(::listen(listener_, 4096), 0);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_thread_ = std::thread([this] {
      while (!stop_accepting_) {
        int c = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) ::close(c);
      }
    });
    collector_port_ = FreeLoopbackPort();
    WriteCollectorConfig("");
    std::string out;
    ASSERT_EQ(RunTool({LATCH_COLLECTOR_BIN, "keys", "--config", dir_ + "/collector.toml"}, &out),
              0);
    collector_keys_ = out;  // three TOML lines, pasted into the agent config below
    WriteAgentConfig();
    ASSERT_EQ(RunTool({LATCH_AGENT_BIN, "key", "--config", dir_ + "/agent.toml"}, &out), 0);
    agent_key_ = out.substr(0, 40);
    WriteCollectorConfig(agent_key_);
  }

  void TearDown() override {
    Kill(&agent_);
    Kill(&collector_);
    if (listener_ >= 0) {
      stop_accepting_ = true;
      int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = Loopback4(port_);
      ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
      ::close(s);
      accept_thread_.join();
      ::close(listener_);
    }
    if (!dir_.empty()) {
      std::string out;
      RunTool({LATCH_AGENT_BIN, "uninstall", "--config", dir_ + "/agent.toml"}, &out);
      if (!std::getenv("LATCH_KEEP")) fs::remove_all(dir_);
    }
  }

  void WriteCollectorConfig(const std::string& agent_key) {
    std::ofstream f(dir_ + "/collector.toml");
    f << "data_dir = \"" << dir_ << "/collector\"\norigin = \"test.example/ledger\"\n"
      << "endpoints = [\"tcp://127.0.0.1:" << collector_port_ << "\"]\nbatch_max_age_ms = 2\n"
      << collector_settings_;
    if (!agent_key.empty()) {
      f << "[[agent]]\nhost_id = \"host-a\"\ncurve_public_key = \"" << agent_key << "\"\n";
    }
  }
  void WriteAgentConfig() {
    std::ofstream f(dir_ + "/agent.toml");
    f << "host_id = \"host-a\"\ncgroup = \"" << sandbox_.cgroup() << "\"\npin_dir = \""
      << sandbox_.pin_dir() << "\"\ncounters_interval_ms = 100\n"
      << "metrics_listen = \"127.0.0.1:0\"\n"
      << agent_settings_
      << "[[resource]]\nid = 9\nname = \"db\"\ndestinations = [\"127.0.0.1/32\"]\n"
      << "protocol = \"tcp\"\nports = \""
      << (agent_resource_port_ != 0 ? agent_resource_port_ : port_) << "\"\n"
      << "[collector]\nendpoints = [\"tcp://127.0.0.1:" << collector_port_ << "\""
      << (collector_port_b_ != 0 ? ", \"tcp://127.0.0.1:" + std::to_string(collector_port_b_) + "\""
                                 : std::string())
      << "]\n"
      << "state_dir = \"" << dir_ << "/agent-state\"\n";
    // `latch-collector keys` prints curve_public_key, grant_key, ledger_key.
    std::string keys = collector_keys_;
    size_t at = keys.find("curve_public_key");
    if (at != std::string::npos) keys.replace(at, 16, "server_public_key");
    f << keys;
  }

  pid_t Spawn(const std::string& bin, const std::string& config, const std::string& log) {
    pid_t pid = ::fork();
    if (pid == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      ::dup2(fd, STDERR_FILENO);
      int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
      ::dup2(null, STDOUT_FILENO);
      ::execl(bin.c_str(), bin.c_str(), "--config", config.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    return pid;
  }
  void StartCollector() {
    collector_ = Spawn(LATCH_COLLECTOR_BIN, dir_ + "/collector.toml", dir_ + "/collector.log");
    // Serving once the admin socket answers.
    auto deadline = Clock::now() + std::chrono::seconds(20);
    std::string out;
    while (Clock::now() < deadline) {
      if (RunTool({LATCH_COLLECTOR_BIN, "status", "--config", dir_ + "/collector.toml"}, &out) == 0)
        return;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    FAIL() << "collector did not start: " << Slurp(dir_ + "/collector.log");
  }
  void StartAgent() {
    size_t before = Count(Slurp(dir_ + "/agent.log"), kGuardLogEntry);
    agent_ = Spawn(LATCH_AGENT_BIN, dir_ + "/agent.toml", dir_ + "/agent.log");
    auto deadline = Clock::now() + std::chrono::seconds(20);
    while (Clock::now() < deadline) {
      if (Count(Slurp(dir_ + "/agent.log"), kGuardLogEntry) > before) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    FAIL() << "agent did not start: " << Slurp(dir_ + "/agent.log");
  }
  static size_t Count(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
    return n;
  }
  static void Kill(pid_t* pid, int sig = SIGKILL) {
    if (*pid <= 0) return;
    ::kill(*pid, sig);
    ::waitpid(*pid, nullptr, 0);
    *pid = -1;
  }

  // One connect to the protected port as kUid from the sandbox, in a child;
  // returns the errno (0 on success).
  int ConnectOnce() {
    ++decisions_;
    return ConnectFromCgroupAs(sandbox_.cgroup(), kUid, port_);
  }
  // `n` connects from one child (faster), returns how many were made.
  int ConnectMany(int n) {
    pid_t child = ::fork();
    if (child == 0) {
      if (!JoinCgroupAs(sandbox_.cgroup() + "/cgroup.procs", kUid)) ::_exit(100);
      for (int i = 0; i < n; ++i) {
        int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a = Loopback4(port_);
        ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
        ::close(s);
      }
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    int made = WIFEXITED(status) && WEXITSTATUS(status) == 0 ? n : 0;
    decisions_ += static_cast<size_t>(made);
    return made;
  }

  LedgerView ReadLedger() { return ReadLedgerAt(dir_ + "/collector/ledger"); }
  // Waits until the ledger holds `events` distinct events; returns the view.
  // The agent's metrics once its spool is empty (or after 10 s, as they are).
  std::string MetricsOnceSpoolIsEmpty() {
    std::string m;
    auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline) {
      m = LoopbackHttpGet(MetricsPortFromLog(Slurp(dir_ + "/agent.log")), "/metrics");
      if (m.find("latch_agent_spool_records 0\n") != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return m;
  }
  LedgerView WaitForEvents(size_t events, int seconds = 30) {
    auto deadline = Clock::now() + std::chrono::seconds(seconds);
    LedgerView v;
    while (Clock::now() < deadline) {
      v = ReadLedger();
      if (v.events.size() >= events) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return v;
  }
  static void ExpectExactlyOnce(const LedgerView& v, size_t events) {
    EXPECT_EQ(v.events.size(), events)
        << "ledger size " << v.size << ", workflow records " << v.workflow.size();
    size_t dup = 0;
    for (auto& [k, n] : v.events) dup += n > 1;
    EXPECT_EQ(dup, 0u);
    // Each boot's sequences (all its records) are gap-free from 1: nothing
    // lost in between.
    std::map<std::string, std::pair<uint64_t, uint64_t>> per_boot;  // count, max
    for (auto& [k, n] : v.agent_records) {
      auto& pb = per_boot[k.first];
      pb.first++;
      pb.second = std::max(pb.second, k.second);
    }
    for (auto& [boot, pb] : per_boot) EXPECT_EQ(pb.first, pb.second);
  }
  // The workflow's policy: "db" is the protected port on host-a; tess (kUid,
  // group dev) may ask for it; ann and ben (dba) approve, `approvals` of them.
  void WritePolicy(int approvals) {
    std::ofstream(dir_ + "/policy.toml")
        << "[[host]]\nid = \"host-a\"\n"
        << "[[resource]]\nname = \"db\"\nid = 9\ndestinations = [\"127.0.0.1/32\"]\nports = \""
        << port_ << "\"\nhosts = [\"host-a\"]\n"
        << "[[identity]]\nname = \"tess\"\ngroups = [\"dev\"]\nuid = " << kUid << "\n"
        << "[[identity]]\nname = \"ann\"\ngroups = [\"dba\"]\n"
        << "[[identity]]\nname = \"ben\"\ngroups = [\"dba\"]\n"
        << "[[request_rule]]\nresources = [\"db\"]\nrequesters = [\"group:dev\"]\n"
        << "max_duration = \"1h\"\n"
        << "[[approval_rule]]\nresources = [\"db\"]\napprover_groups = [\"dba\"]\napprovals = "
        << approvals << "\n";
  }
  int Collector(std::vector<std::string> args, std::string* out) {
    args.insert(args.begin(), {LATCH_COLLECTOR_BIN});
    args.insert(args.begin() + 2, {"--config", dir_ + "/collector.toml"});
    return RunTool(args, out);
  }
  // Polls until ConnectOnce() returns `want`; returns ms taken, or -1.
  double WaitForConnect(int want, int timeout_ms = 5000) {
    auto start = Clock::now();
    while (Clock::now() - start < std::chrono::milliseconds(timeout_ms)) {
      if (ConnectOnce() == want) {
        return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      }
    }
    return -1;
  }

  KernelSandbox sandbox_;
  std::string dir_, collector_keys_, agent_key_;
  int listener_ = -1;
  uint16_t port_ = 0;
  int collector_port_ = 0;
  int collector_port_b_ = 0;  // a second collector's (FailoverTest), listed after the first
  std::thread accept_thread_;
  std::atomic<bool> stop_accepting_{false};
  pid_t agent_ = -1, collector_ = -1;
  size_t decisions_ = 0;              // connects to the protected port: one decision event each
  uint16_t agent_resource_port_ = 0;  // the agent's own [[resource]] port (0: port_)
  std::string collector_settings_;    // more top-level collector settings
  std::string agent_settings_;        // more top-level agent settings
};

TEST_F(ChannelTest, EventsReachTheLedgerOnceAndGrantsReachTheKernel) {
  StartCollector();
  StartAgent();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(ConnectOnce(), EPERM);
  LedgerView v = WaitForEvents(20);
  ExpectExactlyOnce(v, 20);

  std::string out;
  ASSERT_EQ(Collector({"grant", "--host", "host-a", "--uid", std::to_string(kUid), "--resource",
                       "9", "--for", "60"},
                      &out),
            0)
      << out;
  double ms = WaitForConnect(0);
  ASSERT_GE(ms, 0) << "grant never reached the kernel: " << Slurp(dir_ + "/agent.log");
  ASSERT_EQ(Collector({"revoke", "--id", "1", "--reason", "test"}, &out), 0) << out;
  ASSERT_GE(WaitForConnect(EPERM), 0) << "revocation never reached the kernel";
  // Every connect above was a decision; all of them, once each.
  ConnectMany(50);
  v = WaitForEvents(decisions_);
  ExpectExactlyOnce(v, decisions_);
  // The agent's metrics say so too: a grant set applied, receipts verified,
  // nothing left unacknowledged once the ledger has it all.
  std::string m = MetricsOnceSpoolIsEmpty();
  EXPECT_NE(m.find("latch_agent_spool_records 0\n"), std::string::npos) << m;
  EXPECT_EQ(m.find("latch_agent_receipts_verified_total 0\n"), std::string::npos) << m;
  EXPECT_NE(m.find("latch_agent_receipts_rejected_total 0\n"), std::string::npos) << m;
  EXPECT_EQ(m.find("latch_agent_grant_set_version 0\n"), std::string::npos) << m;
  EXPECT_EQ(m.find("latch_agent_checkpoint_size 0\n"), std::string::npos) << m;
  auto has = [&](const char* what) {
    return std::find(v.workflow.begin(), v.workflow.end(), what) != v.workflow.end();
  };
  std::string kinds;
  for (auto& w : v.workflow) kinds += w + " ";
  SCOPED_TRACE("workflow records: " + kinds);
  EXPECT_TRUE(has("agentConnected"));
  EXPECT_FALSE(has("agentAlarm"));
  EXPECT_EQ(Slurp(dir_ + "/agent.log").find("ALARM"), std::string::npos)
      << Slurp(dir_ + "/agent.log");
  EXPECT_TRUE(has("grantIssued"));
  EXPECT_TRUE(has("grantRevoked"));
  EXPECT_TRUE(has("grantSetApplied"));
}

// A steady stream of connects from a child (a few hundred a second) until
// StopStream(); each is one decision event. By default from the sandbox's
// cgroup (host-a's agent sees it); several streams may run at once.
class StreamingChannelTest : public ChannelTest {
 protected:
  void StartStream(const std::string& cgroup = "") {
    const std::string procs = (cgroup.empty() ? sandbox_.cgroup() : cgroup) + "/cgroup.procs";
    int fds[2];
    ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    const pid_t pid = ::fork();
    if (pid == 0) {
      if (!JoinCgroupAs(procs, kUid)) ::_exit(100);
      static volatile sig_atomic_t stop = 0;
      ::signal(SIGTERM, [](int) { stop = 1; });
      uint64_t n = 0;
      while (!stop) {
        int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a = Loopback4(port_);
        ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
        ::close(s);
        ++n;
        ::usleep(2000);
      }
      (void)!::write(fds[1], &n, sizeof(n));
      ::_exit(0);
    }
    ::close(fds[1]);
    streams_.push_back({pid, fds[0]});
  }
  void StopStream() {
    for (Stream& st : streams_) {
      ::kill(st.pid, SIGTERM);
      uint64_t n = 0;
      EXPECT_EQ(::read(st.pipe, &n, sizeof(n)), static_cast<ssize_t>(sizeof(n)));
      ::close(st.pipe);
      ::waitpid(st.pid, nullptr, 0);
      decisions_ += n;
    }
    streams_.clear();
  }
  void KillStreams() {
    for (Stream& st : streams_) {
      Kill(&st.pid);
      ::close(st.pipe);
    }
    streams_.clear();
  }
  // Kills `which` (agent or collector) with SIGKILL at a random moment,
  // `times` times, restarting it each time, while the stream runs.
  void KillLoop(bool agent, int times) {
    std::mt19937 rng(static_cast<uint32_t>(::getpid()));
    std::uniform_int_distribution<int> pause_ms(20, 400);
    StartStream();
    for (int i = 0; i < times; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
      if (agent) {
        Kill(&agent_);
        std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng) / 4));
        StartAgent();
      } else {
        Kill(&collector_);
        std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng) / 4));
        StartCollector();
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    StopStream();
    LedgerView v = WaitForEvents(decisions_, 60);
    ExpectExactlyOnce(v, decisions_);
    std::string out;
    EXPECT_EQ(RunTool({LATCH_LEDGER_BIN, "verify", dir_ + "/collector/ledger"}, &out), 0) << out;
    EXPECT_EQ(Slurp(dir_ + "/agent.log").find("ALARM"), std::string::npos)
        << Slurp(dir_ + "/agent.log");
  }
  struct Stream {
    pid_t pid = -1;
    int pipe = -1;  // the child writes its count of connects here
  };
  std::vector<Stream> streams_;
};

TEST_F(StreamingChannelTest, CollectorKilledTwentyTimesLosesNothing) {
  StartCollector();
  StartAgent();
  KillLoop(/*agent=*/false, 20);
}

TEST_F(StreamingChannelTest, AgentKilledTwentyTimesLosesNothing) {
  StartCollector();
  StartAgent();
  KillLoop(/*agent=*/true, 20);
}

TEST_F(ChannelTest, ApprovedRequestBecomesAGrantInTheKernel) {
  WritePolicy(/*approvals=*/2);
  collector_settings_ = "policy = \"" + dir_ + "/policy.toml\"\n";
  WriteCollectorConfig(agent_key_);
  StartCollector();
  StartAgent();
  std::string out;
  ASSERT_EQ(Collector({"request", "--as", "tess", "--resource", "db", "--for", "10m", "--reason",
                       "debug the nightly job"},
                      &out),
            0)
      << out;
  EXPECT_EQ(ConnectOnce(), EPERM);
  // tess cannot approve her own; one dba approval is not enough.
  EXPECT_NE(Collector({"review", "--as", "tess", "--id", "1", "--approve"}, &out), 0);
  ASSERT_EQ(Collector({"review", "--as", "ann", "--id", "1", "--approve"}, &out), 0) << out;
  EXPECT_NE(out.find("\"pending\""), std::string::npos) << out;
  EXPECT_EQ(ConnectOnce(), EPERM);
  ASSERT_EQ(Collector({"review", "--as", "ben", "--id", "1", "--approve", "--comment", "ok"}, &out),
            0)
      << out;
  EXPECT_NE(out.find("\"approved\""), std::string::npos) << out;
  ASSERT_GE(WaitForConnect(0), 0) << Slurp(dir_ + "/agent.log");
  LedgerView v = WaitForEvents(decisions_);
  ExpectExactlyOnce(v, decisions_);
  std::string kinds;
  for (auto& w : v.workflow) kinds += w + " ";
  for (const char* want : {"policyLoaded", "requestCreated", "requestReviewed", "grantIssued",
                           "requestDecided", "grantSetApplied"}) {
    EXPECT_NE(kinds.find(want), std::string::npos) << want << " missing from: " << kinds;
  }
}

// End to end through the HTTPS API with latchctl and a real agent: a request,
// self-approval refused, approval, the connect allowed, the grant's expiry in
// the kernel, the connect denied; then the audit trail, every step of it
// found by the events query and proven against the signed checkpoint.
TEST_F(ChannelTest, RequestApprovalUseExpiryAndTheTrailWithProofs) {
  WritePolicy(/*approvals=*/1);
  const std::string tess_token = "tess-token-e2e-0123456789";
  const std::string ann_token = "ann-token-e2e-0123456789";
  auto hash = [](const std::string& t) {
    return tlog::HexEncode(
        tlog::Sha256::Of({reinterpret_cast<const uint8_t*>(t.data()), t.size()}));
  };
  int api_port = FreeLoopbackPort();
  collector_settings_ = "policy = \"" + dir_ +
                        "/policy.toml\"\n[api]\nlisten = \"127.0.0.1:" + std::to_string(api_port) +
                        "\"\n[[api_token]]\nidentity = \"tess\"\nsha256 = \"" + hash(tess_token) +
                        "\"\n[[api_token]]\nidentity = \"ann\"\nsha256 = \"" + hash(ann_token) +
                        "\"\n";
  WriteCollectorConfig(agent_key_);
  StartCollector();
  StartAgent();
  std::string ledger_key = collector_keys_.substr(collector_keys_.find("ledger_key = \"") + 14);
  ledger_key = ledger_key.substr(0, ledger_key.find('"'));
  std::string out;
  auto latchctl = [&](const std::string& token, std::vector<std::string> args) {
    std::vector<std::string> argv = {LATCHCTL_BIN,
                                     "--server",
                                     "https://localhost:" + std::to_string(api_port),
                                     "--ca",
                                     dir_ + "/collector/api.crt",
                                     "--ledger-key",
                                     ledger_key};
    argv.insert(argv.begin() + 1, "--token-file");
    argv.insert(argv.begin() + 2, dir_ + "/token");
    std::ofstream(dir_ + "/token") << token << "\n";
    argv.insert(argv.end(), args.begin(), args.end());
    ::setenv("HOME", dir_.c_str(), 1);
    return RunTool(argv, &out);
  };

  EXPECT_EQ(ConnectOnce(), EPERM);  // before any request
  ASSERT_EQ(latchctl(tess_token, {"request", "db", "--for", "4s", "--reason", "fix the replica"}),
            0)
      << out;
  EXPECT_EQ(latchctl(tess_token, {"approve", "1"}), 1) << out;  // her own: refused
  ASSERT_EQ(latchctl(ann_token, {"approve", "1", "--comment", "go"}), 0) << out;
  ASSERT_NE(out.find("approved (grant 1)"), std::string::npos) << out;
  ASSERT_GE(WaitForConnect(0), 0) << "the approved grant did not open the port";
  // What tess does under the grant is on the record too (activity capture).
  pid_t command = ::fork();
  if (command == 0) {
    if (!JoinCgroupAs(sandbox_.cgroup() + "/cgroup.procs", kUid)) ::_exit(100);
    ::execl("/bin/true", "true", "latch-e2e-marker", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::waitpid(command, nullptr, 0);
  ASSERT_GE(WaitForConnect(EPERM, 10000), 0) << "the grant did not end";

  // Everything about grant 1, from the request to the expiry, each result
  // proven; the index follows the ledger, so ask until the story is whole.
  const std::vector<std::string> story = {"requestCreated", "requestReviewed", "grantIssued",
                                          "requestDecided", "grantSetApplied", "allow",
                                          "exec",           "grantExpired"};
  auto deadline = Clock::now() + std::chrono::seconds(20);
  bool whole = false;
  while (!whole && Clock::now() < deadline) {
    int rc = latchctl(ann_token, {"events", "--grant", "1"});
    ASSERT_EQ(rc, 0) << out;
    whole = true;
    for (const auto& step : story) whole &= out.find(step) != std::string::npos;
    if (!whole) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(whole) << out;
  // The host's application of the end (the set that took grant 1 out of its
  // kernel) is part of the story too: a second grantSetApplied (issue 16).
  for (deadline = Clock::now() + std::chrono::seconds(20);
       Count(out, "grantSetApplied") < 2 && Clock::now() < deadline;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    ASSERT_EQ(latchctl(ann_token, {"events", "--grant", "1"}), 0) << out;
  }
  EXPECT_GE(Count(out, "grantSetApplied"), 2u) << out;
  EXPECT_NE(out.find("each verified against the signed checkpoint"), std::string::npos) << out;
  // The table says what the holder did in a few words.
  EXPECT_NE(out.find("exec true latch-e2e-marker"), std::string::npos) << out;
  EXPECT_NE(out.find("connect 127.0.0.1:" + std::to_string(port_) + " ok"), std::string::npos)
      << out;
  // The command, with its arguments, found by its grant and proven.
  ASSERT_EQ(latchctl(ann_token, {"--json", "events", "--grant", "1", "--kind", "exec"}), 0) << out;
  auto execs = nlohmann::json::parse(out);
  EXPECT_TRUE(execs["verified"].get<bool>());
  EXPECT_NE(execs.dump().find("latch-e2e-marker"), std::string::npos) << out;
  // The denials on the host, before the grant and after it ended, are there too.
  ASSERT_EQ(latchctl(ann_token, {"--json", "events", "--host", "host-a", "--verdict", "deny"}), 0)
      << out;
  auto denials = nlohmann::json::parse(out);
  EXPECT_TRUE(denials["verified"].get<bool>());
  EXPECT_GE(denials["events"].size(), 2u) << out;
  // The collector's metrics say when the agent was last heard from.
  auto metrics =
      latch::testing::HttpsCall(static_cast<uint16_t>(api_port), dir_ + "/collector/api.crt",
                                boost::beast::http::verb::get, "/metrics", ann_token);
  ASSERT_EQ(metrics.status, 200);
  const std::string heard = "latch_collector_agent_last_heard_seconds{host=\"host-a\"} ";
  size_t at = metrics.body.find(heard);
  ASSERT_NE(at, std::string::npos) << metrics.body;
  int64_t last_heard = std::strtoll(metrics.body.c_str() + at + heard.size(), nullptr, 10);
  EXPECT_LE(std::abs(last_heard - static_cast<int64_t>(::time(nullptr))), 30) << metrics.body;
  // tess sees her own story, and nobody else's.
  ASSERT_EQ(latchctl(tess_token, {"events", "--grant", "1"}), 0) << out;
  EXPECT_NE(out.find("grantExpired"), std::string::npos) << out;
  // Her denials too, before the grant and after it ended: the agent named
  // her as the holder of the uid (issue 16).
  ASSERT_EQ(latchctl(tess_token, {"--json", "events", "--user", "tess", "--verdict", "deny"}), 0)
      << out;
  auto hers = nlohmann::json::parse(out);
  EXPECT_TRUE(hers["verified"].get<bool>());
  EXPECT_GE(hers["events"].size(), 2u) << out;
  EXPECT_EQ(latchctl(tess_token, {"events", "--user", "ann"}), 1) << out;
}

// Rotating the collector's grant key on a live system: the agent learns the
// successor first, the collector switches, and the grant in force never stops
// working; revocations and new grants, signed by the new key, still reach the
// kernel.
TEST_F(ChannelTest, GrantKeyRotationWithoutAnEnforcementGap) {
  StartCollector();
  StartAgent();
  std::string out;
  ASSERT_EQ(Collector({"grant", "--host", "host-a", "--uid", std::to_string(kUid), "--resource",
                       "9", "--for", "600"},
                      &out),
            0)
      << out;
  ASSERT_GE(WaitForConnect(0), 0);
  ASSERT_EQ(Collector({"grant-key", "--next"}, &out), 0) << out;
  std::string next = out.substr(out.find("next grant key: ") + 16);
  next = next.substr(0, next.find('\n'));
  // The agent trusts both keys; its restart leaves the guard attached.
  std::string config = Slurp(dir_ + "/agent.toml");
  size_t at = config.find("grant_key = \"");
  ASSERT_NE(at, std::string::npos);
  size_t end = config.find('\n', at);
  std::string old_line = config.substr(at, end - at);
  std::string old_key = old_line.substr(13, old_line.size() - 14);
  config.replace(at, end - at, "grant_key = [\"" + old_key + "\", \"" + next + "\"]");
  std::ofstream(dir_ + "/agent.toml") << config;
  Kill(&agent_, SIGTERM);
  EXPECT_EQ(ConnectOnce(), 0) << "the grant stopped while the agent was down";
  StartAgent();
  EXPECT_EQ(ConnectOnce(), 0);
  // The collector switches keys while stopped; --promote refuses while it runs.
  EXPECT_NE(Collector({"grant-key", "--promote"}, &out), 0);
  Kill(&collector_, SIGTERM);
  ASSERT_EQ(Collector({"grant-key", "--promote"}, &out), 0) << out;
  EXPECT_EQ(ConnectOnce(), 0);
  StartCollector();
  EXPECT_EQ(ConnectOnce(), 0) << "the old key's grant stopped after the switch";
  // Sets signed by the new key still revoke and grant.
  ASSERT_EQ(Collector({"revoke", "--id", "1", "--reason", "rotation test"}, &out), 0) << out;
  ASSERT_GE(WaitForConnect(EPERM), 0) << Slurp(dir_ + "/agent.log");
  ASSERT_EQ(Collector({"grant", "--host", "host-a", "--uid", std::to_string(kUid), "--resource",
                       "9", "--for", "600"},
                      &out),
            0)
      << out;
  ASSERT_GE(WaitForConnect(0), 0) << Slurp(dir_ + "/agent.log");
  EXPECT_EQ(Slurp(dir_ + "/agent.log").find("refused"), std::string::npos)
      << Slurp(dir_ + "/agent.log");
  LedgerView v = WaitForEvents(decisions_);
  ExpectExactlyOnce(v, decisions_);
  EXPECT_GE(std::count(v.workflow.begin(), v.workflow.end(), "grantKeyInUse"), 2);
}

TEST_F(ChannelTest, GrantEndsInTheKernelAndIsRecordedAsExpired) {
  StartCollector();
  StartAgent();
  std::string out;
  ASSERT_EQ(Collector({"grant", "--host", "host-a", "--uid", std::to_string(kUid), "--resource",
                       "9", "--for", "2"},
                      &out),
            0)
      << out;
  ASSERT_GE(WaitForConnect(0), 0);
  ASSERT_GE(WaitForConnect(EPERM, 5000), 0) << "the grant did not end";
  auto deadline = Clock::now() + std::chrono::seconds(10);
  LedgerView v;
  while (Clock::now() < deadline) {
    v = ReadLedger();
    if (std::find(v.workflow.begin(), v.workflow.end(), "grantExpired") != v.workflow.end()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(std::find(v.workflow.begin(), v.workflow.end(), "grantExpired"), v.workflow.end());
  v = WaitForEvents(decisions_);
  ExpectExactlyOnce(v, decisions_);
}

TEST_F(ChannelTest, KilledAgentOrCollectorLosesNothing) {
  StartCollector();
  StartAgent();
  for (int round = 0; round < 3; ++round) {
    ConnectMany(200);
    Kill(&agent_);
    ConnectMany(100);  // the pinned guard decides; the pinned ring keeps the events
    StartAgent();
    ConnectMany(200);
    Kill(&collector_);
    ConnectMany(100);  // the spool keeps them
    StartCollector();
  }
  LedgerView v = WaitForEvents(decisions_, 60);
  ExpectExactlyOnce(v, decisions_);
  std::string out;
  EXPECT_EQ(RunTool({LATCH_LEDGER_BIN, "verify", dir_ + "/collector/ledger"}, &out), 0) << out;
}

// Issue 13.4: with more than a window's worth of acknowledged records in the
// spool's current segment, a restarted agent resent them, ignored the
// receipts (they named a sequence outside its window) and reset its session
// every 3 s for ever: nothing new reached the ledger. Ten restarts, TERM and
// kill -9 in turn, after 50,000+ acknowledged records: each time new records
// arrive within 5 s, no session is reset for want of a receipt, and a restart
// adds one workflow record (agentConnected), not one per reset.
TEST_F(ChannelTest, RestartsAfterManyAcknowledgedRecordsKeepDelivering) {
  // Room in the kernel's ring for the whole burst: this test is about
  // delivery after restarts, not about losses under a flood (counted and
  // tested elsewhere).
  agent_settings_ = "ring_buffer_bytes = 16777216\n";
  WriteAgentConfig();
  StartCollector();
  StartAgent();
  ASSERT_EQ(ConnectMany(52000), 52000);
  LedgerView v = WaitForEvents(decisions_, 120);
  ASSERT_EQ(v.events.size(), decisions_) << Slurp(dir_ + "/agent.log");
  for (int round = 0; round < 10; ++round) {
    SCOPED_TRACE("restart " + std::to_string(round));
    Kill(&agent_, round % 2 == 0 ? SIGTERM : SIGKILL);
    size_t workflow_before = ReadLedger().workflow.size();
    size_t resets_before = Count(Slurp(dir_ + "/agent.log"), "no receipt in time");
    StartAgent();
    ConnectMany(10);
    auto start = Clock::now();
    v = WaitForEvents(decisions_, 5);
    double took = std::chrono::duration<double>(Clock::now() - start).count();
    ASSERT_EQ(v.events.size(), decisions_) << "new records did not reach the ledger in 5 s\n"
                                           << Slurp(dir_ + "/agent.log");
    EXPECT_LT(took, 5.0);
    // Let a few receipt timeouts pass: a stalled link would reset by now.
    std::this_thread::sleep_for(std::chrono::milliseconds(round == 0 ? 4000 : 500));
    v = ReadLedger();
    EXPECT_LE(v.workflow.size() - workflow_before, 1u);
    EXPECT_EQ(Count(Slurp(dir_ + "/agent.log"), "no receipt in time"), resets_before);
  }
  ExpectExactlyOnce(v, decisions_);
  EXPECT_EQ(Slurp(dir_ + "/agent.log").find("ALARM"), std::string::npos);
}

// Issue 13.5: the spool's disk fills (a 1 MiB tmpfs, the collector down). The
// agent stays up, enforcing and serving metrics, says so, and counts what
// does not fit as lost; when space returns it resumes by itself, and the
// ledger then holds every decision once, as an event or in a loss count.
// Before, the agent exited 1 on ENOSPC and restart-looped, and sent records
// twice afterwards.
TEST_F(ChannelTest, FullSpoolDiskDegradesAndResumes) {
  std::string spool = dir_ + "/agent-state/spool";
  fs::create_directories(spool);
  ASSERT_EQ(::mount("tmpfs", spool.c_str(), "tmpfs", 0, "size=1m"), 0) << strerror(errno);
  struct Unmount {
    std::string dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{spool};
  StartAgent();
  ASSERT_EQ(ConnectMany(60000), 60000);
  auto metrics = [&] {
    return LoopbackHttpGet(MetricsPortFromLog(Slurp(dir_ + "/agent.log")), "/metrics");
  };
  auto wait_for = [&](const std::string& line) {
    auto deadline = Clock::now() + std::chrono::seconds(20);
    std::string m;
    while (Clock::now() < deadline) {
      m = metrics();
      if (m.find(line) != std::string::npos) return m;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "no '" << line << "' in\n" << m << Slurp(dir_ + "/agent.log");
    return m;
  };
  std::string m = wait_for("latch_agent_spool_writable 0\n");
  EXPECT_EQ(::waitpid(agent_, nullptr, WNOHANG), 0) << "the agent exited";
  EXPECT_EQ(ConnectOnce(), EPERM);  // still enforcing
  EXPECT_NE(Slurp(dir_ + "/agent.log").find("spool cannot write"), std::string::npos);
  // Space returns: the agent resumes without a restart.
  ASSERT_EQ(::mount("tmpfs", spool.c_str(), "tmpfs", MS_REMOUNT, "size=256m"), 0);
  wait_for("latch_agent_spool_writable 1\n");
  ConnectMany(10);
  StartCollector();
  auto deadline = Clock::now() + std::chrono::seconds(60);
  LedgerView v;
  uint64_t accounted = 0;
  while (Clock::now() < deadline) {
    v = ReadLedger();
    accounted = v.events.size() + v.lost[static_cast<int>(schema::LossKind::RING_BUFFER_FULL)] +
                v.lost[static_cast<int>(schema::LossKind::SPOOL_FULL)];
    if (accounted >= decisions_) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(accounted, decisions_)
      << "events " << v.events.size() << ", ring losses "
      << v.lost[static_cast<int>(schema::LossKind::RING_BUFFER_FULL)] << ", spool losses "
      << v.lost[static_cast<int>(schema::LossKind::SPOOL_FULL)];
  EXPECT_GT(v.events.size(), 0u);
  EXPECT_LT(v.events.size(), decisions_) << "the disk was meant to overflow";
  size_t dup = 0;
  for (auto& [k, n] : v.agent_records) dup += n > 1;
  EXPECT_EQ(dup, 0u);
  EXPECT_EQ(::waitpid(agent_, nullptr, WNOHANG), 0) << "the agent exited";
  EXPECT_EQ(Count(Slurp(dir_ + "/agent.log"), "guard adopted"), 0u) << "the agent restarted";
}

// Issue 13.5: bytes overwritten in the middle of a spool segment while the
// agent was down. The restarted agent skips to the next good frame and puts
// a spoolCorrupt loss record in place of what was lost; the collector takes
// that declared jump, and every decision is in the ledger once, as an event
// or in the loss count (before: half the file cut as a "torn tail", nothing
// counted).
TEST_F(ChannelTest, DamagedSpoolIsSkippedAndTheLossRecorded) {
  StartAgent();  // the collector is down: everything stays in the spool
  ASSERT_EQ(ConnectMany(5000), 5000);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  Kill(&agent_, SIGTERM);
  std::string segment;
  for (const auto& e : fs::directory_iterator(dir_ + "/agent-state/spool")) {
    if (e.path().extension() == ".seg") segment = e.path();
  }
  ASSERT_FALSE(segment.empty());
  {
    std::fstream f(segment, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(segment) / 2));
    f << std::string(24, '\x5a');
  }
  StartCollector();
  StartAgent();
  auto deadline = Clock::now() + std::chrono::seconds(30);
  LedgerView v;
  uint64_t corrupt = 0;
  while (Clock::now() < deadline) {
    v = ReadLedger();
    corrupt = v.lost[static_cast<int>(schema::LossKind::SPOOL_CORRUPT)];
    if (v.events.size() + corrupt >= decisions_) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(v.events.size() + corrupt, decisions_) << Slurp(dir_ + "/agent.log");
  EXPECT_GE(corrupt, 1u);
  EXPECT_LE(corrupt, 2u);
  EXPECT_EQ(v.loss_records, 1u);
  EXPECT_NE(Slurp(dir_ + "/agent.log").find("spool segment is damaged"), std::string::npos);
  size_t dup = 0;
  for (auto& [k, n] : v.agent_records) dup += n > 1;
  EXPECT_EQ(dup, 0u);
}

// Issue 13.7: the guard uninstalled behind the running agent's back produced
// no log line. Now the agent notices within its check interval, alerts,
// records guardDetached in the ledger and attaches the guard again.
TEST_F(ChannelTest, AGuardUninstalledBehindTheAgentsBackIsNoticedAndPutBack) {
  StartCollector();
  StartAgent();
  ASSERT_EQ(ConnectOnce(), EPERM);
  std::string out;
  ASSERT_EQ(RunTool({LATCH_AGENT_BIN, "uninstall", "--config", dir_ + "/agent.toml"}, &out), 0);
  auto deadline = Clock::now() + std::chrono::seconds(10);
  LedgerView v;
  while (Clock::now() < deadline) {
    v = ReadLedger();
    if (!v.guard_events.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(v.guard_events.size(), 1u) << Slurp(dir_ + "/agent.log");
  EXPECT_EQ(v.guard_events[0], "reattached");
  std::string log = Slurp(dir_ + "/agent.log");
  EXPECT_NE(log.find("level=alert"), std::string::npos);
  EXPECT_NE(log.find("the guard was detached or replaced"), std::string::npos);
  EXPECT_EQ(ConnectOnce(), EPERM) << "enforcing again";
  EXPECT_TRUE(fs::exists(sandbox_.pin_dir() + "/link_connect4"));
  std::string m = LoopbackHttpGet(MetricsPortFromLog(log), "/metrics");
  EXPECT_NE(m.find("latch_agent_guard_intact 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("latch_agent_guard_detached_total 1\n"), std::string::npos) << m;
}

// A collector that is down is not a stalled link: the "stalled" alarm is for
// a collector that talks but whose receipts cannot be used (issue 13.4). Five
// receipt timeouts and more with nobody answering raise nothing, and the
// records arrive once it is back.
TEST_F(ChannelTest, ACollectorThatIsDownIsNotAStall) {
  StartAgent();
  ConnectMany(10);
  // Five receipt timeouts (3 s) between failovers (6 s): about 33 s.
  std::this_thread::sleep_for(std::chrono::seconds(36));
  StartCollector();
  LedgerView v = WaitForEvents(decisions_, 20);
  ExpectExactlyOnce(v, decisions_);
  std::string log = Slurp(dir_ + "/agent.log");
  EXPECT_EQ(log.find("stalled"), std::string::npos) << log;
  EXPECT_EQ(log.find("ALARM"), std::string::npos) << log;
}

// Issue 14: a collector frozen (SIGSTOP) for longer than agent_silent_after_ms
// recorded agentSilent, on resuming, for an agent that had been sending the
// whole time. Its own pause is not an agent's silence.
TEST_F(ChannelTest, ACollectorsOwnPauseIsNotAnAgentsSilence) {
  collector_settings_ = "agent_silent_after_ms = 2000\n";
  WriteCollectorConfig(agent_key_);
  StartCollector();
  StartAgent();
  ConnectMany(5);
  ASSERT_EQ(WaitForEvents(decisions_).events.size(), decisions_);
  ASSERT_EQ(::kill(collector_, SIGSTOP), 0);
  std::this_thread::sleep_for(std::chrono::seconds(4));
  ASSERT_EQ(::kill(collector_, SIGCONT), 0);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  LedgerView v = ReadLedger();
  for (const std::string& w : v.workflow) EXPECT_NE(w, "agentSilent");
  std::string log = Slurp(dir_ + "/collector.log");
  EXPECT_NE(log.find("this collector was paused"), std::string::npos) << log;
}

// A session that times out while its batches wait, unread, at a paused (or
// merely slow) collector must not send them again: the new session sends
// nothing until the collector's Welcome says what it holds, and the Welcome
// comes after those batches. Before, the new Hello was followed at once by
// the whole window again (the lossy link test's ~8,000 duplicates of 16,000
// on a loaded machine).
TEST_F(ChannelTest, ASessionThatTimesOutResendsNothingTheCollectorHas) {
  StartCollector();
  StartAgent();
  ConnectMany(5);
  ASSERT_EQ(WaitForEvents(decisions_).events.size(), decisions_);
  ASSERT_EQ(::kill(collector_, SIGSTOP), 0);
  ConnectMany(200);
  // Past the 3 s receipt timeout (a new session), short of the 6 s failover.
  std::this_thread::sleep_for(std::chrono::milliseconds(4500));
  ASSERT_EQ(::kill(collector_, SIGCONT), 0);
  LedgerView v = WaitForEvents(decisions_);
  ExpectExactlyOnce(v, decisions_);
  auto metric = [](const std::string& m, const std::string& name) {
    size_t at = m.find("\n" + name + " ");
    return at == std::string::npos ? -1 : std::atoll(m.c_str() + at + name.size() + 2);
  };
  std::string m = MetricsOnceSpoolIsEmpty();
  ASSERT_NE(m.find("latch_agent_spool_records 0\n"), std::string::npos) << m;
  EXPECT_GE(metric(m, "latch_agent_collector_sessions_total"), 2) << m;  // the timeout happened
  EXPECT_GT(metric(m, "latch_agent_records_acknowledged_total"), 0) << m;
  EXPECT_EQ(metric(m, "latch_agent_records_sent_total"),
            metric(m, "latch_agent_records_acknowledged_total"))
      << m;
}

// The narrowest moment of all: the agent dies after its spool has the events
// and before it releases them in the ring, so they are in both places. The
// restarted agent must send each of them once (it skips what its spool's
// mark says was spooled), not twice.
TEST_F(ChannelTest, AgentDyingBetweenSpoolAndRingSendsEachEventOnce) {
  StartCollector();
  ::setenv("LATCH_AGENT_TEST_DIE_BEFORE_RING_RELEASE", "1", 1);
  StartAgent();
  ::unsetenv("LATCH_AGENT_TEST_DIE_BEFORE_RING_RELEASE");
  ConnectMany(50);
  int status = 0;
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (::waitpid(agent_, &status, WNOHANG) == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 9) << Slurp(dir_ + "/agent.log");
  agent_ = -1;
  ConnectMany(50);
  StartAgent();
  ConnectMany(50);
  LedgerView v = WaitForEvents(decisions_, 30);
  ExpectExactlyOnce(v, decisions_);
  EXPECT_NE(Slurp(dir_ + "/agent.log").find("ring records the previous run had already spooled"),
            std::string::npos)
      << Slurp(dir_ + "/agent.log");
}

// Started by systemd with Type=notify (NOTIFY_SOCKET set), the collector says
// READY=1 once it listens, and STOPPING=1 when it stops.
TEST_F(ChannelTest, CollectorTellsSystemdWhenReady) {
  latch::testing::NotifySocket systemd(dir_ + "/notify");
  ASSERT_FALSE(systemd.path().empty());
  ::setenv("NOTIFY_SOCKET", systemd.path().c_str(), 1);
  StartCollector();
  ::unsetenv("NOTIFY_SOCKET");
  EXPECT_NE(systemd.Receive().find("READY=1"), std::string::npos);
  Kill(&collector_, SIGTERM);
  EXPECT_NE(systemd.Receive().find("STOPPING=1"), std::string::npos);
}

TEST_F(ChannelTest, FailsOverToTheNextEndpoint) {
  // The first endpoint has nobody behind it; the agent gives up on it after
  // its silence limit and delivers through the second.
  uint16_t dead = FreeLoopbackPort();
  std::string config = Slurp(dir_ + "/agent.toml");
  std::string live = "endpoints = [\"tcp://127.0.0.1:" + std::to_string(collector_port_) + "\"]";
  size_t at = config.find(live);
  ASSERT_NE(at, std::string::npos);
  config.replace(at, live.size(),
                 "endpoints = [\"tcp://127.0.0.1:" + std::to_string(dead) +
                     "\", \"tcp://127.0.0.1:" + std::to_string(collector_port_) + "\"]");
  std::ofstream(dir_ + "/agent.toml") << config;
  StartCollector();
  StartAgent();
  for (int i = 0; i < 5; ++i) EXPECT_EQ(ConnectOnce(), EPERM);
  LedgerView v = WaitForEvents(decisions_, 30);
  ExpectExactlyOnce(v, decisions_);
  EXPECT_NE(Slurp(dir_ + "/agent.log")
                .find("endpoint=tcp://127.0.0.1:" + std::to_string(collector_port_)),
            std::string::npos)
      << Slurp(dir_ + "/agent.log");
}

TEST_F(ChannelTest, RolledBackLedgerIsCaughtByTheAgent) {
  StartCollector();
  StartAgent();
  ConnectMany(10);
  WaitForEvents(10);
  Kill(&collector_);
  fs::copy(dir_ + "/collector/ledger", dir_ + "/ledger-old", fs::copy_options::recursive);
  StartCollector();
  ConnectMany(10);
  WaitForEvents(20);
  // Let the agent hold a checkpoint past the copy, then roll the ledger back.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  Kill(&collector_);
  fs::remove_all(dir_ + "/collector/ledger");
  fs::rename(dir_ + "/ledger-old", dir_ + "/collector/ledger");
  StartCollector();
  ConnectMany(5);
  auto deadline = Clock::now() + std::chrono::seconds(15);
  while (Clock::now() < deadline &&
         Slurp(dir_ + "/collector.log")
                 .find("ALARM from an agent: a receipt did not hold\" host=host-a") ==
             std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(Slurp(dir_ + "/agent.log").find("kind=rolled_back"), std::string::npos)
      << Slurp(dir_ + "/agent.log");
  EXPECT_NE(Slurp(dir_ + "/collector.log")
                .find("ALARM from an agent: a receipt did not hold\" host=host-a"),
            std::string::npos);
}

}  // namespace
// Issue 16: the collector's policy is the one source of resources. This
// agent's own list protects another port than the policy's: once the
// collector is reached the policy's port is enforced, the difference is an
// alert and an alarm on record, and a denial no grant covers names the
// identity that holds the uid. The signed set is kept: with the guard gone
// (as after a reboot) and the collector down, the next start enforces it.
TEST_F(ChannelTest, ThePolicysResourcesWinAndAreKeptForAStartWithoutTheCollector) {
  agent_resource_port_ = port_ == 65535 ? 65534 : static_cast<uint16_t>(port_ + 1);
  WriteAgentConfig();
  WritePolicy(/*approvals=*/1);
  collector_settings_ = "policy = \"" + dir_ + "/policy.toml\"\n";
  WriteCollectorConfig(agent_key_);
  StartCollector();
  StartAgent();
  ASSERT_GE(WaitForConnect(EPERM), 0) << Slurp(dir_ + "/agent.log");
  LedgerView v;
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline) {
    v = ReadLedger();
    if (!v.alarms.empty() && !v.denied.empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(v.alarms, std::vector<std::string>{"resource_mismatch"});
  ASSERT_FALSE(v.denied.empty());
  EXPECT_EQ(v.denied.back(), "tess");
  std::string log = Slurp(dir_ + "/agent.log");
  EXPECT_NE(log.find("differs from the collector's"), std::string::npos) << log;
  EXPECT_NE(log.find("resource 9: local ports " + std::to_string(agent_resource_port_) +
                     ", signed ports " + std::to_string(port_)),
            std::string::npos)
      << log;
  EXPECT_NE(Slurp(dir_ + "/collector.log").find("differs from the policy's"), std::string::npos);

  Kill(&agent_);
  Kill(&collector_);
  std::string out;
  ASSERT_EQ(RunTool({LATCH_AGENT_BIN, "uninstall", "--config", dir_ + "/agent.toml"}, &out), 0)
      << out;
  StartAgent();
  EXPECT_EQ(ConnectOnce(), EPERM);
  log = Slurp(dir_ + "/agent.log");
  EXPECT_NE(log.find("resources from the kept signed policy"), std::string::npos) << log;

  // A kept set that does not hold (cut short by a full disk, a byte
  // changed, another file put there): not trusted, said loudly, and the
  // agent starts with its own list, which the kernel enforces.
  const std::string kept = dir_ + "/agent-state/grant-set";
  const std::string good = Slurp(kept);
  ASSERT_GT(good.size(), 64u);
  std::string flipped = good;
  flipped[flipped.size() / 2] ^= 0x01;
  for (const std::string& damaged :
       {good.substr(0, good.size() / 2), flipped, std::string("\x00\xff not a grant set")}) {
    Kill(&agent_);
    ASSERT_EQ(RunTool({LATCH_AGENT_BIN, "uninstall", "--config", dir_ + "/agent.toml"}, &out), 0);
    std::ofstream(kept, std::ios::trunc | std::ios::binary) << damaged;
    const size_t before = Count(Slurp(dir_ + "/agent.log"), "the kept grant set does not hold");
    StartAgent();
    auto until = Clock::now() + std::chrono::seconds(10);
    while (Count(Slurp(dir_ + "/agent.log"), "the kept grant set does not hold") == before &&
           Clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_GT(Count(Slurp(dir_ + "/agent.log"), "the kept grant set does not hold"), before)
        << "damaged at " << damaged.size() << " bytes";
    ++decisions_;
    EXPECT_EQ(ConnectFromCgroupAs(sandbox_.cgroup(), kUid, agent_resource_port_), EPERM)
        << "the agent's own list is not enforced";
  }
}

// Two collectors on one ledger in PostgreSQL (issue 17), with the agent
// listing both: the sequencer is killed with SIGKILL ten times at random
// moments during a steady stream of events and grants; the standby takes
// over each time (and the killed one comes back as the standby). Every event
// lands exactly once, every acknowledged grant is on record, the database's
// ledger verifies, the agent never alarms; the time from each kill to the
// agent's next verified receipt is printed.
class FailoverTest : public StreamingChannelTest {
 protected:
  void SetUp() override {
    LATCH_START_POSTGRES_OR_SKIP(cluster_);
    key_path_ = cluster_.dir() + "/ledger.key";
    collector_settings_ = "[storage]\npostgres = \"" + cluster_.Conninfo() + "\"\nkey = \"" +
                          key_path_ + "\"\nsequencer_wait_ms = 100\n";
    {
      std::ofstream f(cluster_.dir() + "/init.toml");
      f << "data_dir = \"" << cluster_.dir() << "/unused\"\norigin = \"test.example/ledger\"\n"
        << collector_settings_;
    }
    std::string out;
    ASSERT_EQ(
        RunTool({LATCH_COLLECTOR_BIN, "storage", "init", "--config", cluster_.dir() + "/init.toml"},
                &out),
        0)
        << out;
    ASSERT_NE(out.find("ready in the database"), std::string::npos) << out;
    StreamingChannelTest::SetUp();
    if (HasFatalFailure() || IsSkipped()) return;
    // The workflow through the API of whichever collector is the sequencer
    // (latchctl lists both); both serve the same certificate, kept beside them.
    api_port_ = FreeLoopbackPort();
    api_port_b_ = FreeLoopbackPort();
    WritePolicy(/*approvals=*/1);
    auto hash = [](const std::string& t) {
      return tlog::HexEncode(
          tlog::Sha256::Of({reinterpret_cast<const uint8_t*>(t.data()), t.size()}));
    };
    collector_settings_ = "policy = \"" + dir_ + "/policy.toml\"\n" + collector_settings_ +
                          "[api]\nlisten = \"127.0.0.1:" + std::to_string(api_port_) +
                          "\"\ncert = \"" + dir_ + "/api.crt\"\nkey = \"" + dir_ +
                          "/api.key\"\n[[api_token]]\nidentity = \"tess\"\nsha256 = \"" +
                          hash(kTessToken) + "\"\n[[api_token]]\nidentity = \"ann\"\nsha256 = \"" +
                          hash(kAnnToken) + "\"\n";
    WriteCollectorConfig(agent_key_);
    // The second collector: the same keys (copied, as an operator would),
    // its own data directory and endpoint.
    collector_port_b_ = FreeLoopbackPort();
    fs::create_directories(dir_ + "/collector-b");
    for (const auto& e : fs::directory_iterator(dir_ + "/collector")) {
      if (e.is_regular_file())
        fs::copy_file(e.path(), fs::path(dir_ + "/collector-b") / e.path().filename());
    }
    std::string config = Slurp(dir_ + "/collector.toml");
    config.replace(config.find(dir_ + "/collector\""), (dir_ + "/collector\"").size(),
                   dir_ + "/collector-b\"");
    const std::string port = "127.0.0.1:" + std::to_string(collector_port_);
    config.replace(config.find(port), port.size(),
                   "127.0.0.1:" + std::to_string(collector_port_b_));
    const std::string api = "127.0.0.1:" + std::to_string(api_port_);
    config.replace(config.find(api), api.size(), "127.0.0.1:" + std::to_string(api_port_b_));
    std::ofstream(dir_ + "/collector-b.toml") << config;
    WriteAgentConfig();  // both endpoints now
    // The second agent: host-b, in a sandbox of its own, listing both
    // collectors; both collectors enrol it.
    ASSERT_EQ(sandbox_b_.Create("latch-channel-b"), "");
    std::string agent = Slurp(dir_ + "/agent.toml");
    for (auto [from, to] : std::vector<std::pair<std::string, std::string>>{
             {"host_id = \"host-a\"", "host_id = \"host-b\""},
             {sandbox_.cgroup() + "\"", sandbox_b_.cgroup() + "\""},
             {sandbox_.pin_dir() + "\"", sandbox_b_.pin_dir() + "\""},
             {dir_ + "/agent-state\"", dir_ + "/agent-b-state\""}}) {
      const size_t at = agent.find(from);
      ASSERT_NE(at, std::string::npos) << from;
      agent.replace(at, from.size(), to);
    }
    std::ofstream(dir_ + "/agent-b.toml") << agent;
    ASSERT_EQ(RunTool({LATCH_AGENT_BIN, "key", "--config", dir_ + "/agent-b.toml"}, &out), 0)
        << out;
    const std::string enrol_b =
        "[[agent]]\nhost_id = \"host-b\"\ncurve_public_key = \"" + out.substr(0, 40) + "\"\n";
    std::ofstream(dir_ + "/collector.toml", std::ios::app) << enrol_b;
    std::ofstream(dir_ + "/collector-b.toml", std::ios::app) << enrol_b;
  }
  void StartAgentB() {
    const size_t before = Count(Slurp(dir_ + "/agent-b.log"), kGuardLogEntry);
    agent_b_ = Spawn(LATCH_AGENT_BIN, dir_ + "/agent-b.toml", dir_ + "/agent-b.log");
    auto deadline = Clock::now() + std::chrono::seconds(20);
    while (Count(Slurp(dir_ + "/agent-b.log"), kGuardLogEntry) == before &&
           Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_GT(Count(Slurp(dir_ + "/agent-b.log"), kGuardLogEntry), before)
        << "agent b did not start: " << Slurp(dir_ + "/agent-b.log");
  }
  // latchctl as `token`'s holder, against both collectors' APIs.
  int Latchctl(const std::string& token, std::vector<std::string> args, std::string* out) {
    std::string ledger_key = collector_keys_.substr(collector_keys_.find("ledger_key = \"") + 14);
    ledger_key = ledger_key.substr(0, ledger_key.find('"'));
    std::vector<std::string> argv = {LATCHCTL_BIN,
                                     "--server",
                                     "https://localhost:" + std::to_string(api_port_) +
                                         ",https://localhost:" + std::to_string(api_port_b_),
                                     "--ca",
                                     dir_ + "/api.crt",
                                     "--ledger-key",
                                     ledger_key,
                                     "--token-file",
                                     dir_ + "/" + token + ".token"};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunTool(argv, out);
  }
  // Requests, approvals and revokes in a loop on a thread of its own, each
  // counted once acknowledged, until `stop_workflow_`.
  struct WorkflowTally {
    std::map<uint64_t, std::string> requests;  // acknowledged: id -> reason
    int approved = 0, revoked = 0, attempts = 0;
  };
  void RunWorkflowLoop(WorkflowTally* tally) {
    std::ofstream(dir_ + "/tess.token") << kTessToken << "\n";
    std::ofstream(dir_ + "/ann.token") << kAnnToken << "\n";
    for (int i = 0; !stop_workflow_; ++i) {
      std::string out;
      const std::string reason = "failover loop " + std::to_string(i);
      ++tally->attempts;
      if (Latchctl("tess", {"request", "db", "--for", "10m", "--reason", reason}, &out) != 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      const uint64_t id = std::strtoull(out.c_str() + out.find("request ") + 8, nullptr, 10);
      EXPECT_EQ(tally->requests.count(id), 0u) << "request id " << id << " given twice: " << out;
      tally->requests[id] = reason;
      if (Latchctl("ann", {"approve", std::to_string(id), "--comment", "ok"}, &out) != 0) continue;
      ++tally->approved;
      const size_t at = out.find("(grant ");
      if (at == std::string::npos) continue;
      const std::string grant = std::to_string(std::strtoull(out.c_str() + at + 7, nullptr, 10));
      if (Latchctl("ann", {"revoke", grant, "--reason", "loop"}, &out) == 0) ++tally->revoked;
    }
  }
  static constexpr const char* kTessToken = "tess-token-failover-0123456789";
  static constexpr const char* kAnnToken = "ann-token-failover-0123456789";
  void TearDown() override {
    stop_workflow_ = true;
    if (workflow_.joinable()) workflow_.join();
    Kill(&agent_b_);
    if (!dir_.empty()) {
      std::string out;
      RunTool({LATCH_AGENT_BIN, "uninstall", "--config", dir_ + "/agent-b.toml"}, &out);
    }
    Kill(&collector_b_);
    KillStreams();  // still running if the test failed before StopStream
    StreamingChannelTest::TearDown();
  }
  std::string ConfigOf(int which) const {
    return dir_ + (which == 0 ? "/collector.toml" : "/collector-b.toml");
  }
  std::string LogOf(int which) const {
    return dir_ + (which == 0 ? "/collector.log" : "/collector-b.log");
  }
  pid_t& Pid(int which) { return which == 0 ? collector_ : collector_b_; }
  void SpawnCollector(int which) {
    Pid(which) = Spawn(LATCH_COLLECTOR_BIN, ConfigOf(which), LogOf(which));
  }
  // Whether collector `which` answers on its admin socket (only a sequencer does).
  bool Serving(int which) {
    std::string out;
    return RunTool({LATCH_COLLECTOR_BIN, "status", "--config", ConfigOf(which)}, &out) == 0 &&
           out.find("\"role\": \"sequencer\"") != std::string::npos;
  }
  // Whether collector `which` answers as a standby.
  bool Standby(int which) {
    std::string out;
    return RunTool({LATCH_COLLECTOR_BIN, "status", "--config", ConfigOf(which)}, &out) == 0 &&
           out.find("\"role\": \"standby\"") != std::string::npos;
  }
  // Starts collector `which` and waits until it serves (it is the sequencer).
  void StartSequencer(int which) {
    SpawnCollector(which);
    ASSERT_TRUE(WaitServing(which)) << Slurp(LogOf(which));
  }
  bool WaitServing(int which, int seconds = 30) {
    auto deadline = Clock::now() + std::chrono::seconds(seconds);
    while (!Serving(which) && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return Serving(which);
  }
  // Waits (up to `seconds`) until the agent's verified receipts pass `than`.
  bool WaitReceiptsAbove(uint64_t than, int seconds = 30) {
    auto deadline = Clock::now() + std::chrono::seconds(seconds);
    while (ReceiptsVerified() <= than && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return ReceiptsVerified() > than;
  }
  // The database's ledger once it holds every decision made (or after 60 s).
  LedgerView WaitForDatabaseEvents() {
    LedgerView v;
    auto deadline = Clock::now() + std::chrono::seconds(60);
    while (Clock::now() < deadline) {
      v = ReadDatabase();
      if (v.events.size() >= decisions_) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    return v;
  }
  uint64_t ReceiptsVerified(const std::string& log = "agent.log") {
    std::string m = LoopbackHttpGet(MetricsPortFromLog(Slurp(dir_ + "/" + log)), "/metrics");
    const std::string name = "\nlatch_agent_receipts_verified_total ";
    size_t at = m.find(name);
    return at == std::string::npos ? 0 : std::strtoull(m.c_str() + at + name.size(), nullptr, 10);
  }
  LedgerView ReadDatabase() {
    std::string text;
    tlog::NoteSigner signer;
    if (!storage::ReadWholeFile(key_path_, &text).ok()) return {};
    while (!text.empty() && text.back() == '\n') text.pop_back();
    if (!tlog::NoteSigner::Parse(text, &signer).ok()) return {};
    std::unique_ptr<ledger::postgres::PostgresLedger> l;
    if (!ledger::postgres::PostgresLedger::Open(cluster_.Conninfo(), "test", signer, &l).ok()) {
      return {};
    }
    return ReadLedgerView(l.get());
  }
  testing::PostgresCluster cluster_;
  std::string key_path_;
  pid_t collector_b_ = -1, agent_b_ = -1;
  KernelSandbox sandbox_b_;
  int api_port_ = 0, api_port_b_ = 0;
  std::atomic<bool> stop_workflow_{false};
  std::thread workflow_;
};

TEST_F(FailoverTest, SequencerKilledTenTimesLosesNothingAndTheStandbyTakesOver) {
  StartSequencer(0);
  if (HasFatalFailure()) return;
  SpawnCollector(1);  // follows as the standby
  for (int i = 0; i < 100 && !Standby(1); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(Standby(1)) << Slurp(LogOf(1));
  EXPECT_FALSE(Serving(1)) << "two sequencers";
  {
    // Its admin socket answers status, and refuses what would be recorded.
    std::string out;
    EXPECT_NE(RunTool({LATCH_COLLECTOR_BIN, "grant", "--config", ConfigOf(1), "--host", "host-a",
                       "--uid", "4242", "--resource", "9", "--for", "600"},
                      &out),
              0);
    EXPECT_NE(out.find("standby"), std::string::npos) << out;
  }
  StartAgent();
  StartAgentB();
  if (HasFatalFailure()) return;
  StartStream();
  StartStream(sandbox_b_.cgroup());
  WorkflowTally tally;
  workflow_ = std::thread([&] { RunWorkflowLoop(&tally); });
  const uint64_t receipts_b = ReceiptsVerified("agent-b.log");
  std::mt19937 rng(static_cast<uint32_t>(::getpid()));
  std::uniform_int_distribution<int> pause_ms(300, 1500);
  std::vector<double> failover_ms;
  int sequencer = 0;
  int grants = 0;
  for (int kill = 0; kill < 10; ++kill) {
    std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms(rng)));
    std::string out;
    if (RunTool({LATCH_COLLECTOR_BIN, "grant", "--config", ConfigOf(sequencer), "--host", "host-a",
                 "--uid", "4242", "--resource", "9", "--for", "600"},
                &out) == 0) {
      ++grants;  // acknowledged: durable in the database
    }
    const uint64_t receipts = ReceiptsVerified();
    const auto killed = Clock::now();
    Kill(&Pid(sequencer));
    const int next = 1 - sequencer;
    ASSERT_TRUE(WaitReceiptsAbove(receipts))
        << "no receipt after kill " << kill << ": " << Slurp(LogOf(next));
    failover_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - killed).count());
    EXPECT_TRUE(Serving(next));
    SpawnCollector(sequencer);  // back, as the standby
    sequencer = next;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop_workflow_ = true;
  workflow_.join();
  StopStream();
  LedgerView v = WaitForDatabaseEvents();
  ExpectExactlyOnce(v, decisions_);
  // Every acknowledged action is on record (one acted on but unanswered, as
  // its sequencer died, may be there too).
  auto count = [&](const char* kind) {
    return std::count(v.workflow.begin(), v.workflow.end(), kind);
  };
  EXPECT_GE(count("grantIssued"), grants + tally.approved);
  EXPECT_LE(count("grantIssued"), grants + 10 + tally.attempts);
  EXPECT_GE(count("requestCreated"), static_cast<long>(tally.requests.size()));
  EXPECT_GE(count("grantRevoked"), tally.revoked);
  EXPECT_GT(tally.revoked, 0) << "the workflow loop never got through";
  // Each acknowledged request, by its id, is the one asked for: the new
  // sequencer numbered on from the old one's state, never reusing an id.
  {
    std::string out;
    ASSERT_EQ(Latchctl("ann", {"--json", "requests", "--all"}, &out), 0) << out;
    auto listed = nlohmann::json::parse(out, nullptr, false);
    ASSERT_TRUE(listed.is_object() || listed.is_array()) << out;
    const auto& list = listed.is_object() ? listed["requests"] : listed;
    std::map<uint64_t, std::string> reasons;
    for (const auto& r : list) reasons[r["id"].get<uint64_t>()] = r.value("reason", "");
    for (const auto& [id, reason] : tally.requests)
      EXPECT_EQ(reasons[id], reason) << "request " << id;
    // The standby (the last one killed, back) answers the same from what it
    // followed, trailing by at most a poll.
    const int standby_port = sequencer == 0 ? api_port_b_ : api_port_;
    const std::string last = tally.requests.empty() ? "" : tally.requests.rbegin()->second;
    latch::testing::HttpsReply read;
    for (int i = 0; i < 100; ++i) {
      read =
          latch::testing::HttpsCall(static_cast<uint16_t>(standby_port), dir_ + "/api.crt",
                                    boost::beast::http::verb::get, "/v1/requests?all=1", kAnnToken);
      if (read.status == 200 && read.body.find("\"" + last + "\"") != std::string::npos) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(read.status, 200) << read.body;
    EXPECT_NE(read.body.find("\"" + last + "\""), std::string::npos) << read.body.substr(0, 500);
    auto health = latch::testing::HttpsCall(static_cast<uint16_t>(standby_port), dir_ + "/api.crt",
                                            boost::beast::http::verb::get, "/healthz", kAnnToken);
    EXPECT_EQ(health.status, 503) << health.body;
    EXPECT_NE(health.body.find("standby"), std::string::npos) << health.body;
  }
  EXPECT_TRUE(v.alarms.empty());
  for (const char* log : {"agent.log", "agent-b.log"}) {
    EXPECT_EQ(Slurp(dir_ + "/" + log).find("ALARM"), std::string::npos)
        << log << ": " << Slurp(dir_ + "/" + log);
  }
  EXPECT_GT(ReceiptsVerified("agent-b.log"), receipts_b) << Slurp(dir_ + "/agent-b.log");
  std::string vkey, out;
  {
    tlog::NoteSigner signer;
    std::string text;
    ASSERT_TRUE(storage::ReadWholeFile(key_path_, &text).ok());
    text.pop_back();
    ASSERT_TRUE(tlog::NoteSigner::Parse(text, &signer).ok());
    vkey = signer.verifier().ToString();
  }
  EXPECT_EQ(
      RunTool({LATCH_LEDGER_BIN, "verify", "--storage", cluster_.Conninfo(), "--vkey", vkey}, &out),
      0)
      << out;
  // Hot standbys: each takeover replayed only what landed after its last
  // follow; the rest it had taken in as it landed.
  uint64_t followed = 0, replayed = 0;
  int takeovers = 0;
  for (int which : {0, 1}) {
    const std::string log = Slurp(LogOf(which));
    for (size_t at = log.find("msg=\"this collector is the sequencer\""); at != std::string::npos;
         at = log.find("msg=\"this collector is the sequencer\"", at + 1)) {
      const std::string line = log.substr(at, log.find('\n', at) - at);
      followed += std::strtoull(line.c_str() + line.find(" followed=") + 10, nullptr, 10);
      replayed +=
          std::strtoull(line.c_str() + line.find(" replayed_at_takeover=") + 22, nullptr, 10);
      ++takeovers;
    }
  }
  EXPECT_EQ(takeovers, 11);  // the first start, then one per kill
  // A cold standby replayed everything since its snapshot at each takeover
  // and followed nothing; a hot one replays what landed in its last poll.
  EXPECT_LT(replayed, followed) << "the standbys did not follow the ledger";
  std::sort(failover_ms.begin(), failover_ms.end());
  std::printf(
      "failover, kill -9 of the sequencer to the agent's next verified receipt, %zu kills: "
      "p50 %.0f ms, p99 %.0f ms, max %.0f ms; %zu events from two agents, %d admin grants; "
      "%zu requests, %d approvals, %d revokes acknowledged of %d tries; standbys took in %llu "
      "entries as they landed, %llu at their takeovers\n",
      failover_ms.size(), failover_ms[failover_ms.size() / 2],
      failover_ms[(failover_ms.size() * 99) / 100], failover_ms.back(), decisions_, grants,
      tally.requests.size(), tally.approved, tally.revoked, tally.attempts,
      static_cast<unsigned long long>(followed), static_cast<unsigned long long>(replayed));
}

// The database goes away under a running sequencer (crashed, then back after
// a few seconds): acknowledgements stop while it is gone (the agent keeps its
// records), the sequencer resumes by itself when it returns, and every event
// lands exactly once.
TEST_F(FailoverTest, LosingTheDatabaseStopsAcknowledgementsUntilItReturns) {
  StartSequencer(0);
  if (HasFatalFailure()) return;
  StartAgent();
  StartStream();
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  cluster_.Crash();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const uint64_t receipts = ReceiptsVerified();
  std::this_thread::sleep_for(std::chrono::seconds(3));
  EXPECT_LE(ReceiptsVerified(), receipts + 1) << "acknowledged while the database was gone";
  std::string out;
  ASSERT_EQ(RunTool({LATCH_COLLECTOR_BIN, "status", "--config", ConfigOf(0)}, &out), 0) << out;
  EXPECT_NE(out.find("\"ledger_writable\": false"), std::string::npos) << out;
  ASSERT_EQ(cluster_.StartServer(), "");
  EXPECT_TRUE(WaitReceiptsAbove(receipts + 1)) << Slurp(LogOf(0));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  StopStream();
  LedgerView v = WaitForDatabaseEvents();
  ExpectExactlyOnce(v, decisions_);
  EXPECT_TRUE(Serving(0)) << "the sequencer did not survive the outage";
  EXPECT_EQ(Slurp(dir_ + "/agent.log").find("ALARM"), std::string::npos)
      << Slurp(dir_ + "/agent.log");
}

// A sequencer frozen (SIGSTOP) loses its lease; the standby takes over and
// the agent follows it. Resumed, the old one cannot append: it logs why and
// exits non-zero (the service manager starts it again, as a standby).
TEST_F(FailoverTest, AFrozenSequencerStepsDownWhenResumed) {
  StartSequencer(0);
  if (HasFatalFailure()) return;
  SpawnCollector(1);
  StartAgent();
  StartStream();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_EQ(::kill(collector_, SIGSTOP), 0);
  const auto frozen = Clock::now();
  ASSERT_TRUE(WaitServing(1)) << Slurp(LogOf(1));
  std::printf("a standby took over %.1f s after the sequencer froze\n",
              std::chrono::duration<double>(Clock::now() - frozen).count());
  const uint64_t receipts = ReceiptsVerified();
  ASSERT_EQ(::kill(collector_, SIGCONT), 0);
  int status = 0;
  pid_t done = 0;
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while ((done = ::waitpid(collector_, &status, WNOHANG)) == 0 && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(done, collector_) << "the resumed sequencer did not step down: "
                              << Slurp(dir_ + "/collector.log");
  collector_ = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
  const std::string log = Slurp(dir_ + "/collector.log");
  EXPECT_NE(log.find("stepping down"), std::string::npos) << log;
  EXPECT_NE(log.find("stepped down: another collector moved the ledger on"), std::string::npos)
      << log;
  EXPECT_TRUE(WaitReceiptsAbove(receipts)) << Slurp(dir_ + "/agent.log");
  StopStream();
  LedgerView v = WaitForDatabaseEvents();
  ExpectExactlyOnce(v, decisions_);
  EXPECT_EQ(Slurp(dir_ + "/agent.log").find("ALARM"), std::string::npos)
      << Slurp(dir_ + "/agent.log");
}

}  // namespace latch::agent
