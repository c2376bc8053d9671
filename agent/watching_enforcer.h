// WatchingEnforcer: an Enforcer that, before a grant reaches the kernel, has
// activity capture watch its holder. In that order, nothing the holder does
// under the new grant goes unseen: without it, the grant would be live for a
// moment before the watch set (kept from the grants the kernel holds)
// caught up. Everything else passes straight through.
#pragma once

#include <functional>
#include <utility>

#include "agent/enforcer.h"

namespace latch::agent {

class WatchingEnforcer : public Enforcer {
 public:
  using BeforeApply = std::function<void(const Grant&)>;
  WatchingEnforcer(Enforcer& inner, BeforeApply before_apply)
      : inner_(inner), before_apply_(std::move(before_apply)) {}

  Status SetResources(const std::vector<resource::Resource>& resources) override {
    return inner_.SetResources(resources);
  }
  Status ApplyGrant(const Grant& grant) override {
    before_apply_(grant);
    return inner_.ApplyGrant(grant);
  }
  Status RevokeGrant(uint64_t grant_id) override { return inner_.RevokeGrant(grant_id); }
  Status ListGrants(std::vector<KernelGrant>* out) override { return inner_.ListGrants(out); }
  Status ListResourceEntries(
      std::vector<std::pair<resource::Cidr, latch_cidr_rules>>* out) override {
    return inner_.ListResourceEntries(out);
  }

 private:
  Enforcer& inner_;
  BeforeApply before_apply_;
};

}  // namespace latch::agent
