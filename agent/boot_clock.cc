#include "agent/boot_clock.h"

#include <time.h>

#include <limits>

namespace latch::agent {
namespace {

int64_t Read(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace

int64_t NowUnixNs() { return Read(CLOCK_REALTIME); }
uint64_t NowBootNs() { return static_cast<uint64_t>(Read(CLOCK_BOOTTIME)); }

uint64_t WallToBootNs(int64_t unix_ns) {
  // Read boot, wall, boot and keep the pair with the tighter bracket's midpoint.
  int64_t b1 = Read(CLOCK_BOOTTIME);
  int64_t w = Read(CLOCK_REALTIME);
  int64_t b2 = Read(CLOCK_BOOTTIME);
  int64_t offset = w - (b1 + (b2 - b1) / 2);  // wall - boot
  if (unix_ns <= offset) return 0;
  if (unix_ns == std::numeric_limits<int64_t>::max()) return std::numeric_limits<uint64_t>::max();
  return static_cast<uint64_t>(unix_ns - offset);
}

}  // namespace latch::agent
