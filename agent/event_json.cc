#include "agent/event_json.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace latch::agent {

const char* VerdictName(uint8_t verdict) {
  switch (verdict) {
    case LATCH_VERDICT_ALLOW_GRANT:
      return "allow";
    case LATCH_VERDICT_DENY:
      return "deny";
    case LATCH_VERDICT_AUDIT_ALLOW:
      return "audit";
    default:
      return "unknown";
  }
}

namespace {

const char* HookName(uint8_t hook) {
  switch (hook) {
    case LATCH_HOOK_CONNECT4:
      return "connect4";
    case LATCH_HOOK_CONNECT6:
      return "connect6";
    case LATCH_HOOK_SENDMSG4:
      return "sendmsg4";
    case LATCH_HOOK_SENDMSG6:
      return "sendmsg6";
    default:
      return "unknown";
  }
}

std::string AddressText(const uint8_t addr[LATCH_ADDR_LEN]) {
  static const uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  char buf[INET6_ADDRSTRLEN];
  if (std::memcmp(addr, kMappedPrefix, sizeof(kMappedPrefix)) == 0) {
    inet_ntop(AF_INET, addr + 12, buf, sizeof(buf));
  } else {
    inet_ntop(AF_INET6, addr, buf, sizeof(buf));
  }
  return buf;
}

}  // namespace

nlohmann::json DecisionToJson(const latch_decision_event& e, const std::string& host_id) {
  char comm[sizeof(e.comm) + 1] = {};
  std::memcpy(comm, e.comm, sizeof(e.comm));
  nlohmann::json j;
  j["type"] = "decision";
  j["host_id"] = host_id;
  j["ktime_boot_ns"] = e.ktime_boot_ns;
  j["verdict"] = VerdictName(e.verdict);
  j["resource_id"] = e.resource_id;
  j["grant_id"] = e.grant_id;
  j["pid"] = e.pid;
  j["tgid"] = e.tgid;
  j["uid"] = e.uid;
  j["gid"] = e.gid;
  j["cgroup_id"] = e.cgroup_id;
  j["comm"] = std::string(comm);
  j["family"] = e.family == AF_INET6 ? "ipv6" : "ipv4";
  j["protocol"] = e.protocol == IPPROTO_TCP ? "tcp" : e.protocol == IPPROTO_UDP ? "udp" : "other";
  j["daddr"] = AddressText(e.addr);
  j["dport"] = e.port;
  j["hook"] = HookName(e.hook);
  return j;
}

nlohmann::json LossToJson(const std::string& kind, uint64_t count, uint64_t total,
                          const std::string& host_id) {
  return {
      {"type", "loss"}, {"host_id", host_id}, {"kind", kind}, {"count", count}, {"total", total}};
}

}  // namespace latch::agent
