// A decision event as the kernel reports one (a denied connect of psql to
// 10.0.0.<i>:5432), for benchmarks that feed records without a kernel.
#pragma once

#include <cstdint>
#include <cstring>

#include "agent/boot_clock.h"
#include "bpf/guard_abi.h"

namespace latch::bench {

inline latch_decision_event SampleDecision(uint64_t i) {
  latch_decision_event e{};
  e.ktime_boot_ns = agent::NowBootNs();
  e.pid = e.tgid = 4242;
  e.uid = e.gid = 1000;
  e.cgroup_id = 77;
  std::memcpy(e.comm, "psql", 4);
  e.family = 2;
  e.protocol = 6;
  e.addr[10] = e.addr[11] = 0xff;
  e.addr[12] = 10;
  e.addr[15] = static_cast<uint8_t>(i);
  e.port = 5432;
  e.resource_id = 9;
  e.verdict = LATCH_VERDICT_DENY;
  e.hook = LATCH_HOOK_CONNECT4;
  return e;
}

}  // namespace latch::bench
