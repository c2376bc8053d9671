#include "agent/boot_clock.h"

#include <gtest/gtest.h>

#include <limits>

namespace latch::agent {
namespace {

TEST(BootClock, WallTimesMapOntoTheBootClock) {
  int64_t wall = NowUnixNs();
  uint64_t boot = NowBootNs();
  uint64_t mapped = WallToBootNs(wall);
  // The same instant, read twice: within a millisecond of each other.
  EXPECT_LT(mapped > boot ? mapped - boot : boot - mapped, 1'000'000u);
  uint64_t later = WallToBootNs(wall + 5'000'000'000) - mapped;
  EXPECT_GT(later, 4'999'000'000u);
  EXPECT_LT(later, 5'001'000'000u);
  EXPECT_EQ(WallToBootNs(0), 0u);  // before boot
  EXPECT_EQ(WallToBootNs(std::numeric_limits<int64_t>::max()),
            std::numeric_limits<uint64_t>::max());
}

}  // namespace
}  // namespace latch::agent
