// IdentityNamer: who holds a uid or a cgroup on this host, by the names the
// collector's policy gives them (issue 16). A decision event is stamped with
// that name, so that a denial no grant covers is still found by its
// identity (`latchctl events --user tess --verdict deny`). The names come
// from the host policy in the signed grant set; principals are resolved
// here, as grants' are (a user name to its uid, a cgroup path to its id).
// Owned by the agent's loop thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/enforcer.h"

namespace latch::agent {

class IdentityNamer {
 public:
  // Replaces what is known: each principal with the identity that holds it.
  // The first name given for a principal keeps it.
  void Set(const std::vector<std::pair<Principal, std::string>>& holders);
  // The identity holding `cgroup_id` (a cgroup identity is the more specific
  // claim), else `uid`; empty if none does.
  std::string_view NameOf(uint32_t uid, uint64_t cgroup_id) const;
  size_t size() const { return by_uid_.size() + by_cgroup_.size(); }

 private:
  std::map<uint32_t, std::string> by_uid_;
  std::map<uint64_t, std::string> by_cgroup_;
};

}  // namespace latch::agent
