// LossyLink: two network namespaces joined by a lossy, slow link made in user
// space (this kernel has no netem): a TUN device in each and a relay thread
// that moves IP packets between them, dropping each with probability `loss`
// and holding the rest for `delay` in each direction. Addresses: kAddrA in
// namespace a(), kAddrB in b(), each a point-to-point peer of the other.
// The namespaces are the link's own and go with it.
#pragma once

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace latch::testing {

class LossyLink {
 public:
  static constexpr const char* kAddrA = "10.98.0.1";
  static constexpr const char* kAddrB = "10.98.0.2";

  struct Options {
    double loss = 0.2;                     // per packet, each direction
    std::chrono::milliseconds delay{100};  // each direction
    uint32_t seed = 1;
  };

  LossyLink() = default;
  LossyLink(const LossyLink&) = delete;
  LossyLink& operator=(const LossyLink&) = delete;
  ~LossyLink() {
    stop_ = true;
    if (relay_.joinable()) relay_.join();
    for (int fd : tun_) {
      if (fd >= 0) ::close(fd);
    }
    for (const std::string& ns : ns_) {
      if (!ns.empty()) Ip("netns del " + ns);
    }
  }

  // "" when the link is up, else what failed. `tag` keeps the names apart.
  std::string Create(const std::string& tag, Options options) {
    options_ = options;
    ns_[0] = "latch-lossy-a-" + tag;
    ns_[1] = "latch-lossy-b-" + tag;
    const char* addr[2] = {kAddrA, kAddrB};
    for (int i = 0; i < 2; ++i) {
      if (Ip("netns add " + ns_[i]) != 0) {
        std::string failed = ns_[i];
        ns_[i].clear();
        return "ip netns add " + failed;
      }
      if (Ip("-n " + ns_[i] + " link set lo up") != 0) return "lo up in " + ns_[i];
      std::string err = OpenTun(ns_[i], &tun_[i]);
      if (!err.empty()) return err;
      if (Ip("-n " + ns_[i] + " addr add " + addr[i] + " peer " + addr[1 - i] + " dev latchtun") !=
              0 ||
          Ip("-n " + ns_[i] + " link set latchtun up") != 0) {
        return "addressing latchtun in " + ns_[i];
      }
    }
    relay_ = std::thread([this] { Relay(); });
    return "";
  }

  const std::string& a() const { return ns_[0]; }
  const std::string& b() const { return ns_[1]; }
  uint64_t forwarded() const { return forwarded_; }
  uint64_t dropped() const { return dropped_; }

  // Moves the calling thread into namespace `ns` (its later sockets, and
  // threads it starts, are there). False if it cannot.
  static bool EnterNetns(const std::string& ns) {
    int fd = ::open(("/var/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = ::setns(fd, CLONE_NEWNET) == 0;
    ::close(fd);
    return ok;
  }

 private:
  struct Packet {
    std::chrono::steady_clock::time_point due;
    std::vector<char> bytes;
  };

  static int Ip(const std::string& args) {
    return std::system(("ip " + args + " >/dev/null 2>&1").c_str());
  }

  // A TUN device "latchtun" in `ns`, made from a thread of its own so that
  // this one's namespace is untouched.
  static std::string OpenTun(const std::string& ns, int* out) {
    std::string err;
    std::thread([&] {
      if (!EnterNetns(ns)) {
        err = "entering " + ns;
        return;
      }
      int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
      if (fd < 0) {
        err = std::string("open /dev/net/tun: ") + std::strerror(errno);
        return;
      }
      ifreq ifr{};
      ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
      std::strncpy(ifr.ifr_name, "latchtun", IFNAMSIZ - 1);
      if (::ioctl(fd, TUNSETIFF, &ifr) != 0) {
        err = std::string("TUNSETIFF: ") + std::strerror(errno);
        ::close(fd);
        return;
      }
      *out = fd;
    }).join();
    return err;
  }

  void Relay() {
    std::mt19937 rng(options_.seed);
    std::bernoulli_distribution drop(options_.loss);
    std::deque<Packet> queue[2];  // [i]: read from tun_[i], to be written to the other
    std::vector<char> buf(65536);
    while (!stop_) {
      auto now = std::chrono::steady_clock::now();
      int timeout_ms = 10;
      for (auto& q : queue) {
        if (q.empty()) continue;
        auto wait =
            std::chrono::duration_cast<std::chrono::milliseconds>(q.front().due - now).count();
        timeout_ms = std::max(0, std::min<int>(timeout_ms, static_cast<int>(wait)));
      }
      pollfd fds[2] = {{tun_[0], POLLIN, 0}, {tun_[1], POLLIN, 0}};
      ::poll(fds, 2, timeout_ms);
      now = std::chrono::steady_clock::now();
      for (int i = 0; i < 2; ++i) {
        for (;;) {
          ssize_t n = ::read(tun_[i], buf.data(), buf.size());
          if (n <= 0) break;
          if (drop(rng)) {
            ++dropped_;
            continue;
          }
          queue[i].push_back(
              {now + options_.delay, std::vector<char>(buf.begin(), buf.begin() + n)});
        }
      }
      for (int i = 0; i < 2; ++i) {
        while (!queue[i].empty() && queue[i].front().due <= now) {
          const auto& p = queue[i].front().bytes;
          if (::write(tun_[1 - i], p.data(), p.size()) == static_cast<ssize_t>(p.size())) {
            ++forwarded_;
          }
          queue[i].pop_front();
        }
      }
    }
  }

  Options options_;
  std::string ns_[2];
  int tun_[2] = {-1, -1};
  std::thread relay_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> forwarded_{0}, dropped_{0};
};

}  // namespace latch::testing
