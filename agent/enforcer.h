// Enforcer: what the grant channel drives. It sets the protected resources
// and applies and revokes grants in the kernel; the kernel then decides
// alone, including expiry. BpfEnforcer is the implementation over a Guard's
// pinned maps; it keeps no state of its own, so a restarted agent sees
// exactly what the kernel holds.
#pragma once

#include <cstdint>
#include <vector>

#include "agent/guard.h"
#include "lib/status/status.h"
#include "schemas/resource.h"

namespace latch::agent {

struct Principal {
  enum class Kind : uint32_t { kUid = LATCH_PRINCIPAL_UID, kCgroup = LATCH_PRINCIPAL_CGROUP };
  Kind kind = Kind::kUid;
  uint64_t id = 0;  // uid, or cgroup id (covers its descendants)
};

struct Grant {
  uint64_t grant_id = 0;  // non-zero
  Principal principal;
  uint32_t resource_id = 0;
  int64_t not_before_unix_ns = 0;
  int64_t not_after_unix_ns = 0;  // exclusive
};

// A grant as the kernel holds it: times on the boot-time clock.
struct KernelGrant {
  uint64_t grant_id = 0;
  Principal principal;
  uint32_t resource_id = 0;
  uint64_t not_before_boot_ns = 0;
  uint64_t not_after_boot_ns = 0;
};

class Enforcer {
 public:
  virtual ~Enforcer() = default;
  // Replaces the protected set. New and changed entries are written before
  // stale ones are removed, so a destination that stays protected never
  // passes unguarded in between.
  virtual Status SetResources(const std::vector<resource::Resource>& resources) = 0;
  // One grant per (principal, resource): applying another replaces it.
  virtual Status ApplyGrant(const Grant& grant) = 0;
  // NotFound if the kernel holds no grant with this id.
  virtual Status RevokeGrant(uint64_t grant_id) = 0;
  virtual Status ListGrants(std::vector<KernelGrant>* out) = 0;
  // CIDR entries in the kernel's trie, with their folded rules.
  virtual Status ListResourceEntries(
      std::vector<std::pair<resource::Cidr, latch_cidr_rules>>* out) = 0;
};

// The guard's maps an Enforcer writes: from a live Guard, or opened from
// their pins by a process that does not load programs (`latch-agent status`).
struct GuardMaps {
  int resources_fd = -1;
  int grants_fd = -1;
  int ports_fd = -1;  // protected remote ports; needed by SetResources only
  int local_fd = -1;  // the rules for "local" (this host); needed by SetResources only
};

class BpfEnforcer : public Enforcer {
 public:
  explicit BpfEnforcer(const Guard& guard)
      : maps_{guard.resources_fd(), guard.grants_fd(), guard.ports_fd(), guard.local_fd()} {}
  explicit BpfEnforcer(GuardMaps maps) : maps_(maps) {}
  Status SetResources(const std::vector<resource::Resource>& resources) override;
  Status ApplyGrant(const Grant& grant) override;
  Status RevokeGrant(uint64_t grant_id) override;
  Status ListGrants(std::vector<KernelGrant>* out) override;
  Status ListResourceEntries(
      std::vector<std::pair<resource::Cidr, latch_cidr_rules>>* out) override;

 private:
  GuardMaps maps_;
};

}  // namespace latch::agent
