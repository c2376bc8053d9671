// Test and benchmark helper: a cgroup v2 directory and a bpffs mount of our
// own, removed (with everything in them) when the sandbox goes away. Nothing
// outside them is attached to or changed.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "agent/kernel_fs.h"

namespace latch::agent {

// 127.0.0.1:port as a socket address.
inline sockaddr_in Loopback4(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// A plain HTTP GET of `path` on 127.0.0.1:port: the whole answer (status
// line, headers, body) as the server sent it before closing; "" if nobody
// answered.
inline std::string LoopbackHttpGet(uint16_t port, const std::string& path) {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = Loopback4(port);
  std::string out;
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    (void)!::write(s, req.data(), req.size());
    char buf[4096];
    ssize_t n;
    while ((n = ::read(s, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
  }
  ::close(s);
  return out;
}

// The start of the agent's log entry saying its guard is attached or adopted.
inline constexpr const char* kGuardLogEntry = "msg=\"guard ";

// The port in the agent's log entry `msg="metrics served" url=http://HOST:PORT/metrics`
// (the last one), 0 if there is none: agents under test bind port 0 (any
// free one), since a port picked beforehand can be taken by then.
inline uint16_t MetricsPortFromLog(const std::string& log) {
  const std::string prefix = "msg=\"metrics served\" url=http://";
  size_t at = log.rfind(prefix);
  if (at == std::string::npos) return 0;
  size_t colon = log.find(':', at + prefix.size());
  if (colon == std::string::npos) return 0;
  return static_cast<uint16_t>(std::strtoul(log.c_str() + colon + 1, nullptr, 10));
}

// In a forked child: moves the process into `cgroup` and, unless uid is 0,
// becomes that uid (and gid). Async-signal-safe; false on failure.
// A loopback TCP port nobody listens on now (bind to port 0, read it, close).
inline uint16_t FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = Loopback4(0);
  socklen_t len = sizeof(a);
  uint16_t port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

inline bool JoinCgroupAs(const std::string& cgroup_procs, uint32_t uid) {
  int fd = ::open(cgroup_procs.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool moved = ::write(fd, "0", 1) == 1;
  ::close(fd);
  if (!moved) return false;
  return uid == 0 || (::setresgid(uid, uid, uid) == 0 && ::setresuid(uid, uid, uid) == 0);
}

// One TCP connect to 127.0.0.1:port from a child that joins `cgroup` as
// `uid`: 0 if it connected, else its errno (-1 if the child failed).
inline int ConnectFromCgroupAs(const std::string& cgroup, uint32_t uid, uint16_t port) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return -1;
  pid_t child = ::fork();
  if (child == 0) {
    if (!JoinCgroupAs(cgroup + "/cgroup.procs", uid)) ::_exit(100);
    int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a = Loopback4(port);
    int err = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 ? 0 : errno;
    (void)!::write(p[1], &err, sizeof(err));
    ::_exit(0);
  }
  ::close(p[1]);
  int err = -1;
  if (::read(p[0], &err, sizeof(err)) != sizeof(err)) err = -1;
  ::close(p[0]);
  ::waitpid(child, nullptr, 0);
  return err;
}

// Why a kernel test cannot run here ("" if it can): it needs root and BTF.
inline std::string KernelTestCannotRun() {
  if (::geteuid() != 0) return "not root";
  if (!std::filesystem::exists("/sys/kernel/btf/vmlinux")) return "kernel has no BTF";
  return "";
}
inline bool UnderCi() {
  const char* ci = std::getenv("CI");
  return ci != nullptr && std::string(ci) == "true";
}

// In a test's SetUp: skip when the kernel test cannot run, except under
// CI=true, where that fails (a skip must never hide a failure there).
#define LATCH_SKIP_UNLESS_KERNEL_TEST_CAN_RUN()                      \
  do {                                                               \
    std::string why_not = ::latch::agent::KernelTestCannotRun();     \
    if (!why_not.empty()) {                                          \
      if (::latch::agent::UnderCi()) {                               \
        FAIL() << "kernel test cannot run under CI: " << why_not;    \
      }                                                              \
      GTEST_SKIP() << "kernel test needs root and BTF: " << why_not; \
    }                                                                \
  } while (0)

// A fresh cgroup v2 directory for one test, <mount>/<prefix>-<pid>-<n>, in
// *path; empty on success, else why not. The test removes it when done.
inline std::string CreateTestCgroup(const std::string& prefix, std::string* path) {
  std::string mount;
  Status s = FindCgroup2Mount(&mount);
  if (!s.ok()) return s.ToString();
  static std::atomic<int> seq{0};
  *path = mount + "/" + prefix + "-" + std::to_string(::getpid()) + "-" + std::to_string(seq++);
  if (!std::filesystem::create_directory(*path)) return "cannot create " + *path;
  return "";
}

class KernelSandbox {
 public:
  // Empty on success, else why it could not be made.
  std::string Create(const std::string& name) {
    std::string why = CreateTestCgroup(name, &cgroup_);
    if (!why.empty()) return why;
    char tmpl[] = "/tmp/latch-bpffs-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return "mkdtemp failed";
    bpffs_ = tmpl;
    if (::mount("bpf", bpffs_.c_str(), "bpf", 0, "mode=0700") != 0) return "cannot mount bpffs";
    mounted_ = true;
    pin_dir_ = bpffs_ + "/guard";
    std::filesystem::create_directory(pin_dir_);
    return "";
  }
  ~KernelSandbox() {
    if (mounted_) ::umount2(bpffs_.c_str(), MNT_DETACH);
    if (!bpffs_.empty()) ::rmdir(bpffs_.c_str());
    if (!cgroup_.empty()) ::rmdir(cgroup_.c_str());
  }
  const std::string& cgroup() const { return cgroup_; }
  const std::string& pin_dir() const { return pin_dir_; }

 private:
  std::string cgroup_;
  std::string bpffs_;
  std::string pin_dir_;
  bool mounted_ = false;
};

}  // namespace latch::agent
