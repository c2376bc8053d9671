#include "agent/enforcer.h"

#include <bpf/bpf.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <set>

#include "agent/boot_clock.h"

namespace latch::agent {
namespace {

// Calls fn(key) for every key of a BPF map. Deletions during the walk are
// fine: the kernel continues from the next key after a missing one.
template <typename Key, typename Fn>
Status ForEachKey(int fd, const char* what, Fn fn) {
  Key key{};
  Key next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    LATCH_RETURN_IF_ERROR(fn(next));
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) return Status::FromErrno(what, errno);
  return Status::Ok();
}

latch_cidr_key KeyOf(uint32_t prefixlen, const std::array<uint8_t, 16>& addr) {
  latch_cidr_key k{};
  k.prefixlen = prefixlen;
  std::memcpy(k.addr, addr.data(), sizeof(k.addr));
  return k;
}

using PortBitmap = std::array<uint64_t, LATCH_PORT_WORDS>;

void MarkPorts(const latch_cidr_rules& rules, PortBitmap* bits) {
  uint32_t n = std::min<uint32_t>(rules.count, LATCH_MAX_RULES_PER_CIDR);
  for (uint32_t i = 0; i < n; ++i) {
    for (uint32_t port = rules.rules[i].port_lo; port <= rules.rules[i].port_hi; ++port) {
      (*bits)[port / 64] |= uint64_t{1} << (port % 64);
    }
  }
}

Status ReadPorts(int fd, PortBitmap* out) {
  for (uint32_t word = 0; word < LATCH_PORT_WORDS; ++word) {
    if (bpf_map_lookup_elem(fd, &word, &(*out)[word]) != 0) {
      return Status::FromErrno("reading the protected-port bitmap", errno);
    }
  }
  return Status::Ok();
}

// Writes the words of `want` that differ from `have` (and records them there).
Status WritePorts(int fd, const PortBitmap& want, PortBitmap* have) {
  for (uint32_t word = 0; word < LATCH_PORT_WORDS; ++word) {
    if (want[word] == (*have)[word]) continue;
    if (bpf_map_update_elem(fd, &word, &want[word], BPF_ANY) != 0) {
      return Status::FromErrno("writing the protected-port bitmap", errno);
    }
    (*have)[word] = want[word];
  }
  return Status::Ok();
}

}  // namespace

Status BpfEnforcer::SetResources(const std::vector<resource::Resource>& resources) {
  std::map<std::pair<uint32_t, std::array<uint8_t, 16>>, latch_cidr_rules> wanted;
  LATCH_RETURN_IF_ERROR(resource::CompileResources(resources, &wanted));
  if (wanted.size() > LATCH_MAX_CIDRS) {
    return Status::InvalidArgument(std::to_string(wanted.size()) +
                                   " CIDR entries exceed the kernel's " +
                                   std::to_string(LATCH_MAX_CIDRS));
  }
  if (maps_.ports_fd < 0) return Status::FailedPrecondition("no protected-port map to write");
  std::vector<std::pair<resource::Cidr, latch_cidr_rules>> current;
  LATCH_RETURN_IF_ERROR(ListResourceEntries(&current));
  // The per-packet programs look only at sockets whose peer port is marked, so
  // the bitmap covers old and new ports while the trie changes, then only new.
  PortBitmap ports_in_kernel{};
  LATCH_RETURN_IF_ERROR(ReadPorts(maps_.ports_fd, &ports_in_kernel));
  latch_cidr_rules local{};
  LATCH_RETURN_IF_ERROR(resource::CompileLocalRules(resources, &local));
  if (local.count > 0 && maps_.local_fd < 0) {
    return Status::FailedPrecondition("no map for \"local\" rules to write");
  }
  PortBitmap ports_wanted{};
  for (const auto& [key, rules] : wanted) MarkPorts(rules, &ports_wanted);
  MarkPorts(local, &ports_wanted);
  PortBitmap ports_union = ports_in_kernel;
  for (size_t w = 0; w < ports_union.size(); ++w) ports_union[w] |= ports_wanted[w];
  LATCH_RETURN_IF_ERROR(WritePorts(maps_.ports_fd, ports_union, &ports_in_kernel));
  int fd = maps_.resources_fd;
  for (const auto& [key, rules] : wanted) {
    latch_cidr_key k = KeyOf(key.first, key.second);
    if (bpf_map_update_elem(fd, &k, &rules, BPF_ANY) != 0) {
      return Status::FromErrno("writing resource entry", errno);
    }
  }
  if (maps_.local_fd >= 0) {
    uint32_t zero = 0;
    if (bpf_map_update_elem(maps_.local_fd, &zero, &local, BPF_ANY) != 0) {
      return Status::FromErrno("writing the rules for \"local\"", errno);
    }
  }
  for (const auto& [cidr, rules] : current) {
    if (wanted.count({cidr.prefixlen, cidr.addr}) != 0) continue;
    latch_cidr_key k = KeyOf(cidr.prefixlen, cidr.addr);
    if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT) {
      return Status::FromErrno("removing resource entry " + cidr.ToString(), errno);
    }
  }
  return WritePorts(maps_.ports_fd, ports_wanted, &ports_in_kernel);
}

Status BpfEnforcer::ListResourceEntries(
    std::vector<std::pair<resource::Cidr, latch_cidr_rules>>* out) {
  out->clear();
  int fd = maps_.resources_fd;
  return ForEachKey<latch_cidr_key>(fd, "listing resource entries", [&](const latch_cidr_key& k) {
    latch_cidr_rules rules{};
    if (bpf_map_lookup_elem(fd, &k, &rules) == 0) {
      resource::Cidr c;
      c.prefixlen = k.prefixlen;
      std::memcpy(c.addr.data(), k.addr, sizeof(k.addr));
      out->emplace_back(c, rules);
    }
    return Status::Ok();
  });
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
  return ForEachKey<latch_grant_key>(fd, "listing grants", [&](const latch_grant_key& k) {
    latch_grant_value v{};
    if (bpf_map_lookup_elem(fd, &k, &v) == 0) {
      out->push_back({v.grant_id,
                      {static_cast<Principal::Kind>(k.kind), k.principal},
                      k.resource_id,
                      v.not_before_ns,
                      v.not_after_ns});
    }
    return Status::Ok();
  });
}

Status BpfEnforcer::RevokeGrant(uint64_t grant_id) {
  int fd = maps_.grants_fd;
  std::vector<latch_grant_key> matches;
  LATCH_RETURN_IF_ERROR(
      ForEachKey<latch_grant_key>(fd, "finding grant", [&](const latch_grant_key& k) {
        latch_grant_value v{};
        if (bpf_map_lookup_elem(fd, &k, &v) == 0 && v.grant_id == grant_id) matches.push_back(k);
        return Status::Ok();
      }));
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
