// Grants carry wall-clock times; the kernel compares them with its boot-time
// clock (bpf_ktime_get_boot_ns), which a wall-clock step cannot move.
#pragma once

#include <cstdint>

namespace latch::agent {

// Nanoseconds of CLOCK_BOOTTIME at the wall-clock instant `unix_ns`
// (CLOCK_REALTIME), using the current offset between the two clocks.
// Instants before boot map to 0; far-future ones saturate.
uint64_t WallToBootNs(int64_t unix_ns);
int64_t NowUnixNs();
uint64_t NowBootNs();

}  // namespace latch::agent
