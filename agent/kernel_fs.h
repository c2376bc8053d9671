// Finding the kernel filesystems the guard lives in: the cgroup v2 hierarchy
// (at /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid
// ones), bpffs (mounted by us if the host has not), and tracefs, where
// activity capture finds the syscall tracepoints (also mounted if missing).
#pragma once

#include <cstdint>
#include <string>

#include "lib/status/status.h"

namespace latch::agent {

// The mount point of the cgroup v2 hierarchy, from /proc/self/mountinfo.
Status FindCgroup2Mount(std::string* mount_point);
// The cgroup id (inode number) of a cgroup v2 directory.
Status CgroupId(const std::string& cgroup_dir, uint64_t* id);
// Makes sure `dir` exists on a bpffs: if none covers it yet, mounts one at
// /sys/fs/bpf (for directories under it) or at `dir` itself. *mounted tells
// whether this call mounted one.
Status EnsureBpffs(const std::string& dir, bool* mounted);
// True iff `path` is on a bpffs.
bool IsOnBpffs(const std::string& path);

// Makes sure tracefs is mounted at /sys/kernel/tracing (or reachable at
// /sys/kernel/debug/tracing), mounting it at the former if not; *mounted
// tells whether this call did.
Status EnsureTracefs(bool* mounted);

}  // namespace latch::agent
