#include "schemas/event_json.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstring>

namespace latch::record {

const char* VerdictName(uint8_t verdict) {
  switch (verdict) {
    case LATCH_VERDICT_ALLOW_GRANT:
      return "allow";
    case LATCH_VERDICT_DENY:
      return "deny";
    case LATCH_VERDICT_AUDIT_ALLOW:
      return "audit";
    case LATCH_VERDICT_CUT:
      return "cut";
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
    case LATCH_HOOK_EGRESS_LOCAL:
      return "egress_local";
    case LATCH_HOOK_PACKET_EGRESS:
      return "packet_egress";
    case LATCH_HOOK_PACKET_INGRESS:
      return "packet_ingress";
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

const char* ProtocolName(uint8_t protocol) {
  return protocol == IPPROTO_TCP ? "tcp" : protocol == IPPROTO_UDP ? "udp" : "other";
}

template <typename T>
void AppendNumber(std::string* out, T v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  out->append(buf, end);
}

// A JSON string for a kernel-supplied name: quotes, backslashes and control
// characters escaped; other bytes copied (comm is at most 15 bytes).
void AppendJsonString(std::string* out, const char* s, size_t max) {
  static const char* kHex = "0123456789abcdef";
  out->push_back('"');
  for (size_t i = 0; i < max && s[i] != '\0'; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c < 0x20 || c >= 0x80) {
      // Control bytes, and bytes that may not be valid UTF-8, as \u00XX.
      out->append("\\u00");
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    } else {
      out->push_back(static_cast<char>(c));
    }
  }
  out->push_back('"');
}

}  // namespace

void AppendDecisionJsonLine(const latch_decision_event& e, const std::string& host_id_json,
                            std::string* out) {
  out->append("{\"type\":\"decision\",\"host_id\":");
  out->append(host_id_json);
  out->append(",\"ktime_boot_ns\":");
  AppendNumber(out, e.ktime_boot_ns);
  out->append(",\"verdict\":\"");
  out->append(VerdictName(e.verdict));
  out->append("\",\"resource_id\":");
  AppendNumber(out, e.resource_id);
  out->append(",\"grant_id\":");
  AppendNumber(out, e.grant_id);
  out->append(",\"pid\":");
  AppendNumber(out, e.pid);
  out->append(",\"tgid\":");
  AppendNumber(out, e.tgid);
  out->append(",\"uid\":");
  AppendNumber(out, e.uid);
  out->append(",\"gid\":");
  AppendNumber(out, e.gid);
  out->append(",\"cgroup_id\":");
  AppendNumber(out, e.cgroup_id);
  out->append(",\"comm\":");
  AppendJsonString(out, e.comm, sizeof(e.comm));
  out->append(e.family == AF_INET6 ? ",\"family\":\"ipv6\"" : ",\"family\":\"ipv4\"");
  out->append(",\"protocol\":\"");
  out->append(ProtocolName(e.protocol));
  out->append("\",\"daddr\":\"");
  out->append(AddressText(e.addr));
  out->append("\",\"dport\":");
  AppendNumber(out, e.port);
  out->append(",\"hook\":\"");
  out->append(HookName(e.hook));
  out->append("\"}\n");
}

nlohmann::json DecisionToJson(const latch_decision_event& e, const std::string& host_id) {
  std::string line;
  AppendDecisionJsonLine(e, nlohmann::json(host_id).dump(), &line);
  return nlohmann::json::parse(line);
}

nlohmann::json LossToJson(const std::string& kind, uint64_t count, uint64_t total,
                          const std::string& host_id) {
  return {
      {"type", "loss"}, {"host_id", host_id}, {"kind", kind}, {"count", count}, {"total", total}};
}

}  // namespace latch::record
