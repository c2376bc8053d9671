// ActivityCapture: the lifecycle of the activity programs (bpf/activity.bpf.c),
// which record what watched principals do: programs run, processes ended,
// connects, opens under watched path prefixes, uid/gid/capability changes.
// Phases, as the guard's:
//   probe      tracefs is there (mounted if it is not): the syscall
//              tracepoints are found through it
//   open       the BPF skeleton
//   configure  ring buffer size; pin paths of the maps under the pin directory
//   load       programs; maps already pinned there are reused (pinned in
//              another layout, by an older agent: the capture is uninstalled
//              and installed afresh, logged)
//   configure  maps: mode, path prefixes, throttle; then who is watched
//   attach     every program to its tracepoint, as pinned bpf_links; a link
//              already pinned for the same program is adopted as it is.
//              The syscall programs (connects, opens, privilege changes)
//              and io_uring's (instances set up, submissions) are
//              attached only while someone can be watched: with watch =
//              "grants" and no grant live or to come, they are detached, and
//              the host's syscalls pay nothing (an attached syscall
//              tracepoint sends every task's syscalls down the kernel's slow
//              path). The scheduler programs (exec, exit) stay: they are cheap.
// As with the guard, everything lives in bpffs: killing or restarting the
// agent does not stop capture (records wait in the pinned ring buffer), and
// an agent restart costs no detach. An upgrade that changes a program
// detaches the old one and attaches the new (a moment without capture of
// that kind, logged). Uninstall() removes it all.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "activity_abi.h"
#include "agent/enforcer.h"
#include "lib/status/status.h"

struct latch_activity;
struct bpf_link;
struct bpf_program;

namespace latch::agent {

enum class WatchMode : uint32_t {
  kOff = LATCH_WATCH_OFF,
  kGrants = LATCH_WATCH_GRANTS,  // holders of a live grant (the default)
  kCgroup = LATCH_WATCH_CGROUP,  // a cgroup and its descendants, and grant holders
  kAll = LATCH_WATCH_ALL,        // every task
};

struct ActivityOptions {
  std::string pin_dir;  // on bpffs; the agent uses <its pin directory>/activity
  WatchMode mode = WatchMode::kGrants;
  std::string cgroup_dir;  // kCgroup: the cgroup v2 directory watched
  // The guard's cgroup v2 directory: nothing outside it is watched, whatever
  // the mode (empty, or the hierarchy's root: no bound).
  std::string scope_cgroup_dir;
  std::vector<std::string> path_prefixes;  // opens under these are recorded (none: no opens)
  uint32_t throttle_events = 2000;         // per process per window; 0: never throttle
  uint32_t throttle_window_ms = 1000;
  uint32_t ring_bytes = 8u << 20;  // a power of two
  // watch = "grants": the syscall programs stay attached this long after the
  // last watched grant ends, so that the next grant soon after does not wait
  // for their detachment to finish (it takes the kernel up to a second).
  uint32_t detach_after_ms = 30'000;
  // A record wakes the reader only once this many bytes wait (0: every
  // record does); below it the agent drains on its timer.
  uint32_t wakeup_bytes = 0;
};

// Parses "off", "grants", "cgroup" or "all".
Status ParseWatchMode(const std::string& text, WatchMode* out);
const char* WatchModeName(WatchMode mode);

// One watched principal and the grant it holds that ends last.
struct WatchEntry {
  Principal principal;
  uint64_t grant_id = 0;
  uint64_t not_before_boot_ns = 0;
  uint64_t not_after_boot_ns = 0;
};

// The watch entries the given grants make: per principal, its grant that
// ends last.
std::vector<WatchEntry> WatchEntriesFor(const std::vector<KernelGrant>& grants);

class ActivityCapture {
 public:
  static Status Start(const ActivityOptions& options, std::unique_ptr<ActivityCapture>* out);
  // Detaches the pinned links and removes every pin under `pin_dir` and the
  // directory; OK if there is none.
  static Status Uninstall(const std::string& pin_dir);
  // What is pinned under `pin_dir`, as text for `latch-agent status`:
  // attached programs, watched principals, per-kind counters. NotFound if
  // capture is not installed there.
  static Status DescribePinned(const std::string& pin_dir, std::string* text);
  ~ActivityCapture();
  ActivityCapture(const ActivityCapture&) = delete;
  ActivityCapture& operator=(const ActivityCapture&) = delete;

  // Replaces who is watched (grant holders) with `entries`, and attaches or
  // detaches the syscall programs as the watch mode and entries need.
  Status SetWatched(const std::vector<WatchEntry>& entries);
  // Adds one watched principal (widening its window if it is watched
  // already), and attaches the syscall programs: for a grant about to reach
  // the kernel. The next SetWatched makes the set exact again.
  Status Watch(const WatchEntry& entry);
  // Attaches the syscall programs now (before grants are applied, so that
  // nothing done under a new grant goes unseen while they attach).
  Status AttachSyscallPrograms();
  bool syscall_programs_attached() const { return !syscall_links_.empty(); }
  int ring_fd() const;
  // Counters summed over CPUs: [LATCH_ACT_CTR_SUBMITTED + kind] records sent,
  // [LATCH_ACT_CTR_LOST + kind] lost (ring full), [LATCH_ACT_CTR_SUPPRESSED +
  // kind] held back by throttling (and sent as summaries).
  Status ReadCounters(std::array<uint64_t, LATCH_ACT_CTR_COUNT>* out) const;
  const ActivityOptions& options() const { return options_; }
  bool mounted_tracefs() const { return mounted_tracefs_; }
  int adopted_links() const { return adopted_; }
  int replaced_links() const { return replaced_; }
  // Whether maps pinned in another layout (an older agent's) were removed
  // and the capture installed afresh.
  bool reinstalled() const { return reinstalled_; }
  // Whether io_uring is watched (the kernel has its tracepoints).
  bool io_uring_seen() const { return io_uring_seen_; }

 private:
  ActivityCapture() = default;
  Status Open();
  // Before load: maps pinned in another layout than this agent's cannot be
  // reused, so the whole capture is uninstalled to be installed afresh.
  Status ReplaceStalePins();
  Status Load();
  Status Attach();
  Status Configure();
  // Attaches `prog` as a pinned link, or adopts the pinned link of the same
  // program; *link is it.
  Status AttachProgram(bpf_program* prog, bpf_link** link);
  // Unpins the syscall programs' links and closes them on a thread of their
  // own (each close waits for the kernel's grace periods).
  void DetachSyscallPrograms();

  ActivityOptions options_;
  latch_activity* skel_ = nullptr;
  std::vector<bpf_link*> links_;          // scheduler programs
  std::vector<bpf_link*> syscall_links_;  // syscall programs, while attached
  uint64_t last_needed_boot_ns_ = 0;      // when someone was last watched (boot clock)
  std::thread closing_;                   // closes detached syscall links
  int adopted_ = 0;
  int replaced_ = 0;
  bool reinstalled_ = false;
  bool io_uring_seen_ = false;
  latch_activity_config config_{};
  bool mounted_tracefs_ = false;
};

}  // namespace latch::agent
