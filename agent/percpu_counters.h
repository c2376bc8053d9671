// Per-CPU counter arrays (BPF_MAP_TYPE_PERCPU_ARRAY of u64), summed over CPUs:
// how the guard's and the activity programs' counters are read.
#pragma once

#include <cstdint>

#include "lib/status/status.h"

namespace latch::agent {

// Fills out[0, slots) with each slot's sum over every possible CPU.
Status ReadPerCpuCounters(int map_fd, uint32_t slots, uint64_t* out);

}  // namespace latch::agent
