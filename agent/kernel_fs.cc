#include "agent/kernel_fs.h"

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace latch::agent {
namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;
constexpr long kCgroup2Magic = 0x63677270;

}  // namespace

Status FindCgroup2Mount(std::string* mount_point) {
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return Status::IoError("cannot read /proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // "<id> <parent> <maj:min> <root> <mount point> <options> ... - <fstype> <source> <super
    // options>"
    size_t dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype;
    tail >> fstype;
    if (fstype != "cgroup2") continue;
    std::istringstream head(line.substr(0, dash));
    std::string id, parent, dev, root, mp;
    head >> id >> parent >> dev >> root >> mp;
    *mount_point = mp;
    return Status::Ok();
  }
  return Status::NotFound(
      "no cgroup v2 hierarchy is mounted (looked for fstype cgroup2 in /proc/self/mountinfo); "
      "the guard attaches to cgroup v2: boot with systemd.unified_cgroup_hierarchy or mount one");
}

Status CgroupId(const std::string& cgroup_dir, uint64_t* id) {
  struct statfs fs;
  if (::statfs(cgroup_dir.c_str(), &fs) != 0) {
    return errno == ENOENT ? Status::NotFound("cgroup " + cgroup_dir + " does not exist")
                           : Status::FromErrno("statfs " + cgroup_dir, errno);
  }
  if (fs.f_type != kCgroup2Magic) {
    return Status::InvalidArgument(cgroup_dir + " is not in a cgroup v2 hierarchy");
  }
  struct stat st;
  if (::stat(cgroup_dir.c_str(), &st) != 0) return Status::FromErrno("stat " + cgroup_dir, errno);
  *id = st.st_ino;
  return Status::Ok();
}

bool IsOnBpffs(const std::string& path) {
  struct statfs fs;
  return ::statfs(path.c_str(), &fs) == 0 && fs.f_type == kBpfFsMagic;
}

Status EnsureBpffs(const std::string& dir, bool* mounted) {
  *mounted = false;
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path existing = dir;
  while (!existing.empty() && existing != existing.root_path() && !fs::exists(existing, ec)) {
    existing = existing.parent_path();
  }
  // The conventional place: a host whose /sys/fs/bpf is still the bare sysfs
  // directory gets bpffs mounted there, as systemd would (sysfs itself does
  // not allow creating directories).
  const fs::path kStandard = "/sys/fs/bpf";
  fs::path mount_at;
  if (IsOnBpffs(existing.string())) {
    mount_at.clear();
  } else if ((existing == kStandard || existing == kStandard.parent_path()) &&
             fs::path(dir).string().starts_with(kStandard.string())) {
    mount_at = kStandard;
  } else {
    mount_at = dir;
  }
  if (!mount_at.empty()) {
    fs::create_directories(mount_at, ec);
    if (ec) return Status::IoError("create " + mount_at.string() + ": " + ec.message());
    if (::mount("bpf", mount_at.c_str(), "bpf", 0, "mode=0700") != 0) {
      return Status::FromErrno("mount bpffs at " + mount_at.string(), errno);
    }
    *mounted = true;
  }
  fs::create_directories(dir, ec);
  if (ec) return Status::IoError("create " + dir + ": " + ec.message());
  return Status::Ok();
}

Status EnsureTracefs(bool* mounted) {
  *mounted = false;
  namespace fs = std::filesystem;
  std::error_code ec;
  for (const char* events : {"/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"}) {
    if (fs::is_directory(events, ec)) return Status::Ok();
  }
  const char* at = "/sys/kernel/tracing";
  fs::create_directories(at, ec);  // exists on every kernel with tracefs; no harm if not
  if (::mount("tracefs", at, "tracefs", 0, "mode=0700") != 0) {
    return Status::FromErrno(
        std::string("mount tracefs at ") + at + " (activity capture needs the syscall tracepoints)",
        errno);
  }
  *mounted = true;
  return Status::Ok();
}

}  // namespace latch::agent
