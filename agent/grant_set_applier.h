// GrantSetApplier: turns a signed grant set from the collector into kernel
// grants (promise 6). Nothing reaches the kernel unless the set and each grant
// in it carry valid signatures by a configured grant key (one, or the old and
// the new during a key rotation), name this host,
// and the set is newer than the one applied. A new set replaces the old one
// without a gap: every grant of the new set is written before any grant that
// is no longer in it is removed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "agent/enforcer.h"
#include "lib/status/status.h"
#include "lib/tlog/signed_note.h"
#include "schemas/grant_signature.h"
#include "schemas/resource.h"
#include "schemas/wire.capnp.h"

namespace latch::agent {

// What a set says this host enforces (issue 16): its resources, and who
// holds which principal here (resolved on this host; a user or cgroup this
// host does not have is left out).
struct HostPolicyView {
  std::vector<resource::Resource> resources;
  std::vector<std::pair<Principal, std::string>> holders;  // principal, identity
  int64_t since_ns = 0;  // Unix ns when the collector's policy last changed it
};

struct AppliedReport {
  uint64_t version = 0;       // the set now in the kernel
  int64_t applied_at_ns = 0;  // Unix ns when the last map write returned
  std::vector<uint64_t> grant_ids;
  std::vector<uint64_t> removed_grant_ids;                 // taken out of the kernel by this set
  std::vector<std::pair<uint64_t, std::string>> rejected;  // grant id (0 if unreadable), why
  std::string rejected_set;  // non-empty: the whole set was refused, and why
  // The set carried a host policy and it is now in force (its resources in
  // the kernel): the daemon keeps the set and names identities by it.
  std::optional<HostPolicyView> host_policy;
};

class GrantSetApplier {
 public:
  // `cgroup_root` is the cgroup v2 mount that cgroup paths in grants are under;
  // `version` the set version the kernel holds now (0: none).
  GrantSetApplier(Enforcer& enforcer, schema::GrantKeys grant_keys, std::string host_id,
                  std::string cgroup_root, uint64_t version);

  // Checks and applies `set`; *report says what happened, also for refused
  // sets and grants. Not OK only when writing the kernel's maps failed.
  Status Apply(schema::SignedGrantSet::Reader set, AppliedReport* report);
  uint64_t version() const { return version_; }
  // A set kept from an earlier run, checked as Apply checks one (signature,
  // host), without applying anything: *out is its host policy, or empty if
  // it carries none.
  Status ReadHostPolicy(schema::SignedGrantSet::Reader set, std::optional<HostPolicyView>* out);

 private:
  Status ReadPolicy(schema::HostPolicy::Reader policy, HostPolicyView* out) const;

  Enforcer& enforcer_;
  schema::GrantKeys keys_;
  std::string host_id_;
  std::string cgroup_root_;
  uint64_t version_;
};

}  // namespace latch::agent
