// latch-agent's configuration file (TOML):
//
//   instance = "default"                # names the pin directory
//   host_id = "db-host-1"
//   cgroup = "/sys/fs/cgroup/unified"   # default: the cgroup v2 root
//   pin_dir = "/sys/fs/bpf/latch/default"   # default: /sys/fs/bpf/latch/<instance>
//   ring_buffer_bytes = 4194304
//   counters_interval_ms = 1000
//   cut_established_connections = true   # stop connections when their grant ends
//   guard_check_ms = 2000   # how often the guard's links and pins are checked; 0: never
//   drain_interval_ms = 100 # records reach the spool within this (sooner once an eighth of
//                           # a ring waits); 0: the kernel wakes the agent for every record
//   reattach_guard = true   # put a detached or replaced guard back (always recorded)
//   metrics_listen = "127.0.0.1:9464"     # Prometheus text at /metrics; default: off
//
//   [[resource]]
//   id = 1
//   name = "postgres"
//   destinations = ["10.0.0.5/32", "fd00::5"]
//   protocol = "tcp"        # tcp | udp | any
//   ports = "5432"          # "5432", "8000-8100" or "*"
//   mode = "enforce"        # enforce | audit
//
//   [collector]             # optional; without it records are JSON lines on stdout
//   endpoints = ["tcp://collector.example:7440"]   # tried in order on failure
//   # The next three come from `latch-agent enrol` (kept in state_dir/enrolment.toml),
//   # or are set by hand from `latch-collector keys`; set here, they win.
//   server_public_key = "<40 Z85 characters>"
//   grant_key = "<name>+<id>+<key>"                # verifies grants;
//                                                  # a list of keys during a key rotation
//   ledger_key = "<name>+<id>+<key>"               # verifies checkpoints
//   state_dir = "/var/lib/latch-agent/default"     # agent.key, checkpoint, spool/
//   spool_max_bytes = 268435456
//   batch_records = 4096
//   # Witnesses this agent demands (issue 18): every acknowledged record must be
//   # in a checkpoint a quorum of them cosigned within witnessed_within_ms.
//   witness_keys = ["<name>+<id>+<key>"]           # latch-witness key prints each
//   witness_quorum = 1                             # default: all of them
//   witnessed_within_ms = 30000
//
//   [activity]              # what watched principals do (issue 6); all optional
//   watch = "grants"        # grants (holders of a live grant) | cgroup | all | off
//   cgroup = "/sys/fs/cgroup/ops"   # watch = "cgroup": this cgroup and below, too
//   paths = ["/etc/shadow", "/var/lib/postgresql"]   # opens under these are recorded
//   throttle_events = 2000  # per process per second window; 0: never throttle
//   throttle_window_ms = 1000
//   ring_buffer_bytes = 8388608
//   redact_defaults = true  # take passwords, tokens, URL and -u credentials out of
//                           # command lines before they are recorded (argv_redactor.h)
//   redact = ["--vault-id=(\\S+)"]   # more, RE2: groups (or the whole match) replaced
//
// A setting that is missing, mistyped or unknown is an error naming it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/activity_capture.h"
#include "agent/argv_redactor.h"
#include "lib/status/status.h"
#include "schemas/resource.h"

namespace latch::agent {

struct CollectorSettings {
  bool enabled = false;
  std::vector<std::string> endpoints;
  std::string server_public_key;
  std::vector<std::string> grant_keys;  // any of them may sign grant sets and grants
  std::string ledger_key;
  std::string state_dir;  // empty: /var/lib/latch-agent/<instance>
  uint64_t spool_max_bytes = 256ull << 20;
  uint32_t batch_records = 4096;
  std::vector<std::string> witness_keys;  // cosignature/v1 verifier keys; empty: none demanded
  size_t witness_quorum = 0;              // 0: all of them
  uint64_t witnessed_within_ms = 30000;
};

struct AgentConfig {
  std::string instance = "default";
  std::string host_id;
  std::string cgroup;   // empty: the root of the cgroup v2 hierarchy
  std::string pin_dir;  // empty: /sys/fs/bpf/latch/<instance>
  uint32_t ring_buffer_bytes = 4u << 20;
  uint32_t counters_interval_ms = 1000;
  uint32_t guard_check_ms = 2000;
  uint32_t drain_interval_ms = 100;
  bool reattach_guard = true;
  bool cut_established_connections = true;
  std::string metrics_listen;  // "HOST:PORT" for /metrics; empty: not served
  std::vector<resource::Resource> resources;
  CollectorSettings collector;
  // Defaults: grant holders watched; opens of the password and sudo files.
  ActivityOptions activity = DefaultActivityOptions();
  RedactionRules redaction;  // applied to exec records' arguments

  static ActivityOptions DefaultActivityOptions() {
    ActivityOptions a;
    a.path_prefixes = {"/etc/shadow", "/etc/gshadow", "/etc/sudoers"};
    return a;
  }
};

Status LoadAgentConfig(const std::string& path, AgentConfig* out);
Status ParseAgentConfig(std::string_view toml_text, const std::string& source, AgentConfig* out);
// Whether the collector's endpoints and keys must be known: the daemon needs
// them; `latch-agent enrol` and `key` run before they are.
enum class CollectorKeys { kRequired, kOptional };
// Fills in cgroup and pin_dir defaults (finding the cgroup v2 mount), the
// activity capture's pin directory, and what [collector] leaves out from
// the enrolment file (EnrolmentPath) if `latch-agent enrol` wrote one.
Status ResolveAgentDefaults(AgentConfig* config, CollectorKeys keys = CollectorKeys::kRequired);
// Where `latch-agent enrol` keeps what it received: <state_dir>/enrolment.toml.
std::string EnrolmentPath(const std::string& state_dir);
// Where activity capture pins its programs and maps: <pin_dir>/activity.
std::string ActivityPinDir(const AgentConfig& config);

}  // namespace latch::agent
