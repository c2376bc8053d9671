// Policy: who may ask for which resource, for how long and with what
// justification, who must approve, and where each resource is enforced. It
// is read from TOML; a policy that does not parse or does not hold together
// is refused with its line and the reason, so the running policy stays.
//
//   [[host]]
//   id = "db-host-1"
//   labels = ["db", "prod"]
//
//   [[resource]]
//   name = "postgres-prod"
//   id = 1                          # what the kernel maps name; never reuse
//   destinations = ["10.0.0.5/32"]
//   protocol = "tcp"                # tcp | udp | any
//   ports = "5432"                  # "5432", "8000-8100" or "*"
//   mode = "enforce"                # enforce | audit
//   hosts = ["db-host-1"]           # by id, and/or
//   host_labels = ["db"]            # by label
//
//   [[identity]]
//   name = "alice"
//   groups = ["dev"]
//   host_user = "alice"             # on the hosts: a user name, or uid = 1000, or
//                                   # cgroup = "system.slice/batch.service"; none: may only review
//
//   [[request_rule]]
//   resources = ["postgres-prod"]
//   requesters = ["group:dev", "bob"]
//   max_duration = "4h"
//   reason_required = true          # default true
//   ticket_pattern = "^OPS-[0-9]+"  # optional: a ticket the reason must carry, searched for
//                                   # anywhere in it (^: at its start; $ would allow nothing after)
//   pending_ttl = "1h"              # an unreviewed request expires after this (default 1h)
//
//   [[approval_rule]]
//   resources = ["postgres-prod"]
//   approver_groups = ["dba", "security"]
//   approvals = 2                   # distinct approvers (default 1)
//   all_groups = false              # true: every approver group must approve
//   break_glass_groups = ["oncall"] # may approve their own request, with a reason; flagged
//
//   auditor_groups = ["security"]   # top level: may query every event (so may approvers);
//                                   # everyone else sees only the events about themselves
//   admin_groups = ["ops"]          # top level: may enrol and remove agents (join tokens) and
//                                   # add and remove API credentials through the API; nothing else
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "lib/status/status.h"
#include "schemas/resource.h"

namespace re2 {
class RE2;
}

namespace latch::workflow {

struct PolicyResource {
  std::string name;
  resource::Resource resource;     // id, destinations, protocol, ports, mode
  std::vector<std::string> hosts;  // resolved host ids (from ids and labels)
};

struct Identity {
  std::string name;
  std::set<std::string> groups;
  enum class Principal { kNone, kUser, kUid, kCgroup } principal = Principal::kNone;
  std::string host_user;  // user name or cgroup path
  uint32_t uid = 0;
};

struct RequestRule {
  std::set<std::string> resources;
  std::set<std::string> identities;  // by name
  std::set<std::string> groups;      // "group:<name>" entries
  int64_t max_duration_ns = 0;
  bool reason_required = true;
  std::string ticket_pattern;  // empty: none
  // ticket_pattern compiled (RE2: linear time in the reason, whatever the
  // pattern; std::regex's recursion overflowed the stack on a 60,000-digit
  // reason, issue 14). Shared: rules are copied with the policy.
  std::shared_ptr<const re2::RE2> ticket;
  int64_t pending_ttl_ns = 3600'000'000'000;
};

struct ApprovalRule {
  std::set<std::string> resources;
  std::vector<std::string> approver_groups;
  int approvals = 1;
  bool all_groups = false;
  std::set<std::string> break_glass_groups;
};

class Policy {
 public:
  // Parses and checks the whole policy; `source` names it in errors.
  static Status Parse(std::string_view toml_text, const std::string& source,
                      std::unique_ptr<Policy>* out);
  static Status Load(const std::string& path, std::unique_ptr<Policy>* out);

  const std::string& hash() const { return hash_; }  // SHA-256 of the text, hex
  const PolicyResource* FindResource(const std::string& name) const;
  const Identity* FindIdentity(const std::string& name) const;
  // The first rule that lets `identity` request `resource`, or null.
  const RequestRule* RequestRuleFor(const Identity& identity, const std::string& resource) const;
  const ApprovalRule* ApprovalRuleFor(const std::string& resource) const;
  // Auditors and approvers read every event; others only their own.
  bool MayReadAllEvents(const std::string& identity) const;
  // A member of one of the top-level auditor_groups.
  bool IsAuditor(const std::string& identity) const;
  // A member of one of the top-level admin_groups.
  bool IsAdmin(const std::string& identity) const;
  // A member of an approver group of the resource's approval rule.
  bool MayApprove(const std::string& identity, const std::string& resource) const;
  // Revoking a grant of these kernel resource ids: auditors, and approvers of
  // any one of them (revocation only ever narrows access).
  bool MayRevoke(const std::string& identity, const std::vector<uint32_t>& resource_ids) const;
  const std::map<std::string, PolicyResource>& resources() const { return resources_; }
  const std::map<std::string, Identity>& identities() const { return identities_; }
  // Every host the policy names: its [[host]] entries and the hosts of its
  // resources. Each is sent its resources from this policy (issue 16).
  std::set<std::string> HostIds() const;

 private:
  std::string hash_;
  std::map<std::string, std::set<std::string>> host_labels_;  // host id -> labels
  std::map<std::string, PolicyResource> resources_;
  std::map<std::string, Identity> identities_;
  std::vector<RequestRule> request_rules_;
  std::vector<ApprovalRule> approval_rules_;
  std::set<std::string> auditor_groups_;
  std::set<std::string> admin_groups_;
};

}  // namespace latch::workflow
