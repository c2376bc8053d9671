// GrantBook: the collector's grants, signed with its grant key, and the
// versioned grant set each host is sent. The ledger is its only storage: a
// grant exists once its grantIssued record is durable and ends with its
// grantRevoked record, and the book is rebuilt at start by replaying those
// records in ledger order (Replay*), which also gives every host the same
// versions it had: each change gives the hosts it touches new, higher
// versions, in a fixed order. Agents apply only newer versions.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lib/status/status.h"
#include "lib/tlog/signed_note.h"
#include "schemas/grant.capnp.h"
#include "schemas/grant_signature.h"
#include "schemas/workflow.capnp.h"

namespace latch::collector {

struct GrantPrincipal {
  enum class Kind { kUid, kUserName, kCgroupPath };
  Kind kind = Kind::kUid;
  uint32_t uid = 0;
  std::string name;  // user name or cgroup path
};

struct GrantSpec {
  uint64_t id = 0;  // 0: the book picks the next free id
  std::vector<GrantPrincipal> principals;
  std::vector<uint32_t> resource_ids;
  std::vector<std::string> host_ids;
  int64_t not_before_unix_ns = 0;
  int64_t not_after_unix_ns = 0;
  bool break_glass = false;
};

class GrantBook {
 public:
  // Signs with `key`; accepts grants signed by it or by `retired` keys (a
  // rotation's predecessors, whose grants stay valid until they end).
  explicit GrantBook(const tlog::NoteSigner& key, std::vector<tlog::NoteVerifier> retired = {})
      : key_(key), accepted_(WithRetired(key, std::move(retired))) {}

  // Validates `spec` and signs it; changes nothing. *signed_grant is the
  // canonical SignedGrant the grantIssued record carries.
  Status Sign(GrantSpec spec, std::string* signed_grant) const;
  // The grant takes effect in the book (a durable grantIssued record, or its
  // replay); *changed: the hosts whose set changed.
  Status ApplyIssued(const std::string& signed_grant, uint64_t* id,
                     std::vector<std::string>* changed);
  // NotFound if no such grant is live; otherwise as ApplyIssued.
  Status ApplyRevoked(uint64_t id, std::vector<std::string>* changed);
  bool Has(uint64_t id) const { return grants_.count(id) != 0; }
  std::vector<uint64_t> Ids() const;
  // A live grant as JSON-ready fields (principals, resources, hosts, window).
  nlohmann::json Describe(uint64_t id) const;
  // Live grants whose window has ended by `now_ns`.
  std::vector<uint64_t> EndedBy(int64_t now_ns) const;

  // A policyLoaded record took effect (once durable, or replayed): each host
  // it names gets the resources and identities it lists; a host the book
  // had a policy for that it no longer names gets an empty one (the policy
  // protects nothing there now). Hosts whose policy changed get new
  // versions and `at_ns` as the time it did. *changed: those hosts.
  void ApplyPolicy(capnp::List<schema::HostPolicyEntry>::Reader hosts, int64_t at_ns,
                   std::vector<std::string>* changed);
  struct HostPolicyState {
    std::string policy;  // canonical HostPolicy, sinceNs 0
    int64_t since_ns = 0;
    uint64_t version = 0;  // the host's first set version that carries it
  };
  // The host's policy (null: the policy never named it).
  const HostPolicyState* host_policy(const std::string& host) const;
  const std::map<std::string, HostPolicyState>& host_policies() const { return host_policies_; }

  // The host's current set as a canonical SignedGrantSet.
  Status SignedSet(const std::string& host, int64_t now_ns, std::string* signed_set) const;
  uint64_t version(const std::string& host) const;
  size_t grant_count() const { return grants_.size(); }

  // The book for a state snapshot: live grants (as signed), the last id and
  // every host's version.
  nlohmann::json ToSnapshot() const;
  // Back from one: each grant's signature is checked again, as in
  // ApplyIssued. Corruption (or nlohmann::json's exceptions) for a snapshot
  // that does not hold; the book is then unusable and is discarded.
  Status FromSnapshot(const nlohmann::json& j);

 private:
  struct Entry {
    std::string signed_grant;  // canonical SignedGrant
    std::vector<std::string> hosts;
    int64_t not_after_unix_ns = 0;
  };
  void Bump(const std::vector<std::string>& hosts);

  static schema::GrantKeys WithRetired(const tlog::NoteSigner& key,
                                       std::vector<tlog::NoteVerifier> retired) {
    retired.insert(retired.begin(), key.verifier());
    return schema::GrantKeys(std::move(retired));
  }

  const tlog::NoteSigner& key_;
  schema::GrantKeys accepted_;
  std::map<uint64_t, Entry> grants_;
  uint64_t last_id_ = 0;  // ids are never reused, also after revocation
  std::map<std::string, uint64_t> versions_;
  std::map<std::string, HostPolicyState> host_policies_;
  uint64_t next_version_ = 1;  // versions are unique across hosts: a set is never re-signed
};

}  // namespace latch::collector
