// guard_bench: what the guard costs a connect, and how fast decision events
// drain, in one run.
//
//   build/tests/guard_bench [--connects N] [--blocks B] [--flood N] [--cut on|off]
//
// Connects: N loopback TCP connects per case (connect; the server accepts and
// closes; the client closes with RST so no TIME_WAIT piles up), (a) from a
// cgroup with no program attached, (b) from a sibling cgroup with the guard
// attached, the destination unprotected, (c) the same, protected, with a live
// grant. The N connects of each case run in B blocks, interleaved with the
// other cases' blocks (the order rotating), so that drift in the machine's
// speed over the run falls on all three alike; the decision events of each
// block are drained between blocks, untimed, as the agent would. Reported:
// each case's rate over all its blocks, the ratios, and the median of the
// per-block paired ratios. The programs' own cost comes from the kernel's
// BPF statistics (run_time_ns / run_cnt), next to the same figure for an
// empty connect4 program (what the statistics and the hook's dispatch report
// for doing nothing on this machine).
//
// Recording tax (issue 13.10): granted connects with the agent draining live,
// inside the timed blocks, doing the agent's own work per record (encode,
// spool, flush, on a spool in a temporary directory): (1) bare, (2) an
// nftables rule set of the same shape (skuid + daddr + dport; its own table,
// present only during its blocks), (3) the guard with nobody reading (the
// agent paused; drained between blocks, untimed), (4) the guard, the drain
// woken by every record (the agent before issue 13.10), (5) the guard, records
// below the fill mark not waking it, drained on a 100 ms timer (the agent
// now). Reported: rates, ratios to bare, and the drain thread's CPU time per
// record. The whole benchmark runs in a network namespace of its own, so the
// nftables rules touch nothing else.
//
// Data path: the same three cases, each streaming small writes (one packet
// each) over one connection per block; writes/s and ratios, and the
// per-packet programs' cost (latch_egress, latch_ingress) per case: what a
// protected connection's data pays for its decision and socket storage.
//
// Events: one process floods UDP sendto() at an audit-mode destination; a
// reader thread drains the ring buffer as the agent does. Reported: events/s
// drained, and decisions == delivered + counted losses, exactly.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "agent/boot_clock.h"
#include "agent/enforcer.h"
#include "agent/guard.h"
#include "agent/ring_reader.h"
#include "agent/spool.h"
#include "agent/spool_sink.h"
#include "kernel_sandbox.h"
#include "schemas/event_json.h"

namespace {

using namespace latch;
using namespace latch::agent;
using Clock = std::chrono::steady_clock;

constexpr uint32_t kUid = 6161;

// Failures unwind to main (not std::exit), so the sandbox's destructor
// detaches and removes the cgroup and bpffs mount it made.
[[noreturn]] void Die(const std::string& what) { throw std::runtime_error(what); }

int Listener(int type, uint16_t* port) {
  int fd = ::socket(AF_INET, type | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0) Die("bind");
  if (type == SOCK_STREAM && ::listen(fd, 4096) != 0) Die("listen");
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

// In a forked child: join the sandbox cgroup as the benchmark's uid, or exit.
void EnterSandbox(const std::string& cgroup) {
  if (!JoinCgroupAs(cgroup + "/cgroup.procs", kUid)) ::_exit(2);
}

// In a forked child: `n` UDP sends to 127.0.0.1:port, then exit.
[[noreturn]] void FloodUdp(const std::string& cgroup, uint16_t port, int n) {
  EnterSandbox(cgroup);
  int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = Loopback4(port);
  for (int i = 0; i < n; ++i) {
    ::sendto(sock, "x", 1, MSG_DONTWAIT, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  }
  ::_exit(0);
}

// Runs `n` connects from a child in `cgroup`; returns the seconds they took.
double ConnectSeconds(const std::string& cgroup, int listener, uint16_t port, int n) {
  std::atomic<bool> stop{false};
  std::thread server([&] {
    while (!stop.load()) {
      int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (c >= 0) ::close(c);
    }
  });
  int pipefd[2];
  if (::pipe(pipefd) != 0) Die("pipe");
  pid_t child = ::fork();
  if (child == 0) {
    EnterSandbox(cgroup);
    sockaddr_in a = Loopback4(port);
    linger rst{1, 0};
    auto start = Clock::now();
    for (int i = 0; i < n; ++i) {
      int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) ::_exit(3);
      ::setsockopt(s, SOL_SOCKET, SO_LINGER, &rst, sizeof(rst));
      ::close(s);
    }
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    if (::write(pipefd[1], &secs, sizeof(secs)) != sizeof(secs)) ::_exit(4);
    ::_exit(0);
  }
  ::close(pipefd[1]);
  double secs = 0;
  ssize_t got = ::read(pipefd[0], &secs, sizeof(secs));
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  stop = true;
  // Wake the accept loop with one last connection from outside the cgroup.
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = Loopback4(port);
  ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  ::close(s);
  server.join();
  if (got != sizeof(secs) || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    Die("connect loop failed");
  return secs;
}

// The client's side of one TCP stream from a child in `cgroup`: `writes`
// writes of `size` bytes (TCP_NODELAY: a packet each, the most packets per
// byte), then the seconds they took. The receiving end, in this process and
// outside the cgroup, reads everything until the client closes.
double StreamSeconds(const std::string& cgroup, int listener, uint16_t port, int writes, int size) {
  std::thread server([&] {
    int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    char buf[65536];
    while (::read(c, buf, sizeof(buf)) > 0) {
    }
    ::close(c);
  });
  int pipefd[2];
  if (::pipe(pipefd) != 0) Die("pipe");
  pid_t child = ::fork();
  if (child == 0) {
    EnterSandbox(cgroup);
    sockaddr_in a = Loopback4(port);
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) ::_exit(3);
    std::string data(static_cast<size_t>(size), 'x');
    auto start = Clock::now();
    for (int i = 0; i < writes; ++i) {
      if (::write(s, data.data(), data.size()) != size) ::_exit(5);
    }
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    ::close(s);
    if (::write(pipefd[1], &secs, sizeof(secs)) != sizeof(secs)) ::_exit(4);
    ::_exit(0);
  }
  ::close(pipefd[1]);
  double secs = 0;
  ssize_t got = ::read(pipefd[0], &secs, sizeof(secs));
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  server.join();
  if (got != sizeof(secs) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) Die("stream failed");
  return secs;
}

// Two sibling cgroups under the sandbox's: one for the guard, one left bare.
struct BenchCgroups {
  explicit BenchCgroups(const std::string& parent)
      : guarded(parent + "/guarded"), bare(parent + "/bare") {
    if (!std::filesystem::create_directory(guarded) || !std::filesystem::create_directory(bare))
      Die("cannot create the benchmark's cgroups under " + parent);
  }
  ~BenchCgroups() {
    ::rmdir(guarded.c_str());
    ::rmdir(bare.c_str());
  }
  std::string guarded;
  std::string bare;
};

// The run_time_ns / run_cnt an empty connect4 program (r0 = 1; exit) reports
// over `n` connects: the floor under every figure the statistics give here.
double EmptyProgramCost(const std::string& cgroup, int listener, uint16_t port, int n) {
  const bpf_insn allow[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 1},
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},
  };
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = BPF_CGROUP_INET4_CONNECT);
  int prog = bpf_prog_load(BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "latch_empty", "GPL", allow, 2, &opts);
  if (prog < 0) Die("load empty program: " + std::string(std::strerror(errno)));
  int cg = ::open(cgroup.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cg < 0 || bpf_prog_attach(prog, cg, BPF_CGROUP_INET4_CONNECT, BPF_F_ALLOW_MULTI) != 0) {
    Die("attach empty program: " + std::string(std::strerror(errno)));
  }
  ConnectSeconds(cgroup, listener, port, n);
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  int got = bpf_obj_get_info_by_fd(prog, &info, &len);
  bpf_prog_detach2(prog, cg, BPF_CGROUP_INET4_CONNECT);
  ::close(cg);
  ::close(prog);
  if (got != 0 || info.run_cnt == 0) Die("empty program statistics");
  return static_cast<double>(info.run_time_ns) / static_cast<double>(info.run_cnt);
}

void SetBpfStats(bool on) {
  std::ofstream("/proc/sys/kernel/bpf_stats_enabled") << (on ? "1" : "0");
}

// A drain thread that does what the agent does with decision records: waits
// for the ring (woken by the kernel, or its timer), hands each record to a
// spool sink, flushes, releases. Its CPU time is the agent's cost.
class LiveDrain {
 public:
  LiveDrain(int events_fd, const std::string& spool_dir, int timer_ms) : timer_ms_(timer_ms) {
    SpoolOptions o;
    o.dir = spool_dir;
    o.max_bytes = 4ull << 30;
    if (!Spool::Open(o, std::string(16, 'b'), &spool_).ok()) Die("spool");
    sink_ = std::make_unique<SpoolSink>(*spool_);
    if (!RingReader::ForDecisionEvents(
             events_fd,
             [this](const latch_decision_event& e) {
               sink_->AddEvent(e);
               ++records_;
             },
             &reader_)
             .ok()) {
      Die("reader");
    }
    thread_ = std::thread([this] { Loop(); });
  }
  ~LiveDrain() {
    stop_ = true;
    thread_.join();
  }
  uint64_t records() const { return records_.load(); }
  double cpu_seconds() const { return cpu_ns_.load() / 1e9; }
  uint64_t wakeups() const { return wakeups_.load(); }

 private:
  void Loop() {
    while (!stop_.load()) {
      epoll_event ev;
      int n = ::epoll_wait(reader_->epoll_fd(), &ev, 1, timer_ms_);
      if (n > 0) ++wakeups_;
      int handled = 0;
      if (!reader_->Read(4096, &handled).ok()) Die("read");
      if (!sink_->Flush().ok()) Die("flush");
      reader_->Commit();
      // Trim the spool as receipts would, so it does not grow for ever.
      if (spool_->unacknowledged() > 100000) {
        (void)spool_->Acknowledge(spool_->boot_id(), spool_->next_sequence() - 1);
      }
      timespec t;
      ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
      cpu_ns_ = static_cast<uint64_t>(t.tv_sec) * 1'000'000'000ull + t.tv_nsec;
    }
  }
  int timer_ms_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<SpoolSink> sink_;
  std::unique_ptr<RingReader> reader_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> records_{0}, cpu_ns_{0}, wakeups_{0};
  std::thread thread_;
};

bool Nft(const std::string& script) {
  FILE* p = ::popen("nft -f - 2>&1", "w");
  if (p == nullptr) return false;
  std::fputs(script.c_str(), p);
  return ::pclose(p) == 0;
}

// Its own network namespace (with loopback up): nftables rules made here
// affect only the benchmark.
void EnterNetworkNamespace() {
  if (::unshare(CLONE_NEWNET) != 0) Die("unshare(CLONE_NEWNET): " + std::string(strerror(errno)));
  if (std::system("ip link set lo up") != 0) Die("ip link set lo up");
}

resource::Resource MakeResource(uint32_t id, resource::Protocol p, uint16_t port,
                                resource::Mode m) {
  resource::Resource r{id, "r" + std::to_string(id), {}, p, port, port, m};
  if (!resource::Cidr::Parse("127.0.0.1", &r.destinations.emplace_back()).ok()) Die("cidr");
  return r;
}

// The benchmark's resources on `guard`, and an hour's grant of resource 1 to kUid.
void ProtectAndGrant(Guard& guard, const std::vector<resource::Resource>& resources) {
  BpfEnforcer enforcer(guard);
  if (!enforcer.SetResources(resources).ok()) Die("resources");
  int64_t now = NowUnixNs();
  if (!enforcer
           .ApplyGrant(
               {1, {Principal::Kind::kUid, kUid}, 1, now - 1'000'000'000, now + 3600'000'000'000})
           .ok()) {
    Die("grant");
  }
}

// Issue 13.10: see the file comment.
void RecordingTax(const KernelSandbox& sandbox, int listener, uint16_t port,
                  const std::vector<resource::Resource>& resources, int connects, int blocks,
                  bool cut) {
  struct Guarded {
    std::string cgroup, pin_dir;
    std::unique_ptr<Guard> guard;
  };
  const char* names[5] = {"bare (no program, no rules)", "nftables skuid+daddr+dport",
                          "guard, agent paused", "guard, drain woken per record",
                          "guard, fill mark + 100 ms timer"};
  std::string bare = sandbox.cgroup() + "/tax-bare";
  std::filesystem::create_directory(bare);
  Guarded g[3];  // cases 2, 3, 4
  for (int i = 0; i < 3; ++i) {
    g[i].cgroup = sandbox.cgroup() + "/tax-" + std::to_string(i);
    g[i].pin_dir = sandbox.pin_dir() + "-tax-" + std::to_string(i);
    std::filesystem::create_directory(g[i].cgroup);
    std::filesystem::create_directory(g[i].pin_dir);
    uint32_t ring = 1u << 22;
    uint32_t wakeup = i == 2 ? ring / 8 : 0;
    Status s = Guard::Install({g[i].pin_dir, g[i].cgroup, ring, cut, wakeup}, &g[i].guard);
    if (!s.ok()) Die(s.ToString());
    ProtectAndGrant(*g[i].guard, resources);
  }
  char spool_tmpl[] = "/tmp/latch-bench-spool-XXXXXX";
  if (::mkdtemp(spool_tmpl) == nullptr) Die("mkdtemp");
  std::string spools = spool_tmpl;
  uint64_t paused_records = 0;
  std::unique_ptr<RingReader> paused;
  if (!RingReader::ForDecisionEvents(
           g[0].guard->events_fd(), [&](const latch_decision_event&) { ++paused_records; }, &paused)
           .ok()) {
    Die("reader");
  }
  {
    // The agent before: woken per record, its 1 s counters tick aside.
    LiveDrain woken(g[1].guard->events_fd(), spools + "/woken", 1000);
    LiveDrain marked(g[2].guard->events_fd(), spools + "/marked", 100);
    std::string rules =
        "table inet latch_bench {\n chain out {\n  type filter hook output "
        "priority 0; policy accept;\n  meta skuid " +
        std::to_string(kUid) + " ip daddr 127.0.0.1 tcp dport " + std::to_string(port) +
        " counter accept\n  meta skuid 0 accept  # the bench's own wake-up "
        "connect\n  ip daddr 127.0.0.1 tcp dport " +
        std::to_string(port) + " counter drop\n }\n}\n";
    const std::string* cgroup_of[5] = {&bare, &bare, &g[0].cgroup, &g[1].cgroup, &g[2].cgroup};
    double secs[5] = {0, 0, 0, 0, 0};
    std::vector<double> paired[5];
    int per_block = connects / blocks;
    for (int b = 0; b < blocks; ++b) {
      double block[5];
      for (int k = 0; k < 5; ++k) {
        int c = (b + k) % 5;
        if (c == 1 && !Nft(rules)) Die("nft: is nftables installed?");
        block[c] = ConnectSeconds(*cgroup_of[c], listener, port, per_block);
        if (c == 1 && !Nft("delete table inet latch_bench\n")) Die("nft delete");
        if (c == 2) {
          int n = 0;
          if (!paused->Consume(&n).ok()) Die("drain");  // untimed: the agent was paused
        }
      }
      for (int c = 0; c < 5; ++c) {
        secs[c] += block[c];
        paired[c].push_back(block[0] / block[c]);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the timer's last drain
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
    };
    std::printf(
        "recording tax (issue 13.10): granted connects, the agent's drain live in the timed "
        "blocks, %d connects per case in %d interleaved blocks:\n",
        per_block * blocks, blocks);
    for (int c = 0; c < 5; ++c) {
      std::printf("  %-34s %9.0f connects/s", names[c], per_block * blocks / secs[c]);
      if (c > 0) {
        std::printf("  ratio %.3f (median paired %.3f)", secs[0] / secs[c], median(paired[c]));
      }
      std::printf("\n");
    }
    const LiveDrain* drains[2] = {&woken, &marked};
    for (int i = 0; i < 2; ++i) {
      const LiveDrain& d = *drains[i];
      std::printf("  %-34s drain CPU %.3f s for %llu records: %.2f us/record, %llu wakeups\n",
                  names[3 + i], d.cpu_seconds(), static_cast<unsigned long long>(d.records()),
                  d.records() ? d.cpu_seconds() * 1e6 / static_cast<double>(d.records()) : 0.0,
                  static_cast<unsigned long long>(d.wakeups()));
    }
  }
  paused.reset();
  for (auto& x : g) {
    x.guard.reset();
    if (!Guard::Uninstall(x.pin_dir).ok()) Die("uninstall");
    ::rmdir(x.cgroup.c_str());
  }
  ::rmdir(bare.c_str());
  std::filesystem::remove_all(spools);
}

}  // namespace

int Run(int argc, char** argv) {
  int connects = 200000;
  int blocks = 20;
  int flood = 2000000;
  bool cut = true;  // --cut off: measure without the per-packet programs
  for (int i = 1; i < argc; i += 2) {
    std::string f = argv[i];
    if (i + 1 >= argc) f = "--help";
    if (f == "--connects")
      connects = std::stoi(argv[i + 1]);
    else if (f == "--blocks")
      blocks = std::stoi(argv[i + 1]);
    else if (f == "--flood")
      flood = std::stoi(argv[i + 1]);
    else if (f == "--cut")
      cut = std::string(argv[i + 1]) != "off";
    else
      Die("usage: guard_bench [--connects N] [--blocks B] [--flood N] [--cut on|off]");
  }
  if (blocks < 1 || connects < blocks) Die("--connects must be at least --blocks, and both >= 1");
  if (::geteuid() != 0) Die("needs root (it attaches BPF programs to a cgroup it creates)");
  EnterNetworkNamespace();
  KernelSandbox sandbox;
  std::string why = sandbox.Create("latch-bench");
  if (!why.empty()) Die(why);

  uint16_t open_port = 0, protected_port = 0, audit_port = 0;
  int open_fd = Listener(SOCK_STREAM, &open_port);
  int protected_fd = Listener(SOCK_STREAM, &protected_port);
  int audit_fd = Listener(SOCK_DGRAM, &audit_port);
  std::vector<resource::Resource> resources = {
      MakeResource(1, resource::Protocol::kTcp, protected_port, resource::Mode::kEnforce),
      MakeResource(2, resource::Protocol::kUdp, audit_port, resource::Mode::kAudit)};

  std::printf(
      "guard_bench: %d loopback TCP connects per case in %d interleaved blocks, cutting "
      "established connections %s\n",
      connects, blocks, cut ? "on" : "off");
  BenchCgroups cgroups(sandbox.cgroup());
  std::unique_ptr<Guard> guard;
  Status s = Guard::Install({sandbox.pin_dir(), cgroups.guarded, 1u << 22, cut}, &guard);
  if (!s.ok()) Die(s.ToString());
  ProtectAndGrant(*guard, resources);
  uint64_t granted_events = 0;
  std::unique_ptr<RingReader> reader;
  s = RingReader::ForDecisionEvents(
      guard->events_fd(), [&](const latch_decision_event&) { ++granted_events; }, &reader);
  if (!s.ok()) Die(s.ToString());
  auto drain_events = [&] {
    int n = 0;
    if (!reader->Consume(&n).ok()) Die("draining decision events");
  };

  // The three cases: where the client runs and what it connects to.
  struct Case {
    const char* name;
    const std::string* cgroup;
    int listener;
    uint16_t port;
  };
  const Case cases[3] = {
      {"no program attached", &cgroups.bare, open_fd, open_port},
      {"guard, unprotected destination", &cgroups.guarded, open_fd, open_port},
      {"guard, protected, live grant", &cgroups.guarded, protected_fd, protected_port}};
  int per_block = connects / blocks;
  // Runs every case's blocks, interleaved; fills secs[case] and per-block ratios.
  auto run_blocks = [&](double secs[3], std::vector<double>* ratio_unprotected,
                        std::vector<double>* ratio_granted) {
    for (int b = 0; b < blocks; ++b) {
      double block_secs[3] = {0, 0, 0};
      for (int k = 0; k < 3; ++k) {
        int c = (b + k) % 3;  // rotate the order, so no case always runs first
        block_secs[c] =
            ConnectSeconds(*cases[c].cgroup, cases[c].listener, cases[c].port, per_block);
        drain_events();
      }
      for (int c = 0; c < 3; ++c) secs[c] += block_secs[c];
      ratio_unprotected->push_back(block_secs[0] / block_secs[1]);
      ratio_granted->push_back(block_secs[0] / block_secs[2]);
    }
  };
  // Rates are timed with the BPF statistics off: they add two clock reads to
  // every program run, which is the instrument's cost, not the guard's.
  SetBpfStats(false);
  double secs[3] = {0, 0, 0};
  std::vector<double> ratio_unprotected, ratio_granted;
  run_blocks(secs, &ratio_unprotected, &ratio_granted);
  double rate[3];
  for (int c = 0; c < 3; ++c) rate[c] = per_block * blocks / secs[c];
  // Program cost: each guarded case's blocks again, with the statistics on,
  // read before and after the case.
  std::vector<ProgramStats> cost[3];
  SetBpfStats(true);
  for (int c = 1; c < 3; ++c) {
    std::vector<ProgramStats> before;
    if (!guard->ReadProgramStats(&before).ok()) Die("program stats");
    for (int b = 0; b < blocks; ++b) {
      ConnectSeconds(*cases[c].cgroup, cases[c].listener, cases[c].port, per_block);
      drain_events();
    }
    if (!guard->ReadProgramStats(&cost[c]).ok()) Die("program stats");
    for (size_t i = 0; i < cost[c].size() && i < before.size(); ++i) {
      cost[c][i].run_count -= before[i].run_count;
      cost[c][i].run_time_ns -= before[i].run_time_ns;
    }
  }
  SetBpfStats(false);

  // Data path (issue 16: sk_storage per protected connection): the same
  // three cases streaming small writes, interleaved blocks; then the
  // per-packet programs' cost from the statistics, per case.
  constexpr int kStreamWrites = 20000, kStreamSize = 64;
  double stream_secs[3] = {0, 0, 0};
  for (int b = 0; b < blocks; ++b) {
    for (int k = 0; k < 3; ++k) {
      int c = (b + k) % 3;
      stream_secs[c] += StreamSeconds(*cases[c].cgroup, cases[c].listener, cases[c].port,
                                      kStreamWrites, kStreamSize);
      drain_events();
    }
  }
  std::vector<ProgramStats> stream_cost[3];
  SetBpfStats(true);
  for (int c = 1; c < 3; ++c) {
    std::vector<ProgramStats> before;
    if (!guard->ReadProgramStats(&before).ok()) Die("program stats");
    for (int b = 0; b < blocks; ++b) {
      StreamSeconds(*cases[c].cgroup, cases[c].listener, cases[c].port, kStreamWrites, kStreamSize);
      drain_events();
    }
    if (!guard->ReadProgramStats(&stream_cost[c]).ok()) Die("program stats");
    for (size_t i = 0; i < stream_cost[c].size() && i < before.size(); ++i) {
      stream_cost[c][i].run_count -= before[i].run_count;
      stream_cost[c][i].run_time_ns -= before[i].run_time_ns;
    }
  }
  SetBpfStats(false);

  reader.reset();
  guard.reset();
  if (!Guard::Uninstall(sandbox.pin_dir()).ok()) Die("uninstall");
  std::filesystem::create_directory(sandbox.pin_dir());
  SetBpfStats(true);
  double empty_cost = EmptyProgramCost(cgroups.bare, open_fd, open_port, connects);
  SetBpfStats(false);

  for (int c = 0; c < 3; ++c) {
    std::printf("  %-32s %9.0f connects/s", cases[c].name, rate[c]);
    if (c > 0) std::printf("  ratio %.3f", rate[c] / rate[0]);
    std::printf("\n");
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  };
  std::printf("median of %d per-block paired ratios: unprotected %.3f, protected with grant %.3f\n",
              blocks, median(ratio_unprotected), median(ratio_granted));
  std::printf("decision events drained between blocks: %llu (2 passes of the granted case)\n",
              static_cast<unsigned long long>(granted_events));
  for (int c = 1; c < 3; ++c) {
    std::printf("program cost, %s (kernel BPF statistics, a separate pass):\n", cases[c].name);
    for (const auto& p : cost[c]) {
      if (p.run_count == 0) continue;
      std::printf("  %-16s %10llu runs  %6.1f ns/run\n", p.name.c_str(),
                  static_cast<unsigned long long>(p.run_count),
                  static_cast<double>(p.run_time_ns) / static_cast<double>(p.run_count));
    }
  }
  std::printf("  floor: an empty connect4 program reports %.1f ns/run here\n", empty_cost);
  std::printf(
      "data path: %d blocks of one stream of %d writes of %d bytes (TCP_NODELAY) per case\n",
      blocks, kStreamWrites, kStreamSize);
  for (int c = 0; c < 3; ++c) {
    const double writes_per_s = static_cast<double>(kStreamWrites) * blocks / stream_secs[c];
    std::printf("  %-32s %9.0f writes/s", cases[c].name, writes_per_s);
    if (c > 0) std::printf("  ratio %.3f", stream_secs[0] / stream_secs[c]);
    std::printf("\n");
  }
  for (int c = 1; c < 3; ++c) {
    std::printf("per-packet program cost, %s (a separate pass):\n", cases[c].name);
    for (const auto& p : stream_cost[c]) {
      if (p.run_count == 0 || p.name.find("gress") == std::string::npos) continue;
      std::printf("  %-16s %10llu runs  %6.1f ns/run\n", p.name.c_str(),
                  static_cast<unsigned long long>(p.run_count),
                  static_cast<double>(p.run_time_ns) / static_cast<double>(p.run_count));
    }
  }

  RecordingTax(sandbox, protected_fd, protected_port, resources, connects, blocks, cut);

  // Event path: audit-mode UDP flood from one process, drained as the agent does.
  s = Guard::Install({sandbox.pin_dir(), sandbox.cgroup(), 1u << 22, cut}, &guard);
  if (!s.ok()) Die(s.ToString());
  BpfEnforcer enforcer(*guard);
  if (!enforcer.SetResources(resources).ok()) Die("resources");
  std::atomic<uint64_t> delivered{0};
  std::atomic<bool> flooding{true};
  uint64_t json_bytes = 0;
  std::string line;  // one record's JSON line, reused as the agent does
  s = RingReader::ForDecisionEvents(
      guard->events_fd(),
      [&](const latch_decision_event& e) {
        // What the agent does per event today: format its JSON record.
        line.clear();
        record::AppendDecisionJsonLine(e, "\"bench\"", &line);
        json_bytes += line.size();
        delivered.fetch_add(1, std::memory_order_relaxed);
      },
      &reader);
  if (!s.ok()) Die(s.ToString());
  std::thread drain([&] {
    int n = 0;
    while (flooding.load()) (void)reader->Poll(100, &n);
    (void)reader->Consume(&n);
  });
  auto start = Clock::now();
  pid_t child = ::fork();
  if (child == 0) FloodUdp(sandbox.cgroup(), audit_port, flood);
  ::waitpid(child, nullptr, 0);
  double flood_secs = std::chrono::duration<double>(Clock::now() - start).count();
  flooding = false;
  drain.join();
  double total_secs = std::chrono::duration<double>(Clock::now() - start).count();
  std::array<uint64_t, LATCH_CTR_COUNT> c{};
  if (!guard->ReadCounters(&c).ok()) Die("counters");
  uint64_t decisions = c[LATCH_CTR_AUDIT_ALLOW];
  uint64_t lost = c[LATCH_CTR_RINGBUF_FULL];
  std::printf("event path (audit-mode UDP flood, %d sends from one process, 4 MiB ring):\n", flood);
  std::printf("  decisions %llu in %.2f s (%.0f/s)\n", static_cast<unsigned long long>(decisions),
              flood_secs, decisions / flood_secs);
  std::printf("  delivered %llu (%.0f events/s drained, JSON formatted), lost %llu (counted)\n",
              static_cast<unsigned long long>(delivered.load()), delivered.load() / total_secs,
              static_cast<unsigned long long>(lost));
  std::printf("  accounting: delivered + lost = %llu, decisions = %llu: %s\n",
              static_cast<unsigned long long>(delivered.load() + lost),
              static_cast<unsigned long long>(decisions),
              delivered.load() + lost == decisions ? "exact" : "MISMATCH");
  guard.reset();
  reader.reset();
  if (!Guard::Uninstall(sandbox.pin_dir()).ok()) Die("uninstall");

  // Drain capacity: fill a 64 MiB ring with nobody reading, then time draining it.
  std::filesystem::create_directory(sandbox.pin_dir());
  s = Guard::Install({sandbox.pin_dir(), sandbox.cgroup(), 1u << 26}, &guard);
  if (!s.ok()) Die(s.ToString());
  BpfEnforcer enforcer2(*guard);
  if (!enforcer2.SetResources(resources).ok()) Die("resources");
  constexpr int kFill = 600000;  // 96-byte records: fits in 64 MiB
  std::printf("drain capacity (ring filled with nobody reading, then drained by one thread):\n");
  uint64_t expected_total = 0;
  for (bool json : {false, true}) {
    child = ::fork();
    if (child == 0) FloodUdp(sandbox.cgroup(), audit_port, kFill);
    ::waitpid(child, nullptr, 0);
    uint64_t drained = 0;
    uint64_t sink = 0;
    s = RingReader::ForDecisionEvents(
        guard->events_fd(),
        [&](const latch_decision_event& e) {
          // Without JSON: what the drain itself costs (the handler copies the record).
          if (json) {
            line.clear();
            record::AppendDecisionJsonLine(e, "\"bench\"", &line);
          }
          sink += json ? line.size() : e.port;
          ++drained;
        },
        &reader);
    if (!s.ok()) Die(s.ToString());
    auto drain_start = Clock::now();
    int handled = 0;
    if (!reader->Consume(&handled).ok()) Die("consume");
    double drain_secs = std::chrono::duration<double>(Clock::now() - drain_start).count();
    reader.reset();
    if (!guard->ReadCounters(&c).ok()) Die("counters");
    expected_total += drained;
    bool exact = expected_total + c[LATCH_CTR_RINGBUF_FULL] == c[LATCH_CTR_AUDIT_ALLOW];
    std::printf("  %s: %llu events in %.3f s: %.0f events/s; lost %llu (counted); accounting %s\n",
                json ? "with JSON lines (today's agent output)" : "records only",
                static_cast<unsigned long long>(drained), drain_secs, drained / drain_secs,
                static_cast<unsigned long long>(c[LATCH_CTR_RINGBUF_FULL]),
                exact ? "exact" : "MISMATCH");
    if (!exact || sink == 42) return 1;
  }
  reader.reset();
  guard.reset();
  if (!Guard::Uninstall(sandbox.pin_dir()).ok()) Die("uninstall");
  ::close(open_fd);
  ::close(protected_fd);
  ::close(audit_fd);
  return delivered.load() + lost == decisions ? 0 : 1;
}

int main(int argc, char** argv) {
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "guard_bench: %s\n", e.what());
    return 1;
  }
}
