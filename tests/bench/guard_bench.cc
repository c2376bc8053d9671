// guard_bench: what the guard costs a connect, and how fast decision events
// drain, in one run.
//
//   build/tests/guard_bench [--connects N] [--rounds R] [--flood N] [--cut on|off]
//
// Connects: N loopback TCP connects (connect; the server accepts and closes;
// the client closes with RST so no TIME_WAIT piles up) from a process in a
// sandbox cgroup, (a) with no program attached, (b) with the guard attached
// and the destination unprotected, (c) protected with a live grant. Rounds
// alternate the three; the best of each is compared. The programs' own cost
// comes from the kernel's BPF statistics (run_time_ns / run_cnt), next to
// the same figure for an empty connect4 program (what the statistics and the
// hook's dispatch report for doing nothing on this machine).
//
// Events: one process floods UDP sendto() at an audit-mode destination; a
// reader thread drains the ring buffer as the agent does. Reported: events/s
// drained, and decisions == delivered + counted losses, exactly.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <netinet/in.h>
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
#include "agent/decision_events.h"
#include "agent/enforcer.h"
#include "agent/event_json.h"
#include "agent/guard.h"
#include "kernel_sandbox.h"

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

// Runs `n` connects from a child in `cgroup`; returns connects per second.
double ConnectRate(const std::string& cgroup, int listener, uint16_t port, int n) {
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
  return n / secs;
}

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
  ConnectRate(cgroup, listener, port, n);
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

Resource MakeResource(uint32_t id, Protocol p, uint16_t port, Mode m) {
  Resource r{id, "r" + std::to_string(id), {}, p, port, port, m};
  if (!Cidr::Parse("127.0.0.1", &r.destinations.emplace_back()).ok()) Die("cidr");
  return r;
}

}  // namespace

int Run(int argc, char** argv) {
  int connects = 200000;
  int rounds = 3;
  int flood = 2000000;
  bool cut = true;  // --cut off: measure without the per-packet programs
  for (int i = 1; i < argc; i += 2) {
    std::string f = argv[i];
    if (i + 1 >= argc) f = "--help";
    if (f == "--connects")
      connects = std::stoi(argv[i + 1]);
    else if (f == "--rounds")
      rounds = std::stoi(argv[i + 1]);
    else if (f == "--flood")
      flood = std::stoi(argv[i + 1]);
    else if (f == "--cut")
      cut = std::string(argv[i + 1]) != "off";
    else
      Die("usage: guard_bench [--connects N] [--rounds R] [--flood N] [--cut on|off]");
  }
  if (::geteuid() != 0) Die("needs root (it attaches BPF programs to a cgroup it creates)");
  KernelSandbox sandbox;
  std::string why = sandbox.Create("latch-bench");
  if (!why.empty()) Die(why);

  uint16_t open_port = 0, protected_port = 0, audit_port = 0;
  int open_fd = Listener(SOCK_STREAM, &open_port);
  int protected_fd = Listener(SOCK_STREAM, &protected_port);
  int audit_fd = Listener(SOCK_DGRAM, &audit_port);
  std::vector<Resource> resources = {
      MakeResource(1, Protocol::kTcp, protected_port, Mode::kEnforce),
      MakeResource(2, Protocol::kUdp, audit_port, Mode::kAudit)};

  std::printf(
      "guard_bench: %d loopback TCP connects per case, %d rounds, cutting established "
      "connections %s\n",
      connects, rounds, cut ? "on" : "off");
  double best[3] = {0, 0, 0};
  // Paired ratios per round (each case against the same round's baseline):
  // their median is less sensitive to one noisy baseline round than best-of.
  std::vector<double> ratio_unprotected, ratio_granted;
  // Per-case program cost: BPF statistics read before and after each case.
  std::vector<ProgramStats> unprotected_cost, granted_cost;
  auto delta = [](const std::vector<ProgramStats>& before, const std::vector<ProgramStats>& after) {
    std::vector<ProgramStats> d = after;
    for (size_t i = 0; i < d.size() && i < before.size(); ++i) {
      d[i].run_count -= before[i].run_count;
      d[i].run_time_ns -= before[i].run_time_ns;
    }
    return d;
  };
  // The guard with the grant the protected case connects under.
  auto install_guard = [&](std::unique_ptr<Guard>* guard) {
    Status s = Guard::Install({sandbox.pin_dir(), sandbox.cgroup(), 1u << 22, cut}, guard);
    if (!s.ok()) Die(s.ToString());
    BpfEnforcer enforcer(**guard);
    if (!enforcer.SetResources(resources).ok()) Die("resources");
    int64_t now = NowUnixNs();
    if (!enforcer
             .ApplyGrant(
                 {1, {Principal::Kind::kUid, kUid}, 1, now - 1'000'000'000, now + 3600'000'000'000})
             .ok()) {
      Die("grant");
    }
  };
  auto uninstall_guard = [&](std::unique_ptr<Guard>* guard) {
    guard->reset();
    if (!Guard::Uninstall(sandbox.pin_dir()).ok()) Die("uninstall");
    std::filesystem::create_directory(sandbox.pin_dir());
  };
  // Rates are timed with the BPF statistics off: they add two clock reads to
  // every program run, which is the instrument's cost, not the guard's.
  SetBpfStats(false);
  for (int round = 1; round <= rounds; ++round) {
    double none = ConnectRate(sandbox.cgroup(), open_fd, open_port, connects);
    std::unique_ptr<Guard> guard;
    install_guard(&guard);
    double unprotected = ConnectRate(sandbox.cgroup(), open_fd, open_port, connects);
    double granted = ConnectRate(sandbox.cgroup(), protected_fd, protected_port, connects);
    uninstall_guard(&guard);
    std::printf(
        "round %d: no program %.0f/s, guard+unprotected %.0f/s, guard+protected+grant %.0f/s\n",
        round, none, unprotected, granted);
    ratio_unprotected.push_back(unprotected / none);
    ratio_granted.push_back(granted / none);
    best[0] = std::max(best[0], none);
    best[1] = std::max(best[1], unprotected);
    best[2] = std::max(best[2], granted);
  }
  // Program cost: one more pass of each case with the statistics on.
  SetBpfStats(true);
  {
    std::unique_ptr<Guard> guard;
    install_guard(&guard);
    std::vector<ProgramStats> s0, s1, s2;
    if (!guard->ReadProgramStats(&s0).ok()) Die("program stats");
    ConnectRate(sandbox.cgroup(), open_fd, open_port, connects);
    if (!guard->ReadProgramStats(&s1).ok()) Die("program stats");
    ConnectRate(sandbox.cgroup(), protected_fd, protected_port, connects);
    if (!guard->ReadProgramStats(&s2).ok()) Die("program stats");
    unprotected_cost = delta(s0, s1);
    granted_cost = delta(s1, s2);
    uninstall_guard(&guard);
  }
  double empty_cost = EmptyProgramCost(sandbox.cgroup(), open_fd, open_port, connects);
  SetBpfStats(false);
  std::printf("best of %d rounds:\n", rounds);
  std::printf("  no program attached:              %9.0f connects/s\n", best[0]);
  std::printf("  guard, unprotected destination:   %9.0f connects/s  ratio %.3f\n", best[1],
              best[1] / best[0]);
  std::printf("  guard, protected, live grant:     %9.0f connects/s  ratio %.3f\n", best[2],
              best[2] / best[0]);
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  };
  std::printf("median of per-round paired ratios: unprotected %.3f, protected with grant %.3f\n",
              median(ratio_unprotected), median(ratio_granted));
  for (auto* cost : {&unprotected_cost, &granted_cost}) {
    std::printf("program cost, %s (kernel BPF statistics, a separate pass):\n",
                cost == &unprotected_cost ? "unprotected destination" : "protected, live grant");
    for (const auto& p : *cost) {
      if (p.run_count == 0) continue;
      std::printf("  %-16s %10llu runs  %6.1f ns/run\n", p.name.c_str(),
                  static_cast<unsigned long long>(p.run_count),
                  static_cast<double>(p.run_time_ns) / static_cast<double>(p.run_count));
    }
  }
  std::printf("  floor: an empty connect4 program reports %.1f ns/run here\n", empty_cost);

  // Event path: audit-mode UDP flood from one process, drained as the agent does.
  std::unique_ptr<Guard> guard;
  Status s = Guard::Install({sandbox.pin_dir(), sandbox.cgroup(), 1u << 22, cut}, &guard);
  if (!s.ok()) Die(s.ToString());
  BpfEnforcer enforcer(*guard);
  if (!enforcer.SetResources(resources).ok()) Die("resources");
  std::atomic<uint64_t> delivered{0};
  std::atomic<bool> flooding{true};
  uint64_t json_bytes = 0;
  std::string line;  // one record's JSON line, reused as the agent does
  std::unique_ptr<DecisionEventReader> reader;
  s = DecisionEventReader::Create(
      guard->events_fd(),
      [&](const latch_decision_event& e) {
        // What the agent does per event today: format its JSON record.
        line.clear();
        AppendDecisionJsonLine(e, "\"bench\"", &line);
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
    s = DecisionEventReader::Create(
        guard->events_fd(),
        [&](const latch_decision_event& e) {
          // Without JSON: what the drain itself costs (the handler copies the record).
          if (json) {
            line.clear();
            AppendDecisionJsonLine(e, "\"bench\"", &line);
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
