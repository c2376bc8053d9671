#include "agent/grant_set_applier.h"

#include <pwd.h>

#include <array>
#include <map>
#include <set>

#include "agent/boot_clock.h"
#include "agent/kernel_fs.h"
#include "schemas/canonical.h"
#include "schemas/grant_signature.h"
#include "schemas/host_policy.h"

namespace latch::agent {
namespace {

Status ResolveUser(const std::string& name, uint32_t* uid) {
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  int rc = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
  if (rc != 0 || found == nullptr) return Status::NotFound("no user '" + name + "' on this host");
  *uid = pw.pw_uid;
  return Status::Ok();
}

// A principal as this host knows it: a user name to its uid, a cgroup path
// under `cgroup_root` to its id.
Status ResolvePrincipal(schema::Principal::Reader p, const std::string& cgroup_root,
                        Principal* out) {
  switch (p.which()) {
    case schema::Principal::UID:
      *out = {Principal::Kind::kUid, p.getUid()};
      return Status::Ok();
    case schema::Principal::USER_NAME: {
      uint32_t uid = 0;
      LATCH_RETURN_IF_ERROR(ResolveUser(p.getUserName().cStr(), &uid));
      *out = {Principal::Kind::kUid, uid};
      return Status::Ok();
    }
    case schema::Principal::CGROUP_PATH: {
      std::string path = p.getCgroupPath().cStr();
      if (path.find("..") != std::string::npos) {
        return Status::InvalidArgument("cgroup path with '..'");
      }
      out->kind = Principal::Kind::kCgroup;
      return CgroupId(cgroup_root + "/" + path, &out->id);
    }
  }
  return Status::InvalidArgument("a principal of an unknown kind");
}

}  // namespace

GrantSetApplier::GrantSetApplier(Enforcer& enforcer, schema::GrantKeys grant_keys,
                                 std::string host_id, std::string cgroup_root, uint64_t version)
    : enforcer_(enforcer),
      keys_(std::move(grant_keys)),
      host_id_(std::move(host_id)),
      cgroup_root_(std::move(cgroup_root)),
      version_(version) {}

Status GrantSetApplier::Apply(schema::SignedGrantSet::Reader signed_set, AppliedReport* report) {
  *report = AppliedReport{};
  report->version = version_;
  std::string set_bytes;
  Status s = schema::OpenSignedGrantSet(keys_, signed_set, &set_bytes);
  if (!s.ok()) {
    report->rejected_set = s.ToString();
    return Status::Ok();
  }
  std::vector<Grant> wanted;
  std::set<uint64_t> wanted_ids;
  uint64_t version = 0;
  s = schema::ReadCanonical<schema::GrantSet>(
      set_bytes, "grant set", [&](schema::GrantSet::Reader set) {
        if (set.getHostId() != host_id_) {
          report->rejected_set = "set is for host '" + std::string(set.getHostId().cStr()) + "'";
          return Status::Ok();
        }
        version = set.getVersion();
        if (version <= version_) {
          if (version < version_) {
            report->rejected_set = "set version " + std::to_string(version) + " is older than " +
                                   std::to_string(version_);
          }
          return Status::Ok();  // equal: already applied; report the current state
        }
        if (set.hasHostPolicy()) {
          HostPolicyView view;
          Status ps = ReadPolicy(set.getHostPolicy(), &view);
          if (!ps.ok()) {
            report->rejected_set = "host policy: " + ps.ToString();
            return Status::Ok();
          }
          report->host_policy = std::move(view);
        }
        for (auto sg : set.getGrants()) {
          std::string grant_bytes;
          Status gs = schema::OpenSignedGrant(keys_, sg, &grant_bytes);
          if (!gs.ok()) {
            report->rejected.emplace_back(0, gs.ToString());
            continue;
          }
          (void)schema::ReadCanonical<schema::Grant>(
              grant_bytes, "grant", [&](schema::Grant::Reader g) {
                uint64_t id = g.getId();
                bool here = false;
                for (auto h : g.getHostIds()) here |= h == host_id_;
                if (id == 0 || !here) {
                  report->rejected.emplace_back(
                      id, id == 0 ? "grant id 0" : "grant is not for this host");
                  return Status::Ok();
                }
                std::vector<Principal> principals;
                for (auto p : g.getPrincipals()) {
                  Principal pr;
                  Status ps = ResolvePrincipal(p, cgroup_root_, &pr);
                  if (!ps.ok()) {
                    report->rejected.emplace_back(id, ps.ToString());
                    return Status::Ok();  // all principals or none: a partial grant is not what was
                                          // approved
                  }
                  principals.push_back(pr);
                }
                for (const Principal& pr : principals) {
                  for (uint32_t r : g.getResourceIds()) {
                    wanted.push_back({id, pr, r, g.getNotBeforeUnixNs(), g.getNotAfterUnixNs()});
                  }
                }
                wanted_ids.insert(id);
                return Status::Ok();
              });
        }
        return Status::Ok();
      });
  if (!s.ok()) {
    report->rejected_set = s.ToString();
    return Status::Ok();
  }
  if (version > version_ && report->rejected_set.empty()) {
    // New grants first, then the ones that are gone: no moment without a grant that stays.
    for (const Grant& g : wanted) LATCH_RETURN_IF_ERROR(enforcer_.ApplyGrant(g));
    // Resources once their grants are in: a resource protected from now on
    // never refuses the holder of a grant that comes with it.
    if (report->host_policy) {
      LATCH_RETURN_IF_ERROR(
          enforcer_.SetResources(report->host_policy->resources).WithContext("host policy"));
    }
    std::vector<KernelGrant> held;
    LATCH_RETURN_IF_ERROR(enforcer_.ListGrants(&held));
    std::set<uint64_t> stale;
    for (const KernelGrant& k : held) {
      if (!wanted_ids.count(k.grant_id)) stale.insert(k.grant_id);
    }
    for (uint64_t id : stale) {
      Status r = enforcer_.RevokeGrant(id);
      if (!r.ok() && r.code() != Status::Code::kNotFound) return r;
      report->removed_grant_ids.push_back(id);
    }
    version_ = version;
  }
  if (!report->rejected_set.empty()) report->host_policy.reset();  // nothing was applied
  report->applied_at_ns = NowUnixNs();
  report->version = version_;
  std::vector<KernelGrant> now;
  LATCH_RETURN_IF_ERROR(enforcer_.ListGrants(&now));
  std::set<uint64_t> ids;
  for (const KernelGrant& k : now) ids.insert(k.grant_id);
  report->grant_ids.assign(ids.begin(), ids.end());
  return Status::Ok();
}

Status GrantSetApplier::ReadPolicy(schema::HostPolicy::Reader policy, HostPolicyView* out) const {
  HostPolicyView view;
  LATCH_RETURN_IF_ERROR(resource::ResourcesFromPolicy(policy, &view.resources));
  // What the kernel would refuse, refused before anything is written.
  std::map<std::pair<uint32_t, std::array<uint8_t, 16>>, latch_cidr_rules> entries;
  LATCH_RETURN_IF_ERROR(resource::CompileResources(view.resources, &entries));
  latch_cidr_rules local{};
  LATCH_RETURN_IF_ERROR(resource::CompileLocalRules(view.resources, &local));
  for (auto h : policy.getIdentities()) {
    Principal pr;
    // A user or cgroup this host does not have: nobody here to name.
    if (!ResolvePrincipal(h.getPrincipal(), cgroup_root_, &pr).ok()) continue;
    view.holders.emplace_back(pr, h.getIdentity());
  }
  view.since_ns = policy.getSinceNs();
  *out = std::move(view);
  return Status::Ok();
}

Status GrantSetApplier::ReadHostPolicy(schema::SignedGrantSet::Reader signed_set,
                                       std::optional<HostPolicyView>* out) {
  out->reset();
  std::string set_bytes;
  LATCH_RETURN_IF_ERROR(schema::OpenSignedGrantSet(keys_, signed_set, &set_bytes));
  return schema::ReadCanonical<schema::GrantSet>(
      set_bytes, "grant set", [&](schema::GrantSet::Reader set) {
        if (set.getHostId() != host_id_) {
          return Status::InvalidArgument("set is for host '" + std::string(set.getHostId().cStr()) +
                                         "'");
        }
        if (!set.hasHostPolicy()) return Status::Ok();
        HostPolicyView view;
        LATCH_RETURN_IF_ERROR(ReadPolicy(set.getHostPolicy(), &view));
        *out = std::move(view);
        return Status::Ok();
      });
}

}  // namespace latch::agent
