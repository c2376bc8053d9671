// Guard: the lifecycle of the kernel side of enforcement, in explicit phases:
//   probe      the kernel offers what the guard needs (BTF, program and map
//              types), or Install fails saying what is missing
//   open       the BPF skeleton (bpf/guard.bpf.c)
//   configure  ring buffer size; pin paths of the maps under the pin directory
//   load       programs; maps already pinned there are reused, not replaced
//   attach     to the cgroup, as pinned bpf_links; links already pinned there
//              are adopted and switched to the new programs atomically
//   verify     (while running) every link still attached with this build's
//              program, every pin still the object this process holds
//   repair     pins again what was unpinned or replaced, from the maps and
//              programs this process holds, and attaches detached programs
// Everything lives in bpffs, so enforcement does not depend on this process:
// destroying a Guard (or killing the agent) closes file descriptors only, and
// the next Install() adopts the pinned state without a moment of no guard.
// Uninstall() is the one way to remove it.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "guard_abi.h"
#include "lib/status/status.h"

struct latch_guard;
struct bpf_link;
struct bpf_program;

namespace latch::agent {

struct GuardOptions {
  std::string pin_dir;             // per instance, on bpffs, e.g. /sys/fs/bpf/latch/<instance>
  std::string cgroup_dir;          // the cgroup v2 directory to guard (and its descendants)
  uint32_t ring_bytes = 4u << 20;  // decision event ring buffer; a power of two
  // Stop connections to protected destinations when their grant ends or is
  // revoked (cgroup_skb programs on every packet of the cgroup). Off, only new
  // connects are refused after a grant ends, and other traffic pays nothing
  // per packet.
  bool cut_established = true;
  // A decision record wakes the reader only once this many bytes wait in the
  // ring (0: every record does). Below it the reader drains on a timer.
  uint32_t wakeup_bytes = 0;
};

// Sums a per-CPU counters map (the guard's latch_counters) over CPUs.
Status ReadGuardCounters(int counters_fd, std::array<uint64_t, LATCH_CTR_COUNT>* out);

// OK if this kernel has everything the guard needs; otherwise says what is
// missing (BTF, cgroup sock_addr or cgroup_skb programs, LPM trie, ring buffer).
Status ProbeKernelFeatures();

struct ProgramStats {
  std::string name;
  uint64_t run_count = 0;    // from the kernel's BPF statistics; 0 unless
  uint64_t run_time_ns = 0;  // kernel.bpf_stats_enabled is on
};

class Guard {
 public:
  static Status Install(const GuardOptions& options, std::unique_ptr<Guard>* out);
  // Detaches the pinned links and removes every pin under `pin_dir`.
  // `nested` (if given) removes what other parts pinned below it (activity
  // capture's directory); it runs before each pass, since a running agent
  // may pin there again meanwhile.
  static Status Uninstall(const std::string& pin_dir, const std::function<Status()>& nested = {});
  ~Guard();
  Guard(const Guard&) = delete;
  Guard& operator=(const Guard&) = delete;

  // True when Install found the guard already attached (a restart or upgrade).
  bool adopted() const { return adopted_; }
  const GuardOptions& options() const { return options_; }
  uint64_t cgroup_id() const { return cgroup_id_; }

  int resources_fd() const;
  int grants_fd() const;
  int ports_fd() const;
  int local_fd() const;
  int events_fd() const;
  int counters_fd() const;
  int agent_state_fd() const;
  // Counters summed over CPUs, indexed by enum latch_counter.
  Status ReadCounters(std::array<uint64_t, LATCH_CTR_COUNT>* out) const;
  Status ReadProgramStats(std::vector<ProgramStats>* out) const;

  // What is no longer as Install left it (root on the host can detach links,
  // remove or replace pins, or uninstall the guard behind the agent's back):
  // "link_connect4 detached", "link_egress runs another program",
  // "pin link_sendmsg6 missing", "pin latch_grants replaced". Empty: intact.
  // A few bpf syscalls per program and map: cheap enough for every few seconds.
  Status Verify(std::vector<std::string>* problems) const;
  // Puts it back: the pin directory, every map pin (from this process's map
  // fds, so grants and resources are the live ones), every link attached and
  // pinned. Verify afterwards says whether it worked.
  Status Repair();

 private:
  // One pass of Uninstall; *repinned: the directory was not empty at the end
  // (a running agent pinned a link again meanwhile).
  static Status UninstallOnce(const std::string& pin_dir, bool* repinned);
  struct AttachedLink {
    std::string pin_name;  // link_connect4, ...
    bpf_program* program;
    bpf_link* link;
  };
  Guard() = default;
  Status Open();
  Status Configure();
  Status Load();
  Status Attach();

  GuardOptions options_;
  latch_guard* skel_ = nullptr;
  std::vector<AttachedLink> links_;
  uint64_t cgroup_id_ = 0;
  bool adopted_ = false;
};

}  // namespace latch::agent
