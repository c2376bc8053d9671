#include "agent/enforcer.h"

#include <bpf/bpf.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "agent/boot_clock.h"

namespace latch::agent {
namespace {

latch_cidr_key KeyOf(uint32_t prefixlen, const std::array<uint8_t, 16>& addr) {
  latch_cidr_key k{};
  k.prefixlen = prefixlen;
  std::memcpy(k.addr, addr.data(), sizeof(k.addr));
  return k;
}

}  // namespace

Status BpfEnforcer::SetResources(const std::vector<Resource>& resources) {
  std::map<std::pair<uint32_t, std::array<uint8_t, 16>>, latch_cidr_rules> wanted;
  LATCH_RETURN_IF_ERROR(CompileResources(resources, &wanted));
  if (wanted.size() > LATCH_MAX_CIDRS) {
    return Status::InvalidArgument(std::to_string(wanted.size()) +
                                   " CIDR entries exceed the kernel's " +
                                   std::to_string(LATCH_MAX_CIDRS));
  }
  std::vector<std::pair<Cidr, latch_cidr_rules>> current;
  LATCH_RETURN_IF_ERROR(ListResourceEntries(&current));
  int fd = maps_.resources_fd;
  for (const auto& [key, rules] : wanted) {
    latch_cidr_key k = KeyOf(key.first, key.second);
    if (bpf_map_update_elem(fd, &k, &rules, BPF_ANY) != 0) {
      return Status::FromErrno("writing resource entry", errno);
    }
  }
  for (const auto& [cidr, rules] : current) {
    if (wanted.count({cidr.prefixlen, cidr.addr}) != 0) continue;
    latch_cidr_key k = KeyOf(cidr.prefixlen, cidr.addr);
    if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT) {
      return Status::FromErrno("removing resource entry " + cidr.ToString(), errno);
    }
  }
  return Status::Ok();
}

Status BpfEnforcer::ListResourceEntries(std::vector<std::pair<Cidr, latch_cidr_rules>>* out) {
  out->clear();
  int fd = maps_.resources_fd;
  latch_cidr_key key{};
  latch_cidr_key next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    latch_cidr_rules rules{};
    if (bpf_map_lookup_elem(fd, &next, &rules) == 0) {
      Cidr c;
      c.prefixlen = next.prefixlen;
      std::memcpy(c.addr.data(), next.addr, sizeof(next.addr));
      out->emplace_back(c, rules);
    }
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) return Status::FromErrno("listing resource entries", errno);
  return Status::Ok();
}

Status BpfEnforcer::ApplyGrant(const Grant& grant) {
  if (grant.grant_id == 0) return Status::InvalidArgument("grant id 0 is reserved");
  if (grant.not_after_unix_ns <= grant.not_before_unix_ns) {
    return Status::InvalidArgument("grant " + std::to_string(grant.grant_id) +
                                   " ends before it begins");
  }
  latch_grant_key key{};
  key.kind = static_cast<uint32_t>(grant.principal.kind);
  key.resource_id = grant.resource_id;
  key.principal = grant.principal.id;
  latch_grant_value value{};
  value.not_before_ns = WallToBootNs(grant.not_before_unix_ns);
  value.not_after_ns = WallToBootNs(grant.not_after_unix_ns);
  value.grant_id = grant.grant_id;
  if (bpf_map_update_elem(maps_.grants_fd, &key, &value, BPF_ANY) != 0) {
    return Status::FromErrno("writing grant " + std::to_string(grant.grant_id), errno);
  }
  return Status::Ok();
}

Status BpfEnforcer::ListGrants(std::vector<KernelGrant>* out) {
  out->clear();
  int fd = maps_.grants_fd;
  latch_grant_key key{};
  latch_grant_key next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    latch_grant_value v{};
    if (bpf_map_lookup_elem(fd, &next, &v) == 0) {
      KernelGrant g;
      g.grant_id = v.grant_id;
      g.principal = {static_cast<Principal::Kind>(next.kind), next.principal};
      g.resource_id = next.resource_id;
      g.not_before_boot_ns = v.not_before_ns;
      g.not_after_boot_ns = v.not_after_ns;
      out->push_back(g);
    }
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) return Status::FromErrno("listing grants", errno);
  return Status::Ok();
}

Status BpfEnforcer::RevokeGrant(uint64_t grant_id) {
  int fd = maps_.grants_fd;
  latch_grant_key key{};
  latch_grant_key next{};
  const void* prev = nullptr;
  std::vector<latch_grant_key> matches;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    latch_grant_value v{};
    if (bpf_map_lookup_elem(fd, &next, &v) == 0 && v.grant_id == grant_id) matches.push_back(next);
    key = next;
    prev = &key;
  }
  if (matches.empty())
    return Status::NotFound("no grant " + std::to_string(grant_id) + " in the kernel");
  for (const latch_grant_key& k : matches) {
    if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT) {
      return Status::FromErrno("revoking grant " + std::to_string(grant_id), errno);
    }
  }
  return Status::Ok();
}

}  // namespace latch::agent
