// Several hosts on one machine: a collector in its own network namespace and
// two agents, each in a namespace of its own joined to the collector's by a
// veth pair, each with its own cgroup, pin directory and spool. All of it is
// created and removed by the test.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <thread>
#include <zmq.hpp>

#include "channel_helpers.h"
#include "kernel_sandbox.h"
#include "schemas/wire.capnp.h"

namespace latch::agent {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr uint32_t kUid = 6363;
constexpr uint16_t kCollectorPort = 7441;
constexpr uint16_t kProtectedPort = 5432;

int Ip(const std::string& args) { return std::system(("ip " + args + " 2>/dev/null").c_str()); }

// Enters network namespace `ns` (in a forked child).
bool EnterNetns(const std::string& ns) {
  int fd = ::open(("/var/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
  return fd >= 0 && ::setns(fd, CLONE_NEWNET) == 0;
}

struct Host {
  std::string name, ns;
  KernelSandbox sandbox;
  std::string dir;
  pid_t agent = -1, listener = -1;
};

class MultiHostTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bool ci = std::getenv("CI") != nullptr && std::string(std::getenv("CI")) == "true";
    if (::geteuid() != 0 || !fs::exists("/sys/kernel/btf/vmlinux") ||
        std::system("ip -V >/dev/null 2>&1") != 0) {
      if (ci) FAIL() << "kernel test cannot run under CI: needs root, BTF and iproute2";
      GTEST_SKIP() << "needs root, BTF and iproute2";
    }
    tag_ = std::to_string(::getpid() % 100000);
    collector_ns_ = "latch-c" + tag_;
    ASSERT_EQ(Ip("netns add " + collector_ns_), 0);
    Ip("-n " + collector_ns_ + " link set lo up");
    char tmpl[] = "/tmp/latch-multihost-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    for (int i = 1; i <= 2; ++i) {
      auto h = std::make_unique<Host>();
      h->name = "host-" + std::to_string(i);
      h->ns = "latch-a" + std::to_string(i) + "-" + tag_;
      ASSERT_EQ(h->sandbox.Create("latch-" + h->name), "");
      h->dir = dir_ + "/" + h->name;
      fs::create_directories(h->dir);
      ASSERT_EQ(Ip("netns add " + h->ns), 0);
      Ip("-n " + h->ns + " link set lo up");
      // veth: agent side 10.77.i.2, collector side 10.77.i.1.
      std::string a = "la" + std::to_string(i) + "-" + tag_,
                  c = "lc" + std::to_string(i) + "-" + tag_;
      ASSERT_EQ(Ip("link add " + a + " netns " + h->ns + " type veth peer name " + c + " netns " +
                   collector_ns_),
                0);
      std::string net = "10.77." + std::to_string(i) + ".";
      Ip("-n " + h->ns + " addr add " + net + "2/24 dev " + a);
      Ip("-n " + h->ns + " link set " + a + " up");
      Ip("-n " + collector_ns_ + " addr add " + net + "1/24 dev " + c);
      Ip("-n " + collector_ns_ + " link set " + c + " up");
      hosts_.push_back(std::move(h));
    }
    std::ofstream(dir_ + "/collector.toml")
        << "data_dir = \"" << dir_ << "/collector\"\norigin = \"multi.example/ledger\"\n"
        << "endpoints = [\"tcp://0.0.0.0:" << kCollectorPort << "\"]\nbatch_max_age_ms = 2\n";
    std::string keys;
    ASSERT_EQ(RunTool({LATCH_COLLECTOR_BIN, "keys", "--config", dir_ + "/collector.toml"}, &keys),
              0);
    size_t at = keys.find("curve_public_key");
    keys.replace(at, 16, "server_public_key");
    server_key_ = keys.substr(keys.find('"') + 1, 40);
    std::string enrolled;
    for (size_t i = 0; i < hosts_.size(); ++i) {
      Host& h = *hosts_[i];
      std::ofstream(h.dir + "/agent.toml")
          << "host_id = \"" << h.name << "\"\ncgroup = \"" << h.sandbox.cgroup() << "\"\n"
          << "pin_dir = \"" << h.sandbox.pin_dir() << "\"\ncounters_interval_ms = 100\n"
          << "[[resource]]\nid = 9\nname = \"db\"\ndestinations = [\"127.0.0.1/32\"]\n"
          << "protocol = \"tcp\"\nports = \"" << kProtectedPort << "\"\n"
          << "[collector]\nendpoints = [\"tcp://10.77." << i + 1 << ".1:" << kCollectorPort
          << "\"]\nstate_dir = \"" << h.dir << "/state\"\n"
          << keys;
      std::string key;
      ASSERT_EQ(RunTool({LATCH_AGENT_BIN, "key", "--config", h.dir + "/agent.toml"}, &key), 0);
      enrolled += "[[agent]]\nhost_id = \"" + h.name + "\"\ncurve_public_key = \"" +
                  key.substr(0, 40) + "\"\n";
    }
    // A third enrolled key, used by the test to send malformed batches.
    char pub[41], sec[41];
    zmq_curve_keypair(pub, sec);
    rogue_public_ = pub;
    rogue_secret_ = sec;
    enrolled +=
        "[[agent]]\nhost_id = \"host-rogue\"\ncurve_public_key = \"" + rogue_public_ + "\"\n";
    std::ofstream(dir_ + "/collector.toml", std::ios::app) << enrolled;

    collector_ = SpawnIn(collector_ns_, LATCH_COLLECTOR_BIN, dir_ + "/collector.toml",
                         dir_ + "/collector.log");
    for (auto& h : hosts_) {
      h->listener = ListenIn(h->ns);
      h->agent = SpawnIn(h->ns, LATCH_AGENT_BIN, h->dir + "/agent.toml", h->dir + "/agent.log");
    }
  }

  void TearDown() override {
    for (auto& h : hosts_) {
      Stop(&h->agent);
      Stop(&h->listener);
      std::string out;
      RunTool({LATCH_AGENT_BIN, "uninstall", "--config", h->dir + "/agent.toml"}, &out);
      Ip("netns del " + h->ns);
    }
    Stop(&collector_);
    if (!collector_ns_.empty()) Ip("netns del " + collector_ns_);
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  static void Stop(pid_t* pid) {
    if (*pid <= 0) return;
    ::kill(*pid, SIGKILL);
    ::waitpid(*pid, nullptr, 0);
    *pid = -1;
  }
  static pid_t SpawnIn(const std::string& ns, const std::string& bin, const std::string& config,
                       const std::string& log) {
    pid_t pid = ::fork();
    if (pid == 0) {
      if (!EnterNetns(ns)) ::_exit(126);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      ::dup2(fd, STDERR_FILENO);
      int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
      ::dup2(null, STDOUT_FILENO);
      ::execl(bin.c_str(), bin.c_str(), "--config", config.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    return pid;
  }
  // A TCP server on 127.0.0.1:kProtectedPort inside `ns`, accepting forever.
  static pid_t ListenIn(const std::string& ns) {
    pid_t pid = ::fork();
    if (pid == 0) {
      if (!EnterNetns(ns)) ::_exit(126);
      int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = Loopback4(kProtectedPort);
      if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(l, 128) != 0)
        ::_exit(125);
      for (;;) {
        int c = ::accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
        if (c >= 0) ::close(c);
      }
    }
    return pid;
  }
  // One connect to the protected port on host `h` as kUid in its cgroup: errno or 0.
  int ConnectOn(Host& h) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return -1;
    pid_t child = ::fork();
    if (child == 0) {
      if (!EnterNetns(h.ns) || !JoinCgroupAs(h.sandbox.cgroup() + "/cgroup.procs", kUid))
        ::_exit(100);
      int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = Loopback4(kProtectedPort);
      int err = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 ? 0 : errno;
      (void)!::write(p[1], &err, sizeof(err));
      ::_exit(0);
    }
    ::close(p[1]);
    int err = -1;
    if (::read(p[0], &err, sizeof(err)) != sizeof(err)) err = -1;
    ::close(p[0]);
    ::waitpid(child, nullptr, 0);
    decisions_[h.name]++;
    return err;
  }
  // Waits until the ledger holds, per host, as many events as decisions made there.
  LedgerView WaitForAllEvents(int seconds = 30) {
    auto deadline = Clock::now() + std::chrono::seconds(seconds);
    LedgerView v;
    while (Clock::now() < deadline) {
      v = ReadLedgerAt(dir_ + "/collector/ledger");
      bool all = true;
      for (auto& [host, n] : decisions_) all &= v.events_by_host[host] >= n;
      if (all) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return v;
  }
  void ExpectAllEventsOnce() {
    LedgerView v = WaitForAllEvents();
    for (auto& [host, n] : decisions_) EXPECT_EQ(v.events_by_host[host], n) << host;
    for (auto& [key, n] : v.events) EXPECT_EQ(n, 1);
  }
  // Sends `payloads` as the enrolled rogue key, from host 1's namespace.
  void SendAsRogue(const std::vector<std::string>& payloads) {
    pid_t child = ::fork();
    if (child == 0) {
      if (!EnterNetns(hosts_[0]->ns)) ::_exit(126);
      zmq::context_t ctx;
      zmq::socket_t s(ctx, zmq::socket_type::dealer);
      s.set(zmq::sockopt::curve_serverkey, server_key_);
      s.set(zmq::sockopt::curve_publickey, rogue_public_);
      s.set(zmq::sockopt::curve_secretkey, rogue_secret_);
      s.set(zmq::sockopt::linger, 2000);
      s.connect("tcp://10.77.1.1:" + std::to_string(kCollectorPort));
      for (const auto& p : payloads) s.send(zmq::buffer(p), zmq::send_flags::none);
      std::this_thread::sleep_for(std::chrono::milliseconds(300));
      ::_exit(0);
    }
    ::waitpid(child, nullptr, 0);
  }

  std::string tag_, collector_ns_, dir_, server_key_, rogue_public_, rogue_secret_;
  std::vector<std::unique_ptr<Host>> hosts_;
  pid_t collector_ = -1;
  std::map<std::string, size_t> decisions_;
};

TEST_F(MultiHostTest, GrantOpensOnlyItsHostAndBadInputDisturbsNobody) {
  // Both agents up and delivering.
  for (auto& h : hosts_) {
    auto deadline = Clock::now() + std::chrono::seconds(20);
    // Until the guard is attached a connect passes and makes no decision.
    while (Clock::now() < deadline && ConnectOn(*h) != EPERM) {
      decisions_[h->name]--;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    for (int i = 0; i < 10; ++i) EXPECT_EQ(ConnectOn(*h), EPERM) << h->name;
  }
  ExpectAllEventsOnce();

  // Malformed input from an enrolled key: garbage, a batch with records out
  // of order, and a batch with a bad boot id.
  std::vector<std::string> bad = {"garbage", std::string(4096, '\x01')};
  {
    capnp::MallocMessageBuilder m;
    auto b = m.initRoot<schema::Envelope>().initEventBatch();
    b.setBootId(kj::arrayPtr(reinterpret_cast<const capnp::byte*>("0123456789abcdef"), 16));
    auto rs = b.initRecords(2);
    rs[0].setSequence(5);
    rs[1].setSequence(3);
    auto w = capnp::messageToFlatArray(m);
    bad.emplace_back(reinterpret_cast<const char*>(w.asBytes().begin()), w.asBytes().size());
  }
  {
    capnp::MallocMessageBuilder m;
    auto b = m.initRoot<schema::Envelope>().initEventBatch();
    b.setBootId(kj::arrayPtr(reinterpret_cast<const capnp::byte*>("short"), 5));
    b.initRecords(1)[0].setSequence(1);
    auto w = capnp::messageToFlatArray(m);
    bad.emplace_back(reinterpret_cast<const char*>(w.asBytes().begin()), w.asBytes().size());
  }
  SendAsRogue(bad);
  for (auto& h : hosts_) {
    for (int i = 0; i < 5; ++i) EXPECT_EQ(ConnectOn(*h), EPERM);
  }
  ExpectAllEventsOnce();
  std::string status;
  ASSERT_EQ(RunTool({LATCH_COLLECTOR_BIN, "status", "--config", dir_ + "/collector.toml"}, &status),
            0);
  EXPECT_NE(status.find("\"malformed_messages\": 4"), std::string::npos) << status;

  // A grant for host-1 opens host-1 and only host-1.
  std::string out;
  ASSERT_EQ(RunTool({LATCH_COLLECTOR_BIN, "grant", "--config", dir_ + "/collector.toml", "--host",
                     "host-1", "--uid", std::to_string(kUid), "--resource", "9", "--for", "60"},
                    &out),
            0)
      << out;
  auto deadline = Clock::now() + std::chrono::seconds(5);
  int rc = -1;
  while (Clock::now() < deadline && (rc = ConnectOn(*hosts_[0])) != 0) {
  }
  EXPECT_EQ(rc, 0) << Slurp(hosts_[0]->dir + "/agent.log");
  EXPECT_EQ(ConnectOn(*hosts_[1]), EPERM);
  ExpectAllEventsOnce();
}

}  // namespace
}  // namespace latch::agent
