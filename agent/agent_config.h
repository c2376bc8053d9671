// latch-agent's configuration file (TOML):
//
//   instance = "default"                # names the pin directory
//   host_id = "db-host-1"
//   cgroup = "/sys/fs/cgroup/unified"   # default: the cgroup v2 root
//   pin_dir = "/sys/fs/bpf/latch/default"   # default: /sys/fs/bpf/latch/<instance>
//   ring_buffer_bytes = 4194304
//   counters_interval_ms = 1000
//   cut_established_connections = true   # stop connections when their grant ends
//
//   [[resource]]
//   id = 1
//   name = "postgres"
//   destinations = ["10.0.0.5/32", "fd00::5"]
//   protocol = "tcp"        # tcp | udp | any
//   ports = "5432"          # "5432", "8000-8100" or "*"
//   mode = "enforce"        # enforce | audit
//
// A setting that is missing, mistyped or unknown is an error naming it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/resource.h"
#include "tlog/status.h"

namespace latch::agent {

struct AgentConfig {
  std::string instance = "default";
  std::string host_id;
  std::string cgroup;   // empty: the root of the cgroup v2 hierarchy
  std::string pin_dir;  // empty: /sys/fs/bpf/latch/<instance>
  uint32_t ring_buffer_bytes = 4u << 20;
  uint32_t counters_interval_ms = 1000;
  bool cut_established_connections = true;
  std::vector<Resource> resources;
};

Status LoadAgentConfig(const std::string& path, AgentConfig* out);
Status ParseAgentConfig(std::string_view toml_text, const std::string& source, AgentConfig* out);
// Fills in cgroup and pin_dir defaults (finding the cgroup v2 mount).
Status ResolveAgentDefaults(AgentConfig* config);

}  // namespace latch::agent
