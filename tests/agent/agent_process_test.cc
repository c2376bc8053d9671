// latch-agent as a process on a real kernel: it runs, reports decisions as
// JSON lines, survives kill -9 with enforcement intact, is adopted by its
// next start, shows its state, uninstalls, and refuses bad configuration.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "agent/boot_clock.h"
#include "agent/enforcer.h"
#include "agent/kernel_fs.h"
#include "kernel_sandbox.h"
#include "notify_socket.h"

namespace latch::agent {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

class AgentProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bool ci = std::getenv("CI") != nullptr && std::string(std::getenv("CI")) == "true";
    if (::geteuid() != 0 || !fs::exists("/sys/kernel/btf/vmlinux")) {
      if (ci) FAIL() << "kernel test cannot run under CI: needs root and BTF";
      GTEST_SKIP() << "needs root and BTF";
    }
    std::string mount;
    ASSERT_TRUE(FindCgroup2Mount(&mount).ok());
    cgroup_ = mount + "/latch-agent-test-" + std::to_string(::getpid());
    ASSERT_TRUE(fs::create_directory(cgroup_));
    char tmpl[] = "/tmp/latch-agent-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    bpffs_ = dir_ + "/bpffs";
    fs::create_directory(bpffs_);
    ASSERT_EQ(::mount("bpf", bpffs_.c_str(), "bpf", 0, "mode=0700"), 0);
    pin_dir_ = bpffs_ + "/latch/test";

    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    ASSERT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&a), len), 0);
    ASSERT_EQ(::listen(listener_, 1024), 0);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    config_ = dir_ + "/agent.toml";
    WriteConfig("enforce", "127.0.0.1/32", cgroup_);
  }

  void TearDown() override {
    StopAgent(SIGKILL);
    if (!pin_dir_.empty() && fs::exists(pin_dir_)) RunCli("uninstall");
    if (listener_ >= 0) ::close(listener_);
    if (!bpffs_.empty()) ::umount2(bpffs_.c_str(), MNT_DETACH);
    if (!dir_.empty()) fs::remove_all(dir_);
    if (!cgroup_.empty()) ::rmdir(cgroup_.c_str());
  }

  void WriteConfig(const std::string& mode, const std::string& cidr, const std::string& cgroup) {
    std::ofstream(config_) << "host_id = \"test-host\"\n"
                           << extra_settings_ << "cgroup = \"" << cgroup << "\"\n"
                           << "pin_dir = \"" << pin_dir_ << "\"\n"
                           << "counters_interval_ms = 50\n"
                           << "[[resource]]\nid = 9\nname = \"db\"\ndestinations = [\"" << cidr
                           << "\"]\nprotocol = \"tcp\"\nports = \"" << port_ << "\"\nmode = \""
                           << mode << "\"\n";
  }

  // Starts latch-agent; returns once its guard is attached (pins exist).
  void StartAgent() {
    int out[2];
    ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
    std::string err_path = dir_ + "/agent.err";
    auto started = [&] {
      std::string err = Slurp(err_path);
      size_t n = 0;
      for (size_t at = err.find(kGuardLogEntry); at != std::string::npos;
           at = err.find(kGuardLogEntry, at + 1)) {
        ++n;
      }
      return n;
    };
    const size_t before = started();
    agent_ = ::fork();
    if (agent_ == 0) {
      ::dup2(out[1], STDOUT_FILENO);
      int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(err, STDERR_FILENO);
      ::execl(LATCH_AGENT_BIN, LATCH_AGENT_BIN, "--config", config_.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(out[1]);
    out_fd_ = out[0];
    auto deadline = Clock::now() + std::chrono::seconds(15);
    while (Clock::now() < deadline && started() == before) {
      int status;
      ASSERT_EQ(::waitpid(agent_, &status, WNOHANG), 0) << "agent exited: " << Slurp(err_path);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_GT(started(), before) << Slurp(err_path);
  }

  void StopAgent(int sig) {
    if (agent_ <= 0) return;
    ::kill(agent_, sig);  // our own child, by its id
    ::waitpid(agent_, nullptr, 0);
    agent_ = 0;
    ::close(out_fd_);
    out_fd_ = -1;
  }

  // JSON lines the agent has written so far (waits up to `ms` for `want` of them).
  std::vector<nlohmann::json> Records(size_t want, int ms = 3000) {
    auto deadline = Clock::now() + std::chrono::milliseconds(ms);
    while (Clock::now() < deadline && Count(pending_, '\n') < want) {
      pollfd p{out_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) == 1) {
        char buf[4096];
        ssize_t n = ::read(out_fd_, buf, sizeof(buf));
        if (n > 0) pending_.append(buf, static_cast<size_t>(n));
      }
    }
    std::vector<nlohmann::json> out;
    size_t pos;
    while ((pos = pending_.find('\n')) != std::string::npos) {
      out.push_back(nlohmann::json::parse(pending_.substr(0, pos)));
      pending_.erase(0, pos + 1);
    }
    return out;
  }

  // connect() from a child in the test cgroup as uid 5151: 0 connected, 1 EPERM.
  int Connect() {
    std::string procs = cgroup_ + "/cgroup.procs";
    uint16_t port = port_;
    pid_t pid = ::fork();
    if (pid == 0) {
      if (!JoinCgroupAs(procs, 5151)) ::_exit(2);
      int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = Loopback4(port);
      if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) ::_exit(0);
      ::_exit(errno == EPERM ? 1 : 2);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 3;
  }

  // Runs `latch-agent <args> --config ...`; returns exit code, output in *out.
  int RunCli(const std::string& args, std::string* out = nullptr) {
    std::string cmd = std::string(LATCH_AGENT_BIN) + " " + args + " --config " + config_ + " >" +
                      dir_ + "/cli.out 2>&1";
    int status = std::system(cmd.c_str());
    if (out != nullptr) *out = Slurp(dir_ + "/cli.out");
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  static std::string Slurp(const std::string& path) {
    std::ifstream in(path);
    return {std::istreambuf_iterator<char>(in), {}};
  }
  static size_t Count(const std::string& s, char c) {
    return static_cast<size_t>(std::count(s.begin(), s.end(), c));
  }

  std::string cgroup_, dir_, bpffs_, pin_dir_, config_, pending_;
  std::string extra_settings_;  // top-level settings WriteConfig adds
  int listener_ = -1;
  uint16_t port_ = 0;
  pid_t agent_ = 0;
  int out_fd_ = -1;
};

TEST_F(AgentProcessTest, RunsReportsSurvivesKillAdoptsAndUninstalls) {
  StartAgent();
  EXPECT_EQ(Connect(), 1);
  auto records = Records(1);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0]["type"], "decision");
  EXPECT_EQ(records[0]["verdict"], "deny");
  EXPECT_EQ(records[0]["uid"], 5151);
  EXPECT_EQ(records[0]["dport"], port_);
  EXPECT_EQ(records[0]["daddr"], "127.0.0.1");
  EXPECT_EQ(records[0]["resource_id"], 9);
  EXPECT_EQ(records[0]["host_id"], "test-host");

  const nlohmann::json first = records[0];
  StopAgent(SIGKILL);
  EXPECT_EQ(Connect(), 1) << "enforcement must outlive the agent";

  StartAgent();
  EXPECT_NE(Slurp(dir_ + "/agent.err").find("guard adopted"), std::string::npos);
  // The event made while the agent was dead waited in the pinned ring buffer.
  // Without a collector (no spool, so no mark of what was written) the
  // output is at-least-once across a crash: a kill between writing a line
  // and releasing its ring record prints that record again.
  records = Records(1);
  ASSERT_GE(records.size(), 1u);
  ASSERT_LE(records.size(), 2u);
  if (records.size() == 2) {
    EXPECT_EQ(records[0], first);
  }
  EXPECT_NE(records.back(), first);
  EXPECT_EQ(records.back()["verdict"], "deny");

  std::string status;
  ASSERT_EQ(RunCli("status", &status), 0) << status;
  EXPECT_NE(status.find("latch_connect4"), std::string::npos) << status;
  EXPECT_NE(status.find("127.0.0.1/32"), std::string::npos) << status;
  EXPECT_NE(status.find("denied 2"), std::string::npos) << status;
  // Activity capture is on by default (grant holders watched) and pinned too.
  EXPECT_NE(status.find("activity capture pinned at"), std::string::npos) << status;
  EXPECT_NE(status.find("programs attached"), std::string::npos) << status;

  StopAgent(SIGTERM);
  std::string out;
  ASSERT_EQ(RunCli("uninstall", &out), 0) << out;
  EXPECT_FALSE(fs::exists(pin_dir_));
  EXPECT_EQ(Connect(), 0) << "after uninstall nothing is enforced";
  EXPECT_NE(RunCli("status", &out), 0);
  EXPECT_NE(out.find("not pinned"), std::string::npos) << out;
}

// With metrics_listen, the agent serves its counters in Prometheus text.
TEST_F(AgentProcessTest, ServesItsMetrics) {
  extra_settings_ = "metrics_listen = \"127.0.0.1:0\"\n";
  WriteConfig("enforce", "127.0.0.1/32", cgroup_);
  StartAgent();
  EXPECT_EQ(Connect(), 1);
  ASSERT_EQ(Records(1).size(), 1u);
  uint16_t port = MetricsPortFromLog(Slurp(dir_ + "/agent.err"));
  ASSERT_NE(port, 0) << Slurp(dir_ + "/agent.err");
  std::string m = LoopbackHttpGet(port, "/metrics");
  EXPECT_NE(m.find("HTTP/1.1 200"), std::string::npos) << m;
  EXPECT_NE(m.find("text/plain; version=0.0.4"), std::string::npos) << m;
  EXPECT_NE(m.find("latch_agent_decisions_total{verdict=\"deny\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("latch_agent_losses_total{kind=\"ring_buffer_full\"} 0\n"), std::string::npos)
      << m;
  EXPECT_NE(m.find("latch_agent_activity_records_total{kind=\"exec\"}"), std::string::npos) << m;
  EXPECT_NE(m.find("latch_agent_grants 0\n"), std::string::npos) << m;
  EXPECT_NE(LoopbackHttpGet(port, "/other").find("HTTP/1.1 404"), std::string::npos);
}

// Activity capture that cannot start (here: a map of another layout is
// pinned where its configuration map goes) does not stop enforcement: the
// agent runs, says why, and /metrics shows capture down.
TEST_F(AgentProcessTest, EnforcementGoesOnWhenActivityCaptureCannotStart) {
  // A directory where a map's pin should be: neither reusable nor removable
  // (maps pinned in another layout are replaced: not a way to fail).
  std::string dir = pin_dir_ + "/activity";
  fs::create_directories(dir + "/latch_act_config");
  extra_settings_ = "metrics_listen = \"127.0.0.1:0\"\n";
  WriteConfig("enforce", "127.0.0.1/32", cgroup_);
  StartAgent();
  std::string err;
  auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {  // the guard's line comes first; the rest follows
    err = Slurp(dir_ + "/agent.err");
    if (err.find("msg=\"metrics served\"") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_NE(err.find("activity capture unavailable"), std::string::npos) << err;
  EXPECT_EQ(Connect(), 1);  // still refused in the kernel
  // On the record as well: a loss record saying capture is unavailable and
  // why, then the decision.
  std::vector<nlohmann::json> records = Records(2);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0]["type"], "loss") << records[0];
  EXPECT_EQ(records[0]["kind"], "activity_capture_unavailable") << records[0];
  EXPECT_NE(records[0].value("reason", "").find("latch_act_config"), std::string::npos)
      << records[0];
  EXPECT_EQ(records[1]["verdict"], "deny") << records[1];
  uint16_t port = MetricsPortFromLog(err);
  ASSERT_NE(port, 0) << err;
  std::string m = LoopbackHttpGet(port, "/metrics");
  EXPECT_NE(m.find("latch_agent_activity_capture_up 0\n"), std::string::npos) << m;
  EXPECT_NE(m.find("latch_agent_decisions_total{verdict=\"deny\"} 1\n"), std::string::npos) << m;
  StopAgent(SIGTERM);
}

// Started by systemd with Type=notify (NOTIFY_SOCKET set), the agent says
// READY=1 once the guard is attached, and STOPPING=1 when it stops.
TEST_F(AgentProcessTest, TellsSystemdWhenReady) {
  latch::testing::NotifySocket systemd(dir_ + "/notify");
  ASSERT_FALSE(systemd.path().empty());
  ::setenv("NOTIFY_SOCKET", systemd.path().c_str(), 1);
  StartAgent();
  ::unsetenv("NOTIFY_SOCKET");
  EXPECT_NE(systemd.Receive().find("READY=1"), std::string::npos);
  StopAgent(SIGTERM);
  EXPECT_NE(systemd.Receive().find("STOPPING=1"), std::string::npos);
}

// kill -9 and restart of latch-agent while a prober connects in a loop: no
// denied connect ever gets through.
TEST_F(AgentProcessTest, NoWindowAcrossKillAndRestart) {
  StartAgent();
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::string procs = cgroup_ + "/cgroup.procs";
  uint16_t port = port_;
  pid_t prober = ::fork();
  if (prober == 0) {
    ::close(fds[0]);
    if (!JoinCgroupAs(procs, 5151)) ::_exit(2);
    uint32_t counts[2] = {0, 0};  // attempts, successes
    auto end = Clock::now() + std::chrono::milliseconds(1500);
    while (Clock::now() < end) {
      int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = Loopback4(port);
      ++counts[0];
      if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) ++counts[1];
      ::close(s);
    }
    if (::write(fds[1], counts, sizeof(counts)) != sizeof(counts)) ::_exit(3);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  StopAgent(SIGKILL);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  StartAgent();
  EXPECT_NE(Slurp(dir_ + "/agent.err").find("guard adopted"), std::string::npos);
  uint32_t counts[2] = {0, 0};
  ASSERT_EQ(::read(fds[0], counts, sizeof(counts)), static_cast<ssize_t>(sizeof(counts)));
  ::close(fds[0]);
  ::waitpid(prober, nullptr, 0);
  EXPECT_GT(counts[0], 100u) << "the prober hardly ran";
  EXPECT_EQ(counts[1], 0u) << "a denied connect got through across the restart";
}

// A grant ends on time with the agent stopped (SIGSTOP): the kernel alone decides.
TEST_F(AgentProcessTest, GrantEndsOnTimeWithTheAgentStopped) {
  StartAgent();
  // Drive the agent's pinned maps directly, as the grant channel will through its Enforcer.
  int resources = bpf_obj_get((pin_dir_ + "/latch_resources").c_str());
  int grants = bpf_obj_get((pin_dir_ + "/latch_grants").c_str());
  ASSERT_GE(resources, 0);
  ASSERT_GE(grants, 0);
  BpfEnforcer enforcer(GuardMaps{resources, grants});
  int64_t now = NowUnixNs();
  ASSERT_TRUE(
      enforcer.ApplyGrant({5, {Principal::Kind::kUid, 5151}, 9, now - 1'000'000, now + 500'000'000})
          .ok());
  EXPECT_EQ(Connect(), 0);
  ::kill(agent_, SIGSTOP);
  std::this_thread::sleep_for(std::chrono::milliseconds(700));
  EXPECT_EQ(Connect(), 1) << "the grant must end with the agent stopped";
  ::kill(agent_, SIGCONT);
  ::close(resources);
  ::close(grants);
}

TEST_F(AgentProcessTest, BadConfigurationIsOneLineAndAttachesNothing) {
  std::string out;
  WriteConfig("block", "127.0.0.1/32", cgroup_);
  EXPECT_EQ(RunCli("", &out), 1);
  EXPECT_NE(out.find("mode"), std::string::npos) << out;
  EXPECT_EQ(Count(out, '\n'), 1u) << out;
  WriteConfig("enforce", "127.0.0.1/40", cgroup_);
  EXPECT_EQ(RunCli("", &out), 1);
  EXPECT_NE(out.find("CIDR"), std::string::npos) << out;
  WriteConfig("enforce", "127.0.0.1/32", cgroup_ + "/missing");
  EXPECT_EQ(RunCli("", &out), 1);
  EXPECT_NE(out.find("missing"), std::string::npos) << out;
  EXPECT_TRUE(!fs::exists(pin_dir_) || fs::is_empty(pin_dir_));
  EXPECT_EQ(Connect(), 0);
}

}  // namespace
}  // namespace latch::agent
