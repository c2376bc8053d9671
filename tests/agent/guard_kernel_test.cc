// The guard on a real kernel. Each test gets its own cgroup v2 directory and
// its own bpffs mount, attaches the guard to that cgroup only, and runs
// clients as child processes moved into it; servers listen on loopback in
// the test process, outside the cgroup.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "agent/boot_clock.h"
#include "agent/enforcer.h"
#include "agent/guard.h"
#include "agent/kernel_fs.h"
#include "agent/ring_reader.h"
#include "kernel_sandbox.h"

namespace latch::agent {
namespace {

namespace fs = std::filesystem;

constexpr uint32_t kTcpResource = 11;
constexpr uint32_t kUdpResource = 12;
constexpr uint32_t kAuditResource = 13;
constexpr uint32_t kAlice = 4242;
constexpr uint32_t kBob = 4343;

enum ConnectResult { kConnected = 0, kRefused = 1, kOtherError = 2 };

// Listening TCP and bound UDP sockets on 127.0.0.1 and ::1.
struct LoopbackServer {
  LoopbackServer(int fam, int type, uint16_t want_port = 0) : family(fam) {
    fd = ::socket(family, type | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a->sin_port = htons(want_port);
      len = sizeof(*a);
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_loopback;
      a->sin6_port = htons(want_port);
      len = sizeof(*a);
    }
    EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&ss), len), 0);
    if (type == SOCK_STREAM) {
      EXPECT_EQ(::listen(fd, 4096), 0);
    }
    EXPECT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len), 0);
    port = ntohs(family == AF_INET ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                                   : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  }
  ~LoopbackServer() { ::close(fd); }
  int family;
  int fd;
  uint16_t port;
};

// In a child: join `cgroup`, become `uid`, then connect (TCP) or sendto (UDP).
// Only async-signal-safe calls after fork.
[[noreturn]] void ClientChild(const std::string& procs, uint32_t uid, int family, int type,
                              uint16_t port, const char* v4_target) {
  if (!JoinCgroupAs(procs, uid)) ::_exit(kOtherError);
  int s = ::socket(family, type | SOCK_CLOEXEC, 0);
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    ::inet_pton(AF_INET, v4_target, &a->sin_addr);
    len = sizeof(*a);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    if (v4_target != nullptr) {
      // An IPv4-mapped IPv6 destination: the same rules must apply.
      char mapped[64] = "::ffff:";
      ::strncat(mapped, v4_target, sizeof(mapped) - 8);
      ::inet_pton(AF_INET6, mapped, &a->sin6_addr);
    } else {
      a->sin6_addr = in6addr_loopback;
    }
    len = sizeof(*a);
  }
  int rc = type == SOCK_STREAM
               ? ::connect(s, reinterpret_cast<sockaddr*>(&ss), len)
               : static_cast<int>(::sendto(s, "x", 1, 0, reinterpret_cast<sockaddr*>(&ss), len));
  if (rc >= 0) ::_exit(kConnected);
  ::_exit(errno == EPERM ? kRefused : kOtherError);
}

class GuardKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LATCH_SKIP_UNLESS_KERNEL_TEST_CAN_RUN();
    ASSERT_EQ(CreateTestCgroup("latch-test", &cgroup_), "");
    char tmpl[] = "/tmp/latch-bpffs-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    bpffs_ = tmpl;
    ASSERT_EQ(::mount("bpf", bpffs_.c_str(), "bpf", 0, "mode=0700"), 0) << strerror(errno);
    pin_dir_ = bpffs_ + "/guard";
    ASSERT_TRUE(fs::create_directory(pin_dir_));
    Install();
    ASSERT_TRUE(enforcer_->SetResources(TestResources()).ok());
  }

  void TearDown() override {
    enforcer_.reset();
    guard_.reset();
    if (!pin_dir_.empty() && fs::exists(pin_dir_)) {
      Status s = Guard::Uninstall(pin_dir_);
      EXPECT_TRUE(s.ok()) << s.ToString();
    }
    if (!bpffs_.empty()) {
      ::umount2(bpffs_.c_str(), MNT_DETACH);
      ::rmdir(bpffs_.c_str());
    }
    RemoveCgroupTree(cgroup_);
  }

  static void RemoveCgroupTree(const std::string& dir) {
    if (dir.empty() || !fs::exists(dir)) return;
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.is_directory()) RemoveCgroupTree(e.path());
    }
    ::rmdir(dir.c_str());
  }

  void Install(bool cut_established = true) {
    Status s = Guard::Install({pin_dir_, cgroup_, 1u << 16, cut_established}, &guard_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    enforcer_ = std::make_unique<BpfEnforcer>(*guard_);
  }

  std::vector<resource::Resource> TestResources() {
    std::vector<resource::Resource> rs;
    auto make = [&](uint32_t id, resource::Protocol p, uint16_t port, resource::Mode m) {
      resource::Resource r{id, "r" + std::to_string(id), {}, p, port, port, m};
      EXPECT_TRUE(resource::Cidr::Parse("127.0.0.1", &r.destinations.emplace_back()).ok());
      EXPECT_TRUE(resource::Cidr::Parse("::1", &r.destinations.emplace_back()).ok());
      rs.push_back(r);
    };
    make(kTcpResource, resource::Protocol::kTcp, tcp4_.port,
         resource::Mode::kEnforce);  // tcp6_ shares the port
    make(kUdpResource, resource::Protocol::kUdp, udp4_.port, resource::Mode::kEnforce);
    make(kAuditResource, resource::Protocol::kTcp, audit4_.port, resource::Mode::kAudit);
    return rs;
  }

  int Run(const std::string& cgroup, uint32_t uid, int family, int type, uint16_t port,
          const char* v4_target = "127.0.0.1") {
    pid_t pid = ::fork();
    if (pid == 0) ClientChild(cgroup + "/cgroup.procs", uid, family, type, port, v4_target);
    int status = 0;
    ::waitpid(pid, &status, 0);
    last_child_ = pid;
    return WIFEXITED(status) ? WEXITSTATUS(status) : kOtherError;
  }
  int Tcp4(uint32_t uid, const std::string& cgroup = "") {
    return Run(cgroup.empty() ? cgroup_ : cgroup, uid, AF_INET, SOCK_STREAM, tcp4_.port);
  }

  Grant MakeGrant(uint64_t id, Principal p, uint32_t resource, int64_t from_now_ms,
                  int64_t for_ms) {
    int64_t now = NowUnixNs();
    return {id, p, resource, now + from_now_ms * 1'000'000,
            now + (from_now_ms + for_ms) * 1'000'000};
  }

  std::vector<latch_decision_event> DrainEvents() {
    std::vector<latch_decision_event> events;
    std::unique_ptr<RingReader> reader;
    EXPECT_TRUE(RingReader::ForDecisionEvents(
                    guard_->events_fd(),
                    [&](const latch_decision_event& e) { events.push_back(e); }, &reader)
                    .ok());
    int n = 0;
    EXPECT_TRUE(reader->Consume(&n).ok());
    return events;
  }

  std::string cgroup_;
  std::string bpffs_;
  std::string pin_dir_;
  std::unique_ptr<Guard> guard_;
  std::unique_ptr<BpfEnforcer> enforcer_;
  LoopbackServer tcp4_{AF_INET, SOCK_STREAM};
  LoopbackServer tcp6_{AF_INET6, SOCK_STREAM, tcp4_.port};
  LoopbackServer udp4_{AF_INET, SOCK_DGRAM};
  LoopbackServer audit4_{AF_INET, SOCK_STREAM};
  LoopbackServer open4_{AF_INET, SOCK_STREAM};  // never protected
  pid_t last_child_ = 0;
};

// 1. Without a grant: protected TCP and UDP, IPv4, IPv6 and IPv4-mapped, are
// refused with EPERM; an unprotected port works and produces no event.
TEST_F(GuardKernelTest, NoGrantRefusesProtectedAndLeavesTheRestAlone) {
  EXPECT_EQ(Tcp4(kAlice), kRefused);
  EXPECT_EQ(Run(cgroup_, kAlice, AF_INET6, SOCK_STREAM, tcp6_.port, nullptr), kRefused);
  EXPECT_EQ(Run(cgroup_, kAlice, AF_INET6, SOCK_STREAM, tcp4_.port, "127.0.0.1"), kRefused);
  EXPECT_EQ(Run(cgroup_, kAlice, AF_INET, SOCK_DGRAM, udp4_.port), kRefused);
  EXPECT_EQ(Run(cgroup_, kAlice, AF_INET6, SOCK_DGRAM, udp4_.port, "127.0.0.1"), kRefused);
  EXPECT_EQ(DrainEvents().size(), 5u);
  EXPECT_EQ(Run(cgroup_, kAlice, AF_INET, SOCK_STREAM, open4_.port), kConnected);
  uint16_t open_udp = open4_.port == udp4_.port ? open4_.port + 1 : open4_.port;
  EXPECT_EQ(Run(cgroup_, 0, AF_INET, SOCK_DGRAM, open_udp), kConnected);
  EXPECT_TRUE(DrainEvents().empty());
  // Outside the guarded cgroup nothing is touched.
  std::string outside = fs::path(cgroup_).parent_path().string();
  EXPECT_EQ(Run(outside, kAlice, AF_INET, SOCK_STREAM, tcp4_.port), kConnected);
}

// 2. A uid grant allows that uid only; a cgroup grant allows the cgroup and
// its descendants, not a sibling.
TEST_F(GuardKernelTest, UidAndCgroupGrants) {
  ASSERT_TRUE(
      enforcer_
          ->ApplyGrant(MakeGrant(1, {Principal::Kind::kUid, kAlice}, kTcpResource, -1000, 60000))
          .ok());
  EXPECT_EQ(Tcp4(kAlice), kConnected);
  EXPECT_EQ(Run(cgroup_, kAlice, AF_INET6, SOCK_STREAM, tcp6_.port, nullptr), kConnected);
  EXPECT_EQ(Tcp4(kBob), kRefused);
  EXPECT_EQ(Run(cgroup_, kAlice, AF_INET, SOCK_DGRAM, udp4_.port), kRefused);  // other resource

  std::string team = cgroup_ + "/team";
  std::string child = team + "/svc";
  std::string sibling = cgroup_ + "/other";
  for (const auto& d : {team, child, sibling}) ASSERT_TRUE(fs::create_directory(d));
  uint64_t team_id = 0;
  ASSERT_TRUE(CgroupId(team, &team_id).ok());
  ASSERT_TRUE(enforcer_
                  ->ApplyGrant(
                      MakeGrant(2, {Principal::Kind::kCgroup, team_id}, kTcpResource, -1000, 60000))
                  .ok());
  EXPECT_EQ(Tcp4(kBob, team), kConnected);
  EXPECT_EQ(Tcp4(kBob, child), kConnected);
  EXPECT_EQ(Tcp4(kBob, sibling), kRefused);
}

// 3. Expiry needs no user space: with the guard's process side gone, the
// kernel refuses once the grant ends. Revocation refuses at once.
TEST_F(GuardKernelTest, GrantsExpireInTheKernelAndRevokeAtOnce) {
  ASSERT_TRUE(
      enforcer_->ApplyGrant(MakeGrant(3, {Principal::Kind::kUid, kAlice}, kTcpResource, -10, 400))
          .ok());
  EXPECT_EQ(Tcp4(kAlice), kConnected);
  enforcer_.reset();
  guard_.reset();  // as if the agent were killed: only the pinned state remains
  std::this_thread::sleep_for(std::chrono::milliseconds(600));
  EXPECT_EQ(Tcp4(kAlice), kRefused);

  Install();
  ASSERT_TRUE(guard_->adopted());
  ASSERT_TRUE(
      enforcer_->ApplyGrant(MakeGrant(4, {Principal::Kind::kUid, kBob}, kTcpResource, -10, 60000))
          .ok());
  EXPECT_EQ(Tcp4(kBob), kConnected);
  ASSERT_TRUE(enforcer_->RevokeGrant(4).ok());
  EXPECT_EQ(Tcp4(kBob), kRefused);
  EXPECT_EQ(enforcer_->RevokeGrant(4).code(), Status::Code::kNotFound);
  // A grant that has not started yet does not allow either.
  ASSERT_TRUE(
      enforcer_->ApplyGrant(MakeGrant(5, {Principal::Kind::kUid, kBob}, kTcpResource, 60000, 1000))
          .ok());
  EXPECT_EQ(Tcp4(kBob), kRefused);
}

// 4. A connection opened under a grant stops carrying data within 1 s of the
// grant's end (in the kernel, with the process side gone) or its revocation.
class GrantCutTest : public GuardKernelTest {
 protected:
  using Clock = std::chrono::steady_clock;
  // Streams a byte every 10 ms over a connection made under a grant lasting
  // `grant_ms`; `during` runs in the parent once the stream has started.
  // Returns (bytes received, ms from grant end to the last byte received).
  std::pair<int, int64_t> StreamUnderGrant(int64_t grant_ms, const std::function<void()>& during,
                                           Clock::time_point* cut_at) {
    EXPECT_TRUE(enforcer_
                    ->ApplyGrant(
                        MakeGrant(40, {Principal::Kind::kUid, kAlice}, kTcpResource, -10, grant_ms))
                    .ok());
    *cut_at = Clock::now() + std::chrono::milliseconds(grant_ms);
    auto [bytes, last] = Stream(tcp4_, during);
    return {bytes, std::chrono::duration_cast<std::chrono::milliseconds>(last - *cut_at).count()};
  }

  // The cut records the ring holds: one per connection cut at its grant's end.
  std::vector<latch_decision_event> Cuts() {
    std::vector<latch_decision_event> cuts;
    for (const auto& e : DrainEvents()) {
      if (e.verdict == LATCH_VERDICT_CUT) cuts.push_back(e);
    }
    return cuts;
  }

  // Alice, in the test cgroup, streams a byte every 10 ms to `server`; `during`
  // runs once the stream has started. Returns (bytes received, when the last
  // byte arrived).
  std::pair<int, Clock::time_point> Stream(const LoopbackServer& server,
                                           const std::function<void()>& during) {
    std::string procs = cgroup_ + "/cgroup.procs";
    uint16_t port = server.port;
    pid_t child = ::fork();
    if (child == 0) {
      if (!JoinCgroupAs(procs, kAlice)) ::_exit(2);
      int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = Loopback4(port);
      if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) ::_exit(3);
      ::fcntl(s, F_SETFL, O_NONBLOCK);
      for (int i = 0; i < 250; ++i) {
        ::send(s, "x", 1, MSG_NOSIGNAL);
        ::usleep(10000);
      }
      ::_exit(0);
    }
    pollfd pl{server.fd, POLLIN, 0};
    EXPECT_EQ(::poll(&pl, 1, 2000), 1);
    int conn = ::accept4(server.fd, nullptr, nullptr, SOCK_CLOEXEC);
    EXPECT_GE(conn, 0);
    during();
    int bytes = 0;
    Clock::time_point last = Clock::now();
    auto stop = Clock::now() + std::chrono::milliseconds(2600);
    while (Clock::now() < stop) {
      pollfd p{conn, POLLIN, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      char buf[256];
      ssize_t n = ::recv(conn, buf, sizeof(buf), 0);
      if (n <= 0) break;
      bytes += static_cast<int>(n);
      last = Clock::now();
    }
    ::close(conn);
    ::kill(child, SIGKILL);  // our own child, by its id
    ::waitpid(child, nullptr, 0);
    return {bytes, last};
  }
};

TEST_F(GrantCutTest, ExpiryStopsAnEstablishedConnection) {
  Clock::time_point cut_at;
  auto [bytes, last_after_end_ms] = StreamUnderGrant(
      700,
      [&] {
        enforcer_.reset();
        guard_.reset();  // the kernel alone must end it
      },
      &cut_at);
  EXPECT_GT(bytes, 10) << "data should flow while the grant lasts";
  EXPECT_LT(last_after_end_ms, 1000)
      << "data still flowed " << last_after_end_ms << " ms after expiry";
  std::printf("expiry: %d bytes streamed; the last arrived %lld ms after the grant ended\n", bytes,
              static_cast<long long>(last_after_end_ms));
  Install();
  std::array<uint64_t, LATCH_CTR_COUNT> counters{};
  ASSERT_TRUE(guard_->ReadCounters(&counters).ok());
  EXPECT_GT(counters[LATCH_CTR_CUT_PACKETS], 0u);
  // The cut is on the record once, under the grant that ended (issue 16).
  EXPECT_EQ(counters[LATCH_CTR_CUT_CONNECTIONS], 1u);
  auto cuts = Cuts();
  ASSERT_EQ(cuts.size(), 1u);
  EXPECT_EQ(cuts[0].grant_id, 40u);
  EXPECT_EQ(cuts[0].uid, kAlice);
  EXPECT_EQ(cuts[0].resource_id, kTcpResource);
  EXPECT_EQ(cuts[0].hook, LATCH_HOOK_PACKET_EGRESS);
  EXPECT_EQ(cuts[0].port, tcp4_.port);
}

TEST_F(GrantCutTest, RevocationStopsAnEstablishedConnection) {
  Clock::time_point cut_at;
  auto [bytes, last_after_end_ms] = StreamUnderGrant(
      60000,
      [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(400));
        ASSERT_TRUE(enforcer_->RevokeGrant(40).ok());
      },
      &cut_at);
  // Measured from the revocation (400 ms in), not from the 60 s expiry.
  int64_t after_revoke_ms = last_after_end_ms + 60000 - 400;
  EXPECT_GT(bytes, 10);
  EXPECT_LT(after_revoke_ms, 1000)
      << "data still flowed " << after_revoke_ms << " ms after revocation";
  std::printf("revocation: %d bytes streamed; the last arrived %lld ms after the revocation\n",
              bytes, static_cast<long long>(after_revoke_ms));
  // Gone from the grants map, the revoked grant is still named by the cut:
  // the socket remembered it.
  auto cuts = Cuts();
  ASSERT_EQ(cuts.size(), 1u);
  EXPECT_EQ(cuts[0].grant_id, 40u);
}

// The other direction: data the peer sends stops reaching the grant holder.
TEST_F(GrantCutTest, DataFromThePeerStopsToo) {
  ASSERT_TRUE(
      enforcer_->ApplyGrant(MakeGrant(41, {Principal::Kind::kUid, kAlice}, kTcpResource, -10, 600))
          .ok());
  Clock::time_point cut_at = Clock::now() + std::chrono::milliseconds(600);
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::string procs = cgroup_ + "/cgroup.procs";
  uint16_t port = tcp4_.port;
  pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    if (!JoinCgroupAs(procs, kAlice)) ::_exit(2);
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = Loopback4(port);
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) ::_exit(3);
    int64_t got[2] = {0, 0};  // bytes, steady-clock ns of the last one
    auto stop = Clock::now() + std::chrono::milliseconds(2500);
    while (Clock::now() < stop) {
      pollfd p{s, POLLIN, 0};
      if (::poll(&p, 1, 50) != 1) continue;
      char buf[256];
      ssize_t n = ::recv(s, buf, sizeof(buf), 0);
      if (n <= 0) break;
      got[0] += n;
      got[1] = Clock::now().time_since_epoch().count();
    }
    ::write(fds[1], got, sizeof(got));
    ::_exit(0);
  }
  ::close(fds[1]);
  pollfd pl{tcp4_.fd, POLLIN, 0};
  ASSERT_EQ(::poll(&pl, 1, 2000), 1);
  int conn = ::accept4(tcp4_.fd, nullptr, nullptr, SOCK_CLOEXEC);
  ASSERT_GE(conn, 0);
  for (int i = 0; i < 200; ++i) {
    ::send(conn, "y", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  int64_t got[2] = {0, 0};
  ASSERT_EQ(::read(fds[0], got, sizeof(got)), static_cast<ssize_t>(sizeof(got)));
  ::close(fds[0]);
  ::close(conn);
  ::waitpid(child, nullptr, 0);  // our own child, by its id; it exits by itself
  Clock::time_point last{std::chrono::nanoseconds(got[1])};
  int64_t after_ms = std::chrono::duration_cast<std::chrono::milliseconds>(last - cut_at).count();
  EXPECT_GT(got[0], 10) << "data should flow while the grant lasts";
  EXPECT_LT(after_ms, 1000) << "data still arrived " << after_ms << " ms after expiry";
  auto cuts = Cuts();
  ASSERT_EQ(cuts.size(), 1u);
  EXPECT_EQ(cuts[0].grant_id, 41u);
  EXPECT_EQ(cuts[0].hook, LATCH_HOOK_PACKET_INGRESS);
}

// Cutting decides again per packet, for the socket's owner: a connection
// opened to a destination that then becomes protected stops too when nobody
// holds a grant for it, while traffic to unprotected ports flows on.
TEST_F(GrantCutTest, ANewlyProtectedDestinationStopsItsOpenConnections) {
  Clock::time_point protected_at;
  auto [bytes, last] = Stream(open4_, [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::vector<resource::Resource> rs = TestResources();
    resource::Resource r{
        77,          "newly-protected",       {}, resource::Protocol::kTcp, open4_.port,
        open4_.port, resource::Mode::kEnforce};
    ASSERT_TRUE(resource::Cidr::Parse("127.0.0.0/8", &r.destinations.emplace_back()).ok());
    rs.push_back(r);
    ASSERT_TRUE(enforcer_->SetResources(rs).ok());
    protected_at = Clock::now();
  });
  EXPECT_GT(bytes, 10);
  int64_t after_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(last - protected_at).count();
  EXPECT_LT(after_ms, 1000) << "data still flowed " << after_ms << " ms after protection";
  // Unprotected again: a new stream to the same port flows to the end.
  ASSERT_TRUE(enforcer_->SetResources(TestResources()).ok());
  auto [bytes_after, last_after] = Stream(open4_, [] {});
  EXPECT_GT(bytes_after, 150) << "an unprotected port must not be cut";
  EXPECT_TRUE(Cuts().empty()) << "a connection that never had a grant was not cut at a grant's end";
}

// The per-packet programs find protected sockets by their peer port: the
// bitmap follows the resources exactly, and an upgrade removes the socket
// storage map that earlier versions pinned.
TEST_F(GrantCutTest, PortBitmapFollowsResourcesAndUpgradesDropRetiredPins) {
  auto bit = [&](uint16_t port) {
    uint32_t word = port / 64;
    uint64_t bits = 0;
    EXPECT_EQ(bpf_map_lookup_elem(guard_->ports_fd(), &word, &bits), 0);
    return ((bits >> (port % 64)) & 1) != 0;
  };
  EXPECT_TRUE(bit(tcp4_.port));
  EXPECT_TRUE(bit(udp4_.port));
  EXPECT_TRUE(bit(audit4_.port));
  EXPECT_FALSE(bit(open4_.port));
  ASSERT_TRUE(enforcer_->SetResources({}).ok());
  for (uint32_t word = 0; word < LATCH_PORT_WORDS; ++word) {
    uint64_t bits = 1;
    ASSERT_EQ(bpf_map_lookup_elem(guard_->ports_fd(), &word, &bits), 0);
    EXPECT_EQ(bits, 0u) << "word " << word;
  }
  int old_map = bpf_map_create(BPF_MAP_TYPE_ARRAY, "latch_sock_gra", 4, 8, 1, nullptr);
  ASSERT_GE(old_map, 0);
  ASSERT_EQ(bpf_obj_pin(old_map, (pin_dir_ + "/latch_sock_grants").c_str()), 0);
  ::close(old_map);
  enforcer_.reset();
  guard_.reset();
  Install();
  EXPECT_FALSE(fs::exists(pin_dir_ + "/latch_sock_grants"));
}

// With cutting switched off (a configuration choice), a connection opened under
// a grant outlives it, new connects are still refused, and no per-packet
// programs are attached; switching it back on re-attaches them.
TEST_F(GrantCutTest, CuttingCanBeSwitchedOff) {
  enforcer_.reset();
  guard_.reset();
  Install(/*cut_established=*/false);
  EXPECT_TRUE(guard_->adopted());
  EXPECT_FALSE(fs::exists(pin_dir_ + "/link_egress"));
  EXPECT_FALSE(fs::exists(pin_dir_ + "/link_ingress"));
  Clock::time_point cut_at;
  auto [bytes, last_after_end_ms] = StreamUnderGrant(
      400, [] {}, &cut_at);
  EXPECT_GT(bytes, 100);
  EXPECT_GT(last_after_end_ms, 1000) << "the connection should have carried on";
  EXPECT_EQ(Tcp4(kAlice), kRefused);  // but the grant has ended for new connects
  enforcer_.reset();
  guard_.reset();
  Install(/*cut_established=*/true);
  EXPECT_TRUE(fs::exists(pin_dir_ + "/link_egress"));
  EXPECT_TRUE(fs::exists(pin_dir_ + "/link_ingress"));
}

// 5. Audit mode allows and records; enforce mode denies and records.
TEST_F(GuardKernelTest, AuditAllowsEnforceDeniesBothRecord) {
  DrainEvents();
  EXPECT_EQ(Run(cgroup_, kAlice, AF_INET, SOCK_STREAM, audit4_.port), kConnected);
  EXPECT_EQ(Tcp4(kAlice), kRefused);
  auto events = DrainEvents();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].verdict, LATCH_VERDICT_AUDIT_ALLOW);
  EXPECT_EQ(events[0].resource_id, kAuditResource);
  EXPECT_EQ(events[1].verdict, LATCH_VERDICT_DENY);
  EXPECT_EQ(events[1].resource_id, kTcpResource);
  std::array<uint64_t, LATCH_CTR_COUNT> counters{};
  ASSERT_TRUE(guard_->ReadCounters(&counters).ok());
  EXPECT_EQ(counters[LATCH_CTR_AUDIT_ALLOW], 1u);
  EXPECT_EQ(counters[LATCH_CTR_DENY], 1u);
  EXPECT_EQ(counters[LATCH_CTR_EVENTS], 2u);
  EXPECT_EQ(counters[LATCH_CTR_RINGBUF_FULL], 0u);
}

// 6. Losing the process side leaves enforcement in place, and a new Install
// adopts the pins and the grants, with no moment in which a denied connect
// gets through (a prober connects in a loop the whole time).
TEST_F(GuardKernelTest, RestartAdoptsPinsWithoutAWindow) {
  ASSERT_TRUE(
      enforcer_->ApplyGrant(MakeGrant(6, {Principal::Kind::kUid, kBob}, kTcpResource, -10, 60000))
          .ok());
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::string procs = cgroup_ + "/cgroup.procs";
  uint16_t port = tcp4_.port;
  pid_t prober = ::fork();
  if (prober == 0) {
    ::close(fds[0]);
    if (!JoinCgroupAs(procs, kAlice)) ::_exit(2);
    uint32_t attempts = 0;
    uint32_t successes = 0;
    timespec start;
    ::clock_gettime(CLOCK_MONOTONIC, &start);
    while (true) {
      timespec now;
      ::clock_gettime(CLOCK_MONOTONIC, &now);
      if ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 > 800) break;
      int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = Loopback4(port);
      ++attempts;
      if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) ++successes;
      ::close(s);
    }
    uint32_t out[2] = {attempts, successes};
    ::write(fds[1], out, sizeof(out));
    ::_exit(0);
  }
  ::close(fds[1]);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  enforcer_.reset();
  guard_.reset();
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  Install();  // reloads the programs and switches the pinned links to them
  EXPECT_TRUE(guard_->adopted());
  std::vector<KernelGrant> grants;
  ASSERT_TRUE(enforcer_->ListGrants(&grants).ok());
  ASSERT_EQ(grants.size(), 1u);
  EXPECT_EQ(grants[0].grant_id, 6u);
  uint32_t result[2] = {0, 0};
  ASSERT_EQ(::read(fds[0], result, sizeof(result)), static_cast<ssize_t>(sizeof(result)));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(prober, &status, 0);
  EXPECT_GT(result[0], 100u) << "the prober hardly ran";
  EXPECT_EQ(result[1], 0u) << "a denied connect got through during the restart";
  EXPECT_EQ(Tcp4(kBob), kConnected);  // the adopted grant still works
}

// 7. Every decision yields exactly one event, with the right fields.
TEST_F(GuardKernelTest, EachDecisionIsOneEventWithItsFields) {
  DrainEvents();
  ASSERT_TRUE(
      enforcer_
          ->ApplyGrant(MakeGrant(77, {Principal::Kind::kUid, kAlice}, kTcpResource, -10, 60000))
          .ok());
  uint64_t boot_before = NowBootNs();
  EXPECT_EQ(Tcp4(kAlice), kConnected);
  pid_t allowed_pid = last_child_;
  EXPECT_EQ(Run(cgroup_, kBob, AF_INET6, SOCK_STREAM, tcp6_.port, nullptr), kRefused);
  pid_t denied_pid = last_child_;
  auto events = DrainEvents();
  ASSERT_EQ(events.size(), 2u);

  const auto& a = events[0];
  EXPECT_EQ(a.verdict, LATCH_VERDICT_ALLOW_GRANT);
  EXPECT_EQ(a.grant_id, 77u);
  EXPECT_EQ(a.uid, kAlice);
  EXPECT_EQ(a.gid, kAlice);
  EXPECT_EQ(a.tgid, static_cast<uint32_t>(allowed_pid));
  EXPECT_EQ(a.pid, static_cast<uint32_t>(allowed_pid));
  EXPECT_EQ(a.cgroup_id, guard_->cgroup_id());
  EXPECT_EQ(a.family, AF_INET);
  EXPECT_EQ(a.protocol, IPPROTO_TCP);
  EXPECT_EQ(a.port, tcp4_.port);
  EXPECT_EQ(a.hook, LATCH_HOOK_CONNECT4);
  EXPECT_EQ(a.resource_id, kTcpResource);
  const uint8_t loopback4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
  EXPECT_EQ(std::memcmp(a.addr, loopback4, 16), 0);
  EXPECT_GE(a.ktime_boot_ns, boot_before);
  EXPECT_LE(a.ktime_boot_ns, NowBootNs());
  EXPECT_STREQ(a.comm, "guard_kernel_te");  // the test binary's name, truncated by the kernel

  const auto& d = events[1];
  EXPECT_EQ(d.verdict, LATCH_VERDICT_DENY);
  EXPECT_EQ(d.grant_id, 0u);
  EXPECT_EQ(d.uid, kBob);
  EXPECT_EQ(d.tgid, static_cast<uint32_t>(denied_pid));
  EXPECT_EQ(d.family, AF_INET6);
  EXPECT_EQ(d.hook, LATCH_HOOK_CONNECT6);
  EXPECT_EQ(d.port, tcp6_.port);
  const uint8_t loopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  EXPECT_EQ(std::memcmp(d.addr, loopback6, 16), 0);
}

// 7 (flood). With a tiny ring buffer and nobody reading, events delivered plus
// counted losses equal the decisions made, exactly.
TEST_F(GuardKernelTest, FloodLossesAreCountedExactly) {
  enforcer_.reset();
  guard_.reset();
  ASSERT_TRUE(Guard::Uninstall(pin_dir_).ok());
  ASSERT_TRUE(fs::create_directory(pin_dir_));
  Status s = Guard::Install({pin_dir_, cgroup_, 4096}, &guard_);  // room for a few dozen events
  ASSERT_TRUE(s.ok()) << s.ToString();
  enforcer_ = std::make_unique<BpfEnforcer>(*guard_);
  ASSERT_TRUE(enforcer_->SetResources(TestResources()).ok());

  constexpr int kAttempts = 3000;
  std::string procs = cgroup_ + "/cgroup.procs";
  uint16_t port = udp4_.port;
  pid_t child = ::fork();
  if (child == 0) {
    if (!JoinCgroupAs(procs, 0)) ::_exit(2);
    int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = Loopback4(port);
    int refused = 0;
    for (int i = 0; i < kAttempts; ++i) {
      if (::sendto(sock, "x", 1, 0, reinterpret_cast<sockaddr*>(&a), sizeof(a)) < 0 &&
          errno == EPERM)
        ++refused;
    }
    ::_exit(refused == kAttempts ? 0 : 1);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << "every send should have been refused";

  size_t delivered = DrainEvents().size();
  std::array<uint64_t, LATCH_CTR_COUNT> counters{};
  ASSERT_TRUE(guard_->ReadCounters(&counters).ok());
  EXPECT_EQ(counters[LATCH_CTR_DENY], static_cast<uint64_t>(kAttempts));
  EXPECT_GT(counters[LATCH_CTR_RINGBUF_FULL], 0u) << "the flood should overflow a 4 KiB ring";
  EXPECT_EQ(delivered + counters[LATCH_CTR_RINGBUF_FULL], static_cast<uint64_t>(kAttempts));
  EXPECT_EQ(counters[LATCH_CTR_EVENTS], delivered);
  std::printf("flood: %d decisions, %zu events delivered, %llu counted as lost\n", kAttempts,
              delivered, static_cast<unsigned long long>(counters[LATCH_CTR_RINGBUF_FULL]));
}

// The start-up probe passes on this kernel (and would name what is missing).
TEST_F(GuardKernelTest, KernelHasWhatTheGuardNeeds) {
  Status s = ProbeKernelFeatures();
  EXPECT_TRUE(s.ok()) << s.ToString();
}

// 8. Bad configuration: a clear error, and nothing attached or pinned.
TEST_F(GuardKernelTest, BadConfigurationAttachesNothing) {
  std::string fresh = bpffs_ + "/other";
  ASSERT_TRUE(fs::create_directory(fresh));
  std::unique_ptr<Guard> g;
  Status s = Guard::Install({fresh, cgroup_ + "/missing", 1u << 16}, &g);
  EXPECT_EQ(s.code(), Status::Code::kNotFound) << s.ToString();
  EXPECT_NE(s.message().find("missing"), std::string::npos) << s.ToString();
  s = Guard::Install({"/tmp", cgroup_, 1u << 16}, &g);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("bpffs"), std::string::npos) << s.ToString();
  s = Guard::Install({fresh, cgroup_, 1000}, &g);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(fs::is_empty(fresh));
  // Moving a pinned guard to another cgroup is refused, not half-done.
  std::string elsewhere = cgroup_ + "/elsewhere";
  ASSERT_TRUE(fs::create_directory(elsewhere));
  s = Guard::Install({pin_dir_, elsewhere, 1u << 16}, &g);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
  EXPECT_EQ(Tcp4(kAlice), kRefused);  // the original guard still holds
}

// Issue 13.1: the unspecified address is routed to this host by the kernel;
// the guard decides on where it really goes. Each form, TCP and UDP, IPv4
// and IPv6, in both cut modes, with and without a bound source.
struct Reach {
  int family;
  int type;
  const char* target;   // a literal of `family`
  const char* bind_to;  // nullptr: unbound
  bool sendmmsg = false;
};

// In a child: join the cgroup as `uid`, then connect or send as `r` says.
[[noreturn]] void ReachChild(const std::string& procs, uint32_t uid, const Reach& r,
                             uint16_t port) {
  if (!JoinCgroupAs(procs, uid)) ::_exit(kOtherError);
  int s = ::socket(r.family, r.type | SOCK_CLOEXEC, 0);
  auto fill = [&](const char* text, uint16_t p, sockaddr_storage* ss) -> socklen_t {
    *ss = {};
    if (r.family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(p);
      if (::inet_pton(AF_INET, text, &a->sin_addr) != 1) ::_exit(kOtherError);
      return sizeof(*a);
    }
    auto* a = reinterpret_cast<sockaddr_in6*>(ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(p);
    if (::inet_pton(AF_INET6, text, &a->sin6_addr) != 1) ::_exit(kOtherError);
    return sizeof(*a);
  };
  sockaddr_storage ss;
  if (r.bind_to != nullptr) {
    socklen_t len = fill(r.bind_to, 0, &ss);
    if (::bind(s, reinterpret_cast<sockaddr*>(&ss), len) != 0) ::_exit(kOtherError);
  }
  socklen_t len = fill(r.target, port, &ss);
  int rc;
  if (r.type == SOCK_STREAM) {
    rc = ::connect(s, reinterpret_cast<sockaddr*>(&ss), len);
  } else if (r.sendmmsg) {
    char byte = 'x';
    iovec iov{&byte, 1};
    mmsghdr msgs[2] = {};
    for (mmsghdr& m : msgs) {
      m.msg_hdr.msg_name = &ss;
      m.msg_hdr.msg_namelen = len;
      m.msg_hdr.msg_iov = &iov;
      m.msg_hdr.msg_iovlen = 1;
    }
    rc = ::sendmmsg(s, msgs, 2, 0);
  } else {
    rc = static_cast<int>(::sendto(s, "x", 1, 0, reinterpret_cast<sockaddr*>(&ss), len));
  }
  if (rc >= 0) ::_exit(kConnected);
  ::_exit(errno == EPERM ? kRefused : kOtherError);
}

class UnspecifiedAddressTest : public GrantCutTest,
                               public ::testing::WithParamInterface<bool /*cut*/> {
 protected:
  int Try(uint32_t uid, const Reach& r) {
    uint16_t port = r.type == SOCK_STREAM ? tcp4_.port : udp4_.port;
    pid_t pid = ::fork();
    if (pid == 0) ReachChild(cgroup_ + "/cgroup.procs", uid, r, port);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : kOtherError;
  }
  static std::vector<Reach> Forms() {
    return {
        {AF_INET, SOCK_STREAM, "0.0.0.0", nullptr},
        {AF_INET, SOCK_STREAM, "0.0.0.0", "127.0.0.1"},
        {AF_INET6, SOCK_STREAM, "::ffff:0.0.0.0", nullptr},
        {AF_INET6, SOCK_STREAM, "::", nullptr},
        {AF_INET, SOCK_DGRAM, "0.0.0.0", nullptr},
        {AF_INET, SOCK_DGRAM, "0.0.0.0", nullptr, /*sendmmsg=*/true},
        {AF_INET, SOCK_DGRAM, "0.0.0.0", "127.0.0.1"},
        {AF_INET6, SOCK_DGRAM, "::ffff:0.0.0.0", nullptr},
        {AF_INET6, SOCK_DGRAM, "::", nullptr},
        {AF_INET6, SOCK_DGRAM, "::", nullptr, /*sendmmsg=*/true},
    };
  }
  static std::string Name(const Reach& r) {
    return std::string(r.type == SOCK_STREAM ? "tcp " : "udp ") + r.target +
           (r.bind_to ? std::string(" bound to ") + r.bind_to : "") +
           (r.sendmmsg ? " sendmmsg" : "");
  }
};

TEST_P(UnspecifiedAddressTest, IsDecidedAsTheLoopbackItBecomes) {
  if (!GetParam()) {
    enforcer_.reset();
    guard_.reset();
    Install(/*cut_established=*/false);
  }
  DrainEvents();
  for (const Reach& r : Forms()) EXPECT_EQ(Try(kAlice, r), kRefused) << Name(r);
  auto events = DrainEvents();
  ASSERT_EQ(events.size(), Forms().size());
  for (const auto& e : events) {
    EXPECT_EQ(e.verdict, LATCH_VERDICT_DENY);
    // Recorded with the destination it would have reached.
    char text[INET6_ADDRSTRLEN];
    ::inet_ntop(AF_INET6, e.addr, text, sizeof(text));
    EXPECT_TRUE(std::string(text) == "::ffff:127.0.0.1" || std::string(text) == "::1") << text;
  }
  // A grant for the loopback resource covers them: decided as that resource.
  ASSERT_TRUE(
      enforcer_
          ->ApplyGrant(MakeGrant(60, {Principal::Kind::kUid, kAlice}, kTcpResource, -10, 60000))
          .ok());
  ASSERT_TRUE(
      enforcer_
          ->ApplyGrant(MakeGrant(61, {Principal::Kind::kUid, kAlice}, kUdpResource, -10, 60000))
          .ok());
  for (const Reach& r : Forms()) EXPECT_EQ(Try(kAlice, r), kConnected) << Name(r);
  EXPECT_EQ(Try(kBob, Forms()[0]), kRefused);
}

INSTANTIATE_TEST_SUITE_P(CutModes, UnspecifiedAddressTest, ::testing::Bool(),
                         [](const auto& p) { return p.param ? "cutting" : "not_cutting"; });

// An unconnected UDP socket names its peer only in each datagram: the
// per-packet programs read it from the packet. A datagram from a protected
// UDP service to a grant-less unconnected socket is dropped on arrival (it
// was delivered: the check skipped sockets without a peer port).
TEST_F(GrantCutTest, UnconnectedUdpIsCheckedByThePacketsAddresses) {
  auto receives = [&](uint32_t uid) {
    int ready[2];
    EXPECT_EQ(::pipe(ready), 0);
    std::string procs = cgroup_ + "/cgroup.procs";
    pid_t child = ::fork();
    if (child == 0) {
      ::close(ready[0]);
      if (!JoinCgroupAs(procs, uid)) ::_exit(kOtherError);
      int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      sockaddr_in a = Loopback4(0);
      if (::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) ::_exit(kOtherError);
      socklen_t len = sizeof(a);
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
      uint16_t port = ntohs(a.sin_port);
      if (::write(ready[1], &port, sizeof(port)) != sizeof(port)) ::_exit(kOtherError);
      pollfd p{s, POLLIN, 0};
      ::_exit(::poll(&p, 1, 700) == 1 ? kConnected : kRefused);
    }
    ::close(ready[1]);
    uint16_t port = 0;
    EXPECT_EQ(::read(ready[0], &port, sizeof(port)), static_cast<ssize_t>(sizeof(port)));
    ::close(ready[0]);
    sockaddr_in to = Loopback4(port);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(::sendto(udp4_.fd, "reply", 5, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to)), 5);
    }
    int status = 0;
    ::waitpid(child, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : kOtherError;
  };
  std::array<uint64_t, LATCH_CTR_COUNT> before{}, after{};
  ASSERT_TRUE(guard_->ReadCounters(&before).ok());
  EXPECT_EQ(receives(kAlice), kRefused);
  ASSERT_TRUE(guard_->ReadCounters(&after).ok());
  EXPECT_GE(after[LATCH_CTR_CUT_PACKETS] - before[LATCH_CTR_CUT_PACKETS], 3u);
  ASSERT_TRUE(
      enforcer_
          ->ApplyGrant(MakeGrant(62, {Principal::Kind::kUid, kAlice}, kUdpResource, -10, 60000))
          .ok());
  EXPECT_EQ(receives(kAlice), kConnected);
}

// Issue 13.3: a destination an enforced resource names is enforced, whatever
// narrower audit resource also names it.
TEST_F(GuardKernelTest, EnforcedResourceWinsOverANarrowerAuditOne) {
  std::vector<resource::Resource> rs;
  resource::Resource wide{
      21,         "loopback-db",           {}, resource::Protocol::kTcp, tcp4_.port,
      tcp4_.port, resource::Mode::kEnforce};
  ASSERT_TRUE(resource::Cidr::Parse("127.0.0.0/8", &wide.destinations.emplace_back()).ok());
  resource::Resource narrow{22,    "watch-one",           {}, resource::Protocol::kAny, 0,
                            65535, resource::Mode::kAudit};
  ASSERT_TRUE(resource::Cidr::Parse("127.0.0.1", &narrow.destinations.emplace_back()).ok());
  ASSERT_TRUE(enforcer_->SetResources({narrow, wide}).ok());
  DrainEvents();
  EXPECT_EQ(Tcp4(kAlice), kRefused);
  EXPECT_EQ(Run(cgroup_, kAlice, AF_INET, SOCK_STREAM, open4_.port), kConnected);  // audited
  auto events = DrainEvents();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].verdict, LATCH_VERDICT_DENY);
  EXPECT_EQ(events[0].resource_id, 21u);
  EXPECT_EQ(events[1].verdict, LATCH_VERDICT_AUDIT_ALLOW);
  EXPECT_EQ(events[1].resource_id, 22u);
}

// Issue 13.2: destinations = ["local"] names every address of this host,
// current and future, resolved by the kernel. In a network namespace made
// after the resources were set (so all its addresses are "future" ones), with
// an IPv4 and an IPv6 address on an ordinary interface (a veth) and services
// listening on [::] (as a database on 0.0.0.0 does): without a grant the
// loopback address is refused at connect (EPERM), the host's own addresses
// get no connection (the SYN is dropped as it leaves through lo: the connect
// times out) and a datagram to them fails with EPERM, each decision recorded;
// another port is untouched; a grant opens them. Before, a resource could
// only list addresses, and every address it missed answered.
enum LocalResult : uint8_t {
  kLocalDone = 0,
  kLocalRefused = 1,
  kLocalError = 2,
  kLocalTimedOut = 3
};

// In a child: a namespace of its own with the addresses above, listeners on
// [::]:port and [::]:other, then as `uid` in `procs`: the five attempts, their
// results written to `out` (TCP 10.99.7.1, TCP 127.0.0.1, UDP 10.99.7.1, TCP
// fd00:99::1 on `port`, TCP 10.99.7.1 on `other`).
[[noreturn]] void LocalChild(int out, const std::string& procs, uint32_t uid, uint16_t port,
                             uint16_t other) {
  if (::unshare(CLONE_NEWNET) != 0) ::_exit(10);
  if (std::system("ip link set lo up && ip link add latchv0 type veth peer name latchv1 && "
                  "ip addr add 10.99.7.1/24 dev latchv0 && "
                  "ip -6 addr add fd00:99::1/64 dev latchv0 nodad && "
                  "ip link set latchv0 up && ip link set latchv1 up") != 0) {
    ::_exit(11);
  }
  auto listen_any = [](int type, uint16_t p) {
    int fd = ::socket(AF_INET6, type | SOCK_CLOEXEC, 0);
    int zero = 0;
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_any;
    a.sin6_port = htons(p);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) ::_exit(12);
    if (type == SOCK_STREAM && ::listen(fd, 16) != 0) ::_exit(13);
  };
  listen_any(SOCK_STREAM, port);
  listen_any(SOCK_DGRAM, port);
  listen_any(SOCK_STREAM, other);
  if (!JoinCgroupAs(procs, uid)) ::_exit(14);
  auto attempt = [](int family, int type, const char* addr, uint16_t p) -> uint8_t {
    sockaddr_storage ss{};
    socklen_t len;
    if (family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      a->sin_family = AF_INET;
      a->sin_port = htons(p);
      ::inet_pton(AF_INET, addr, &a->sin_addr);
      len = sizeof(*a);
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      a->sin6_family = AF_INET6;
      a->sin6_port = htons(p);
      ::inet_pton(AF_INET6, addr, &a->sin6_addr);
      len = sizeof(*a);
    }
    int s = ::socket(family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (type == SOCK_DGRAM) {
      if (::sendto(s, "x", 1, 0, reinterpret_cast<sockaddr*>(&ss), len) == 1) return kLocalDone;
      return errno == EPERM ? kLocalRefused : kLocalError;
    }
    if (::connect(s, reinterpret_cast<sockaddr*>(&ss), len) == 0) return kLocalDone;
    if (errno == EPERM) return kLocalRefused;
    if (errno != EINPROGRESS) return kLocalError;
    pollfd pfd{s, POLLOUT, 0};
    if (::poll(&pfd, 1, 500) == 0) return kLocalTimedOut;
    int err = 0;
    socklen_t elen = sizeof(err);
    ::getsockopt(s, SOL_SOCKET, SO_ERROR, &err, &elen);
    return err == 0 ? kLocalDone : err == EPERM ? kLocalRefused : kLocalError;
  };
  uint8_t r[5] = {attempt(AF_INET, SOCK_STREAM, "10.99.7.1", port),
                  attempt(AF_INET, SOCK_STREAM, "127.0.0.1", port),
                  attempt(AF_INET, SOCK_DGRAM, "10.99.7.1", port),
                  attempt(AF_INET6, SOCK_STREAM, "fd00:99::1", port),
                  attempt(AF_INET, SOCK_STREAM, "10.99.7.1", other)};
  ::_exit(::write(out, r, sizeof(r)) == sizeof(r) ? 0 : 15);
}

TEST_F(GuardKernelTest, LocalNamesEveryAddressOfThisHost) {
  constexpr uint16_t kPort = 15355, kOther = 15356;  // in the child's own namespace
  resource::Resource local{31,    "this-host", resource::LoopbackCidrs(), resource::Protocol::kAny,
                           kPort, kPort,       resource::Mode::kEnforce};
  local.local = true;
  ASSERT_TRUE(enforcer_->SetResources({local}).ok());
  DrainEvents();
  auto run = [&](uint32_t uid, pid_t* child) {
    int fds[2];
    EXPECT_EQ(::pipe(fds), 0);
    *child = ::fork();
    if (*child == 0) LocalChild(fds[1], cgroup_ + "/cgroup.procs", uid, kPort, kOther);
    ::close(fds[1]);
    std::vector<int> r(5, -1);
    uint8_t bytes[5];
    if (::read(fds[0], bytes, sizeof(bytes)) == sizeof(bytes)) r.assign(bytes, bytes + 5);
    ::close(fds[0]);
    int status = 0;
    ::waitpid(*child, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    return r;
  };
  pid_t alice = 0;
  EXPECT_EQ(run(kAlice, &alice), std::vector<int>({kLocalTimedOut, kLocalRefused, kLocalRefused,
                                                   kLocalTimedOut, kLocalDone}));
  auto events = DrainEvents();
  // The loopback connect (at connect), the SYNs (at least one each, more if
  // retransmitted within the wait) and the datagram.
  int egress_v4 = 0, egress_v6 = 0, at_connect = 0, datagram = 0;
  for (const auto& e : events) {
    EXPECT_EQ(e.verdict, LATCH_VERDICT_DENY);
    EXPECT_EQ(e.resource_id, 31u);
    EXPECT_EQ(e.port, kPort);
    EXPECT_EQ(e.uid, kAlice);
    if (e.hook == LATCH_HOOK_CONNECT4) ++at_connect;
    if (e.hook != LATCH_HOOK_EGRESS_LOCAL) continue;
    if (e.protocol == IPPROTO_UDP) {
      ++datagram;
    } else if (e.family == AF_INET) {
      ++egress_v4;
      EXPECT_EQ(e.addr[12], 10);
      EXPECT_EQ(e.addr[15], 1);
      if (egress_v4 == 1) {
        EXPECT_EQ(e.tgid, static_cast<uint32_t>(alice));  // the connecting process
      }
    } else {
      ++egress_v6;
      EXPECT_EQ(e.addr[0], 0xfd);
    }
  }
  EXPECT_EQ(at_connect, 1);
  EXPECT_GE(egress_v4, 1);
  EXPECT_GE(egress_v6, 1);
  EXPECT_EQ(datagram, 1);

  // A grant opens every address of this host.
  ASSERT_TRUE(
      enforcer_->ApplyGrant(MakeGrant(71, {Principal::Kind::kUid, kBob}, 31, 0, 60'000)).ok());
  pid_t bob = 0;
  EXPECT_EQ(run(kBob, &bob),
            std::vector<int>({kLocalDone, kLocalDone, kLocalDone, kLocalDone, kLocalDone}));
  bool granted_syn = false;
  for (const auto& e : DrainEvents()) {
    granted_syn |= e.hook == LATCH_HOOK_EGRESS_LOCAL && e.verdict == LATCH_VERDICT_ALLOW_GRANT &&
                   e.grant_id == 71;
  }
  EXPECT_TRUE(granted_syn);
}

// Issue 13.7: root uninstalls the guard behind the running agent's back (or
// replaces a pin). Verify names what is wrong; Repair puts it back from what
// this process holds, with the live grants; a restart then adopts it.
TEST_F(GuardKernelTest, ADetachedGuardIsFoundAndPutBack) {
  std::vector<std::string> problems;
  ASSERT_TRUE(guard_->Verify(&problems).ok());
  EXPECT_TRUE(problems.empty());
  ASSERT_TRUE(
      enforcer_->ApplyGrant(MakeGrant(70, {Principal::Kind::kUid, kBob}, kTcpResource, -10, 60000))
          .ok());
  ASSERT_TRUE(Guard::Uninstall(pin_dir_).ok());
  EXPECT_EQ(Tcp4(kAlice), kConnected) << "uninstalled: nothing enforces";
  ASSERT_TRUE(guard_->Verify(&problems).ok());
  auto has = [&](const std::string& p) {
    return std::find(problems.begin(), problems.end(), p) != problems.end();
  };
  EXPECT_TRUE(has("link_connect4 detached"));
  EXPECT_TRUE(has("pin link_connect4 missing"));
  EXPECT_TRUE(has("pin latch_grants missing"));
  ASSERT_TRUE(guard_->Repair().ok());
  ASSERT_TRUE(guard_->Verify(&problems).ok());
  EXPECT_TRUE(problems.empty()) << problems.front();
  EXPECT_EQ(Tcp4(kAlice), kRefused);
  EXPECT_EQ(Tcp4(kBob), kConnected) << "the live grants came back with the maps";
  EXPECT_TRUE(fs::exists(pin_dir_ + "/link_connect4"));
  EXPECT_TRUE(fs::exists(pin_dir_ + "/latch_grants"));
  // A pin replaced by another map of the same shape is found and put back.
  int impostor = bpf_map_create(BPF_MAP_TYPE_HASH, "impostor", sizeof(latch_grant_key),
                                sizeof(latch_grant_value), 16, nullptr);
  ASSERT_GE(impostor, 0);
  ASSERT_EQ(::unlink((pin_dir_ + "/latch_grants").c_str()), 0);
  ASSERT_EQ(bpf_obj_pin(impostor, (pin_dir_ + "/latch_grants").c_str()), 0);
  ::close(impostor);
  ASSERT_TRUE(guard_->Verify(&problems).ok());
  EXPECT_TRUE(has("pin latch_grants replaced"));
  ASSERT_TRUE(guard_->Repair().ok());
  ASSERT_TRUE(guard_->Verify(&problems).ok());
  EXPECT_TRUE(problems.empty());
  // The next start adopts the repaired guard, grants and all.
  enforcer_.reset();
  guard_.reset();
  Install();
  EXPECT_TRUE(guard_->adopted());
  EXPECT_EQ(Tcp4(kBob), kConnected);
  EXPECT_EQ(Tcp4(kAlice), kRefused);
}

// Issue 13.10: with a fill mark, decision records below it are submitted
// without waking the reader (the agent collects them on its timer); past it
// the reader is woken. Nothing is lost either way.
TEST_F(GuardKernelTest, RecordsBelowTheMarkDoNotWakeTheReader) {
  enforcer_.reset();
  guard_.reset();
  ASSERT_TRUE(Guard::Uninstall(pin_dir_).ok());
  ASSERT_TRUE(fs::create_directory(pin_dir_));
  Status s = Guard::Install({pin_dir_, cgroup_, 1u << 16, true, /*wakeup_bytes=*/8192}, &guard_);
  ASSERT_TRUE(s.ok()) << s.ToString();
  enforcer_ = std::make_unique<BpfEnforcer>(*guard_);
  ASSERT_TRUE(enforcer_->SetResources(TestResources()).ok());
  size_t n = 0;
  std::unique_ptr<RingReader> reader;
  ASSERT_TRUE(RingReader::ForDecisionEvents(
                  guard_->events_fd(), [&](const latch_decision_event&) { ++n; }, &reader)
                  .ok());
  auto woken = [&] {
    epoll_event ev;
    return ::epoll_wait(reader->epoll_fd(), &ev, 1, 0) > 0;
  };
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Tcp4(kAlice), kRefused);
  EXPECT_FALSE(woken()) << "5 records (480 bytes) are below the 8 KiB mark";
  int handled = 0;
  ASSERT_TRUE(reader->Consume(&handled).ok());
  EXPECT_EQ(n, 5u);
  // 100 more (9,600 bytes) pass the mark.
  pid_t child = ::fork();
  if (child == 0) {
    if (!JoinCgroupAs(cgroup_ + "/cgroup.procs", kAlice)) ::_exit(1);
    sockaddr_in a = Loopback4(tcp4_.port);
    for (int i = 0; i < 100; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      (void)::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
      ::close(fd);
    }
    ::_exit(0);
  }
  ::waitpid(child, nullptr, 0);
  EXPECT_TRUE(woken());
  ASSERT_TRUE(reader->Consume(&handled).ok());
  EXPECT_EQ(n, 105u);
}

}  // namespace
}  // namespace latch::agent
