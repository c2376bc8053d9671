#include "agent/percpu_counters.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <string>
#include <vector>

namespace latch::agent {

Status ReadPerCpuCounters(int map_fd, uint32_t slots, uint64_t* out) {
  int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) return Status::FromErrno("counting CPUs", -cpus);
  std::vector<uint64_t> per_cpu(static_cast<size_t>(cpus));
  for (uint32_t slot = 0; slot < slots; ++slot) {
    if (bpf_map_lookup_elem(map_fd, &slot, per_cpu.data()) != 0) {
      return Status::FromErrno("reading counter " + std::to_string(slot), errno);
    }
    uint64_t sum = 0;
    for (uint64_t v : per_cpu) sum += v;
    out[slot] = sum;
  }
  return Status::Ok();
}

}  // namespace latch::agent
