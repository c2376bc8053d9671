// What a guard pinned under a directory holds, read from its pins without
// loading or changing anything: attached programs, resources, grants,
// counters. For `latch-agent status`.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "agent/enforcer.h"
#include "agent/guard.h"

namespace latch::agent {

struct AttachedProgram {
  std::string link_pin;
  std::string program;
  uint64_t cgroup_id = 0;
  ProgramStats stats;
};

struct GuardStatus {
  std::vector<AttachedProgram> programs;
  std::vector<std::pair<resource::Cidr, latch_cidr_rules>> resources;
  std::vector<KernelGrant> grants;
  std::array<uint64_t, LATCH_CTR_COUNT> counters{};
};

Status ReadGuardStatus(const std::string& pin_dir, GuardStatus* out);
std::string FormatGuardStatus(const GuardStatus& status);

}  // namespace latch::agent
