// activity_bench: what activity capture costs processes, watched and not,
// and how many records it delivers, in one run.
//
//   build/tests/activity_bench [--execs N] [--opens M] [--blocks B] [--flood F]
//
// Four cases, each a child process in a cgroup of the bench's own that does M
// opens (and closes) of a file under no watched prefix, then N fork+exec+wait
// of /bin/true: capture off (no programs attached) or on (attached, holders
// of a live grant watched, /etc/shadow watched), as an unwatched uid or as a
// watched one (a grant holder). Each case's work runs in B blocks; each block
// runs every case, the settings in rotating order, so drift in the
// machine's speed falls on all alike. A third setting, capture on with no
// grant live (the syscall programs then detached), is measured for the
// unwatched principal. With capture on, a thread drains the
// activity ring as the agent does. Reported: each case's exec and open rates,
// the on/off ratios per principal, and the records delivered per second
// (with the kernel's lost and held-back counts).
//
// Flood: capture on with no throttle, one watched process opens a watched
// path F times as fast as it can while a thread drains the ring as the agent
// does: the records delivered per second, and whether delivered plus the
// kernel's lost count equals the opens made.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/activity_capture.h"
#include "agent/boot_clock.h"
#include "agent/kernel_fs.h"
#include "agent/ring_reader.h"
#include "kernel_sandbox.h"

namespace {

using namespace latch;
using namespace latch::agent;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

constexpr uint32_t kUnwatched = 6161;
constexpr uint32_t kWatched = 6262;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "activity_bench: %s\n", what.c_str());
  std::exit(1);
}

struct Times {
  double open_secs = 0, exec_secs = 0;
};

// In a child as `uid` in `cgroup`: `opens` opens of `file`, then `execs`
// fork+exec+wait of /bin/true; the two durations come back through a pipe.
Times RunCase(const std::string& cgroup, uint32_t uid, const std::string& file, int opens,
              int execs) {
  int p[2];
  if (::pipe(p) != 0) Die("pipe");
  pid_t pid = ::fork();
  if (pid == 0) {
    if (!JoinCgroupAs(cgroup + "/cgroup.procs", uid)) ::_exit(100);
    Times t;
    auto t0 = Clock::now();
    for (int i = 0; i < opens; ++i) {
      int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) ::_exit(101);
      ::close(fd);
    }
    auto t1 = Clock::now();
    for (int i = 0; i < execs; ++i) {
      pid_t c = ::fork();
      if (c == 0) {
        ::execl("/bin/true", "true", static_cast<char*>(nullptr));
        ::_exit(127);
      }
      int status = 0;
      ::waitpid(c, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ::_exit(102);
    }
    auto t2 = Clock::now();
    t.open_secs = std::chrono::duration<double>(t1 - t0).count();
    t.exec_secs = std::chrono::duration<double>(t2 - t1).count();
    (void)!::write(p[1], &t, sizeof(t));
    ::_exit(0);
  }
  ::close(p[1]);
  Times t;
  bool got = ::read(p[0], &t, sizeof(t)) == static_cast<ssize_t>(sizeof(t));
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!got || !WIFEXITED(status) || WEXITSTATUS(status) != 0) Die("a case's child failed");
  return t;
}

struct Totals {
  double open_secs = 0, exec_secs = 0;
  uint64_t opens = 0, execs = 0;
  double OpenRate() const { return static_cast<double>(opens) / open_secs; }
  double ExecRate() const { return static_cast<double>(execs) / exec_secs; }
};

}  // namespace

int main(int argc, char** argv) {
  int execs = 10000, opens = 1000000, blocks = 10, flood = 1000000;
  for (int i = 1; i < argc; i += 2) {
    std::string f = argv[i];
    if (i + 1 >= argc)
      Die("usage: activity_bench [--execs N] [--opens M] [--blocks B] [--flood F]");
    int v = std::atoi(argv[i + 1]);
    if (f == "--execs") {
      execs = v;
    } else if (f == "--opens") {
      opens = v;
    } else if (f == "--blocks") {
      blocks = v;
    } else if (f == "--flood") {
      flood = v;
    } else {
      Die("usage: activity_bench [--execs N] [--opens M] [--blocks B] [--flood F]");
    }
  }
  if (::geteuid() != 0) Die("needs root (cgroups, BPF)");
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // lines out before each fork
  if (blocks < 1 || execs < blocks || opens < blocks)
    Die("--execs and --opens must be >= --blocks");

  KernelSandbox sandbox;
  std::string why = sandbox.Create("latch-activity-bench");
  if (!why.empty()) Die(why);
  std::string file = "/tmp/latch-activity-bench-" + std::to_string(::getpid());
  std::ofstream(file) << "x";
  ::chmod(file.c_str(), 0644);

  ActivityOptions options;
  options.pin_dir = sandbox.pin_dir() + "/activity";
  options.path_prefixes = {"/etc/shadow"};
  WatchEntry watched;
  watched.principal = {Principal::Kind::kUid, kWatched};
  watched.grant_id = 1;
  watched.not_after_boot_ns = NowBootNs() + 24ull * 3600 * 1'000'000'000;

  std::printf("activity_bench: %d fork+exec and %d opens per case, in %d blocks\n", execs, opens,
              blocks);
  Totals totals[3][2];  // [off, on, on with nobody watched][watched]
  uint64_t delivered = 0;
  double on_secs = 0;
  std::array<uint64_t, LATCH_ACT_CTR_COUNT> counters{};
  for (int b = 0; b < blocks; ++b) {
    for (int step = 0; step < 3; ++step) {
      int mode = (step + b) % 3;  // 0 off, 1 on, 2 on with nobody watched; rotating
      std::unique_ptr<ActivityCapture> capture;
      std::unique_ptr<RingReader> reader;
      std::atomic<bool> stop{false};
      std::atomic<uint64_t> records{0};
      std::thread drain;
      if (mode == 2) {
        // Capture on, no grant live: the syscall programs are not attached.
        Status s = ActivityCapture::Start(options, &capture);
        if (s.ok()) s = capture->SetWatched({});
        if (!s.ok()) Die(s.ToString());
        Times t = RunCase(sandbox.cgroup(), kUnwatched, file, opens / blocks, execs / blocks);
        Totals& tot = totals[2][0];
        tot.open_secs += t.open_secs;
        tot.exec_secs += t.exec_secs;
        tot.opens += static_cast<uint64_t>(opens / blocks);
        tot.execs += static_cast<uint64_t>(execs / blocks);
        capture.reset();
        if (!(s = ActivityCapture::Uninstall(options.pin_dir)).ok()) Die(s.ToString());
        std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // detaching settles
        continue;
      }
      if (mode == 1) {
        Status s = ActivityCapture::Start(options, &capture);
        if (!s.ok()) Die(s.ToString());
        if (!(s = capture->SetWatched({watched})).ok()) Die(s.ToString());
        s = RingReader::Create(
            capture->ring_fd(),
            [&](std::string_view) {
              records.fetch_add(1, std::memory_order_relaxed);
              return true;
            },
            &reader);
        if (!s.ok()) Die(s.ToString());
        drain = std::thread([&] {
          int n = 0;
          while (!stop.load()) (void)reader->Poll(50, &n);
          (void)reader->Consume(&n);
        });
      }
      auto started = Clock::now();
      for (int w = 0; w < 2; ++w) {
        Times t = RunCase(sandbox.cgroup(), w ? kWatched : kUnwatched, file, opens / blocks,
                          execs / blocks);
        Totals& tot = totals[mode][w];
        tot.open_secs += t.open_secs;
        tot.exec_secs += t.exec_secs;
        tot.opens += static_cast<uint64_t>(opens / blocks);
        tot.execs += static_cast<uint64_t>(execs / blocks);
      }
      if (mode == 1) {
        stop = true;
        drain.join();
        on_secs += std::chrono::duration<double>(Clock::now() - started).count();
        delivered += records.load();
        std::array<uint64_t, LATCH_ACT_CTR_COUNT> c{};
        if (capture->ReadCounters(&c).ok()) {
          for (size_t i = 0; i < c.size(); ++i) counters[i] += c[i];
        }
        reader.reset();
        capture.reset();
        Status s = ActivityCapture::Uninstall(options.pin_dir);
        if (!s.ok()) Die(s.ToString());
        std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // detaching settles
      }
    }
  }
  ::unlink(file.c_str());

  const char* who[2] = {"unwatched", "watched"};
  for (int w = 0; w < 2; ++w) {
    const Totals& off = totals[0][w];
    const Totals& on = totals[1][w];
    std::printf(
        "%-9s  fork+exec/s off %8.0f  on %8.0f  ratio %.3f | opens/s off %9.0f  on %9.0f  "
        "ratio %.3f\n",
        who[w], off.ExecRate(), on.ExecRate(), on.ExecRate() / off.ExecRate(), off.OpenRate(),
        on.OpenRate(), on.OpenRate() / off.OpenRate());
  }
  const Totals& off = totals[0][0];
  const Totals& idle = totals[2][0];
  std::printf(
      "unwatched, capture on and no grant live (syscall programs detached): fork+exec/s %8.0f  "
      "ratio %.3f | opens/s %9.0f  ratio %.3f\n",
      idle.ExecRate(), idle.ExecRate() / off.ExecRate(), idle.OpenRate(),
      idle.OpenRate() / off.OpenRate());
  uint64_t lost = 0, held = 0, sent = 0;
  for (int k = 1; k < LATCH_ACT_KINDS; ++k) {
    sent += counters[LATCH_ACT_CTR_SUBMITTED + k];
    lost += counters[LATCH_ACT_CTR_LOST + k];
    held += counters[LATCH_ACT_CTR_SUPPRESSED + k];
  }
  std::printf(
      "records: %llu delivered (%.0f/s over the capture-on phases), kernel sent %llu, "
      "lost %llu, held back %llu (in throttle summaries)\n",
      static_cast<unsigned long long>(delivered), static_cast<double>(delivered) / on_secs,
      static_cast<unsigned long long>(sent), static_cast<unsigned long long>(lost),
      static_cast<unsigned long long>(held));
  // Flood: every open recorded, nothing throttled.
  {
    std::string dir = "/tmp/latch-activity-flood-" + std::to_string(::getpid());
    fs::create_directories(dir);
    fs::permissions(dir, fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
    std::string watched_file = dir + "/f";
    std::ofstream(watched_file) << "x";
    ::chmod(watched_file.c_str(), 0644);
    ActivityOptions f = options;
    f.path_prefixes = {dir + "/"};
    f.throttle_events = 0;
    std::unique_ptr<ActivityCapture> capture;
    Status s = ActivityCapture::Start(f, &capture);
    if (!s.ok()) Die(s.ToString());
    if (!(s = capture->SetWatched({watched})).ok()) Die(s.ToString());
    std::unique_ptr<RingReader> reader;
    std::atomic<uint64_t> opened{0};
    s = RingReader::Create(
        capture->ring_fd(),
        [&](std::string_view raw) {
          latch_activity_header h;
          std::memcpy(&h, raw.data(), sizeof(h));
          if (h.kind == LATCH_ACT_OPEN && h.uid == kWatched) opened.fetch_add(1);
          return true;
        },
        &reader);
    if (!s.ok()) Die(s.ToString());
    std::atomic<bool> stop{false};
    std::thread drain([&] {
      int n = 0;
      while (!stop.load()) (void)reader->Poll(50, &n);
      (void)reader->Consume(&n);
    });
    auto t0 = Clock::now();
    Times t = RunCase(sandbox.cgroup(), kWatched, watched_file, flood, 0);
    stop = true;
    drain.join();
    double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    std::array<uint64_t, LATCH_ACT_CTR_COUNT> c{};
    if (!capture->ReadCounters(&c).ok()) Die("reading counters");
    uint64_t flood_lost = c[LATCH_ACT_CTR_LOST + LATCH_ACT_OPEN];
    std::printf(
        "flood: %d watched opens in %.2f s (%.0f/s); %llu records delivered (%.0f/s), "
        "%llu lost in the kernel; delivered + lost %s opens\n",
        flood, t.open_secs, flood / t.open_secs, static_cast<unsigned long long>(opened.load()),
        static_cast<double>(opened.load()) / secs, static_cast<unsigned long long>(flood_lost),
        opened.load() + flood_lost == static_cast<uint64_t>(flood) ? "==" : "!=");
    reader.reset();
    capture.reset();
    s = ActivityCapture::Uninstall(f.pin_dir);
    if (!s.ok()) Die(s.ToString());
    fs::remove_all(dir);
  }
  return 0;
}
