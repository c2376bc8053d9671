// Finding the kernel filesystems the guard lives in: the cgroup v2 hierarchy
// (at /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified on hybrid
// ones) and bpffs (mounted by us if the host has not).
#pragma once

#include <cstdint>
#include <string>

#include "tlog/status.h"

namespace latch::agent {

// The mount point of the cgroup v2 hierarchy, from /proc/self/mountinfo.
Status FindCgroup2Mount(std::string* mount_point);
// The cgroup id (inode number) of a cgroup v2 directory.
Status CgroupId(const std::string& cgroup_dir, uint64_t* id);
// Makes sure `dir` lies on a bpffs: mounts one there (creating the
// directory) unless a bpffs already covers it. *mounted tells which.
Status EnsureBpffs(const std::string& dir, bool* mounted);
// True iff `path` is on a bpffs.
bool IsOnBpffs(const std::string& path);

}  // namespace latch::agent
