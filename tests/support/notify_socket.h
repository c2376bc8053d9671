// Test helper: stands in for systemd's notification socket. Bind it, put its
// path in NOTIFY_SOCKET for the process under test, and read what the
// process tells systemd (sd_notify: "READY=1", "STOPPING=1", ...).
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace latch::testing {

class NotifySocket {
 public:
  // Empty path() afterwards if the socket could not be made.
  explicit NotifySocket(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (fd_ < 0 || path.size() >= sizeof(addr.sun_path)) return;
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) path_ = path;
  }
  ~NotifySocket() {
    if (fd_ >= 0) ::close(fd_);
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  NotifySocket(const NotifySocket&) = delete;
  NotifySocket& operator=(const NotifySocket&) = delete;

  const std::string& path() const { return path_; }
  // The next message, or "" if none came within `timeout_ms`.
  std::string Receive(int timeout_ms = 5000) {
    pollfd p{fd_, POLLIN, 0};
    char buf[512] = {};
    if (::poll(&p, 1, timeout_ms) != 1) return "";
    ssize_t n = ::recv(fd_, buf, sizeof(buf) - 1, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

 private:
  int fd_ = -1;
  std::string path_;
};

}  // namespace latch::testing
