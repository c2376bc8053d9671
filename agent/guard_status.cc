#include "agent/guard_status.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <sstream>

#include "agent/boot_clock.h"
#include "schemas/event_json.h"

namespace latch::agent {
namespace {

// Closes a file descriptor when it goes out of scope.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

Status OpenPin(const std::string& path, Fd* out) {
  out->fd = bpf_obj_get(path.c_str());
  if (out->fd < 0) {
    return errno == ENOENT ? Status::NotFound(path + " is not pinned: is the guard installed?")
                           : Status::FromErrno("open pin " + path, errno);
  }
  return Status::Ok();
}

}  // namespace

Status ReadGuardStatus(const std::string& pin_dir, GuardStatus* out) {
  Fd resources, grants, counters;
  LATCH_RETURN_IF_ERROR(OpenPin(pin_dir + "/latch_resources", &resources));
  LATCH_RETURN_IF_ERROR(OpenPin(pin_dir + "/latch_grants", &grants));
  LATCH_RETURN_IF_ERROR(OpenPin(pin_dir + "/latch_counters", &counters));
  BpfEnforcer enforcer(GuardMaps{resources.fd, grants.fd});
  LATCH_RETURN_IF_ERROR(enforcer.ListResourceEntries(&out->resources));
  LATCH_RETURN_IF_ERROR(enforcer.ListGrants(&out->grants));
  LATCH_RETURN_IF_ERROR(ReadGuardCounters(counters.fd, &out->counters));
  out->programs.clear();
  for (const auto& entry : std::filesystem::directory_iterator(pin_dir)) {
    std::string name = entry.path().filename().string();
    if (!name.starts_with("link_")) continue;
    Fd link;
    LATCH_RETURN_IF_ERROR(OpenPin(entry.path().string(), &link));
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(link.fd, &info, &len) != 0)
      return Status::FromErrno("link info " + name, errno);
    AttachedProgram p;
    p.link_pin = name;
    p.cgroup_id = info.cgroup.cgroup_id;
    Fd prog;
    prog.fd = bpf_prog_get_fd_by_id(info.prog_id);
    if (prog.fd >= 0) {
      bpf_prog_info pinfo{};
      uint32_t plen = sizeof(pinfo);
      if (bpf_obj_get_info_by_fd(prog.fd, &pinfo, &plen) == 0) {
        p.program = pinfo.name;
        p.stats = {pinfo.name, pinfo.run_cnt, pinfo.run_time_ns};
      }
    }
    out->programs.push_back(p);
  }
  return Status::Ok();
}

std::string FormatGuardStatus(const GuardStatus& s) {
  std::ostringstream o;
  o << "programs (" << s.programs.size() << " attached):\n";
  for (const auto& p : s.programs) {
    o << "  " << p.program << "  cgroup " << p.cgroup_id << "  runs " << p.stats.run_count;
    if (p.stats.run_count > 0 && p.stats.run_time_ns > 0) {
      o << "  avg " << p.stats.run_time_ns / p.stats.run_count << " ns";
    }
    o << "\n";
  }
  o << "resources (" << s.resources.size() << " CIDR entries):\n";
  for (const auto& [cidr, rules] : s.resources) {
    o << "  " << cidr.ToString() << ":";
    for (uint32_t i = 0; i < rules.count && i < LATCH_MAX_RULES_PER_CIDR; ++i) {
      const latch_rule& r = rules.rules[i];
      o << " [resource " << r.resource_id << " "
        << (r.protocol == 6    ? "tcp"
            : r.protocol == 17 ? "udp"
                               : "any")
        << " " << r.port_lo << "-" << r.port_hi << " "
        << (r.mode == LATCH_MODE_AUDIT ? "audit" : "enforce") << "]";
    }
    o << "\n";
  }
  uint64_t now = NowBootNs();
  o << "grants (" << s.grants.size() << "):\n";
  for (const auto& g : s.grants) {
    o << "  grant " << g.grant_id << "  "
      << (g.principal.kind == Principal::Kind::kUid ? "uid " : "cgroup ") << g.principal.id
      << "  resource " << g.resource_id << "  ";
    if (now < g.not_before_boot_ns) {
      o << "starts in " << (g.not_before_boot_ns - now) / 1'000'000 << " ms";
    } else if (now < g.not_after_boot_ns) {
      o << "live, ends in " << (g.not_after_boot_ns - now) / 1'000'000 << " ms";
    } else {
      o << "expired " << (now - g.not_after_boot_ns) / 1'000'000 << " ms ago";
    }
    o << "\n";
  }
  static_assert(LATCH_CTR_COUNT == 7, "name every counter below");
  const char* names[LATCH_CTR_COUNT] = {"allowed_with_grant",    "denied",      "audit_allowed",
                                        "events_lost_ring_full", "events_sent", "packets_cut",
                                        "connections_cut"};
  o << "counters:\n";
  for (int i = 0; i < LATCH_CTR_COUNT; ++i) o << "  " << names[i] << " " << s.counters[i] << "\n";
  return o.str();
}

}  // namespace latch::agent
