#include "agent/identity_namer.h"

namespace latch::agent {

void IdentityNamer::Set(const std::vector<std::pair<Principal, std::string>>& holders) {
  by_uid_.clear();
  by_cgroup_.clear();
  for (const auto& [principal, name] : holders) {
    if (principal.kind == Principal::Kind::kCgroup) {
      by_cgroup_.emplace(principal.id, name);
    } else {
      by_uid_.emplace(static_cast<uint32_t>(principal.id), name);
    }
  }
}

std::string_view IdentityNamer::NameOf(uint32_t uid, uint64_t cgroup_id) const {
  if (auto c = by_cgroup_.find(cgroup_id); c != by_cgroup_.end()) return c->second;
  if (auto u = by_uid_.find(uid); u != by_uid_.end()) return u->second;
  return {};
}

}  // namespace latch::agent
