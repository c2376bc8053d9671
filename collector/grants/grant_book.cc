#include "collector/grants/grant_book.h"

#include <capnp/message.h>

#include <algorithm>

#include "schemas/canonical.h"
#include "schemas/grant_signature.h"

namespace latch::collector {

void GrantBook::Bump(const std::vector<std::string>& hosts) {
  for (const std::string& h : hosts) versions_[h] = next_version_++;
}

void GrantBook::ApplyPolicy(capnp::List<schema::HostPolicyEntry>::Reader hosts, int64_t at_ns,
                            std::vector<std::string>* changed) {
  std::map<std::string, std::string> next;
  for (auto entry : hosts) {
    capnp::MallocMessageBuilder m;
    m.setRoot(entry.getPolicy());
    auto policy = m.getRoot<schema::HostPolicy>();
    policy.setSinceNs(0);
    next[entry.getHostId()] = schema::CanonicalBytes(policy.asReader());
  }
  for (const auto& [host, state] : host_policies_) {
    if (!next.count(host)) {
      capnp::MallocMessageBuilder m;
      next[host] = schema::CanonicalBytes(m.initRoot<schema::HostPolicy>().asReader());
    }
  }
  std::vector<std::string> bumped;
  for (auto& [host, policy] : next) {  // in host order: replays give the same versions
    auto it = host_policies_.find(host);
    if (it != host_policies_.end() && it->second.policy == policy) continue;
    host_policies_[host] = {std::move(policy), at_ns};
    bumped.push_back(host);
  }
  Bump(bumped);
  for (const std::string& host : bumped) host_policies_[host].version = versions_[host];
  changed->insert(changed->end(), bumped.begin(), bumped.end());
}

const GrantBook::HostPolicyState* GrantBook::host_policy(const std::string& host) const {
  auto it = host_policies_.find(host);
  return it == host_policies_.end() ? nullptr : &it->second;
}

uint64_t GrantBook::version(const std::string& host) const {
  auto it = versions_.find(host);
  return it == versions_.end() ? 0 : it->second;
}

Status GrantBook::Sign(GrantSpec spec, std::string* signed_grant) const {
  if (spec.principals.empty()) return Status::InvalidArgument("a grant needs a principal");
  if (spec.resource_ids.empty()) return Status::InvalidArgument("a grant needs a resource");
  if (spec.host_ids.empty()) return Status::InvalidArgument("a grant needs a host");
  if (spec.not_after_unix_ns <= spec.not_before_unix_ns) {
    return Status::InvalidArgument("a grant must end after it begins");
  }
  for (uint32_t r : spec.resource_ids) {
    if (r == 0) return Status::InvalidArgument("resource id 0 is not valid");
  }
  for (const auto& p : spec.principals) {
    if (p.kind != GrantPrincipal::Kind::kUid && p.name.empty()) {
      return Status::InvalidArgument("a user name or cgroup path must not be empty");
    }
  }
  std::sort(spec.host_ids.begin(), spec.host_ids.end());
  spec.host_ids.erase(std::unique(spec.host_ids.begin(), spec.host_ids.end()), spec.host_ids.end());
  if (spec.id == 0) spec.id = last_id_ + 1;
  if (spec.id <= last_id_) {
    return Status::AlreadyExists("grant id " + std::to_string(spec.id) + " is taken");
  }

  capnp::MallocMessageBuilder m;
  auto g = m.initRoot<schema::Grant>();
  g.setId(spec.id);
  auto ps = g.initPrincipals(static_cast<unsigned>(spec.principals.size()));
  for (unsigned i = 0; i < spec.principals.size(); ++i) {
    const GrantPrincipal& p = spec.principals[i];
    switch (p.kind) {
      case GrantPrincipal::Kind::kUid:
        ps[i].setUid(p.uid);
        break;
      case GrantPrincipal::Kind::kUserName:
        ps[i].setUserName(p.name);
        break;
      case GrantPrincipal::Kind::kCgroupPath:
        ps[i].setCgroupPath(p.name);
        break;
    }
  }
  auto rs = g.initResourceIds(static_cast<unsigned>(spec.resource_ids.size()));
  for (unsigned i = 0; i < spec.resource_ids.size(); ++i) rs.set(i, spec.resource_ids[i]);
  auto hs = g.initHostIds(static_cast<unsigned>(spec.host_ids.size()));
  for (unsigned i = 0; i < spec.host_ids.size(); ++i) hs.set(i, spec.host_ids[i]);
  g.setNotBeforeUnixNs(spec.not_before_unix_ns);
  g.setNotAfterUnixNs(spec.not_after_unix_ns);
  g.setBreakGlass(spec.break_glass);

  capnp::MallocMessageBuilder sm;
  auto sg = sm.initRoot<schema::SignedGrant>();
  LATCH_RETURN_IF_ERROR(schema::SignGrant(key_, g.asReader(), sg));
  *signed_grant = schema::CanonicalBytes(sg.asReader());
  return Status::Ok();
}

Status GrantBook::ApplyIssued(const std::string& signed_grant, uint64_t* issued_id,
                              std::vector<std::string>* changed) {
  std::string grant_bytes;
  uint64_t id = 0;
  int64_t not_after = 0;
  std::vector<std::string> hosts;
  LATCH_RETURN_IF_ERROR(schema::ReadCanonical<schema::SignedGrant>(
      signed_grant, "signed grant", [&](schema::SignedGrant::Reader sg) {
        return schema::OpenSignedGrant(accepted_, sg, &grant_bytes);
      }));
  LATCH_RETURN_IF_ERROR(
      schema::ReadCanonical<schema::Grant>(grant_bytes, "grant", [&](schema::Grant::Reader g) {
        id = g.getId();
        not_after = g.getNotAfterUnixNs();
        for (auto h : g.getHostIds()) hosts.emplace_back(h.cStr());
        return Status::Ok();
      }));
  if (id <= last_id_) return Status::AlreadyExists("grant id " + std::to_string(id) + " is taken");
  last_id_ = id;
  grants_[id] = {signed_grant, hosts, not_after};
  Bump(hosts);
  *issued_id = id;
  *changed = std::move(hosts);
  return Status::Ok();
}

nlohmann::json GrantBook::ToSnapshot() const {
  nlohmann::json grants = nlohmann::json::array();
  for (const auto& [id, e] : grants_) {
    grants.push_back(nlohmann::json::binary({e.signed_grant.begin(), e.signed_grant.end()}));
  }
  nlohmann::json versions = nlohmann::json::array();
  for (const auto& [host, v] : versions_) {
    versions.push_back({nlohmann::json::binary({host.begin(), host.end()}), v});
  }
  nlohmann::json policies = nlohmann::json::array();
  for (const auto& [host, p] : host_policies_) {
    policies.push_back({nlohmann::json::binary({host.begin(), host.end()}),
                        nlohmann::json::binary({p.policy.begin(), p.policy.end()}), p.since_ns,
                        p.version});
  }
  return {{"grants", grants},
          {"host_policies", policies},
          {"last_id", last_id_},
          {"versions", versions},
          {"next_version", next_version_}};
}

Status GrantBook::FromSnapshot(const nlohmann::json& j) {
  grants_.clear();
  versions_.clear();
  last_id_ = 0;
  for (const auto& g : j.at("grants")) {
    const auto& bytes = g.get_binary();
    uint64_t id = 0;
    std::vector<std::string> hosts;
    // Verified and read as a replayed grantIssued would be; versions come below.
    LATCH_RETURN_IF_ERROR(ApplyIssued(std::string(bytes.begin(), bytes.end()), &id, &hosts));
  }
  const uint64_t last_id = j.at("last_id").get<uint64_t>();
  if (last_id < last_id_) return Status::Corruption("a grant above the book's last id");
  last_id_ = last_id;
  versions_.clear();
  for (const auto& v : j.at("versions")) {
    const auto& host = v.at(0).get_binary();
    versions_[std::string(host.begin(), host.end())] = v.at(1).get<uint64_t>();
  }
  host_policies_.clear();
  if (j.contains("host_policies")) {  // absent in snapshots from before issue 16
    for (const auto& p : j.at("host_policies")) {
      const auto& host = p.at(0).get_binary();
      const auto& policy = p.at(1).get_binary();
      HostPolicyState state{std::string(policy.begin(), policy.end()), p.at(2).get<int64_t>(),
                            p.at(3).get<uint64_t>()};
      LATCH_RETURN_IF_ERROR(schema::ReadCanonical<schema::HostPolicy>(
          state.policy, "snapshot host policy",
          [](schema::HostPolicy::Reader) { return Status::Ok(); }));
      host_policies_[std::string(host.begin(), host.end())] = std::move(state);
    }
  }
  next_version_ = j.at("next_version").get<uint64_t>();
  for (const auto& [host, v] : versions_) {
    if (v >= next_version_) return Status::Corruption("a host's version above the next one");
  }
  return Status::Ok();
}

std::vector<uint64_t> GrantBook::Ids() const {
  std::vector<uint64_t> ids;
  for (const auto& [id, e] : grants_) ids.push_back(id);
  return ids;
}

nlohmann::json GrantBook::Describe(uint64_t id) const {
  auto it = grants_.find(id);
  if (it == grants_.end()) return nullptr;
  nlohmann::json j;
  (void)schema::ReadCanonical<schema::SignedGrant>(
      it->second.signed_grant, "signed grant", [&](schema::SignedGrant::Reader sg) {
        auto bytes = sg.getGrant();
        return schema::ReadCanonical<schema::Grant>(
            std::string_view(reinterpret_cast<const char*>(bytes.begin()), bytes.size()), "grant",
            [&](schema::Grant::Reader g) {
              nlohmann::json principals = nlohmann::json::array();
              for (auto p : g.getPrincipals()) {
                if (p.isUid()) principals.push_back({{"uid", p.getUid()}});
                if (p.isUserName()) principals.push_back({{"user", p.getUserName().cStr()}});
                if (p.isCgroupPath()) principals.push_back({{"cgroup", p.getCgroupPath().cStr()}});
              }
              std::vector<uint32_t> res;
              for (uint32_t r : g.getResourceIds()) res.push_back(r);
              j = {{"principals", principals},
                   {"resources", res},
                   {"hosts", it->second.hosts},
                   {"not_before_ns", g.getNotBeforeUnixNs()},
                   {"not_after_ns", g.getNotAfterUnixNs()},
                   {"break_glass", g.getBreakGlass()}};
              return Status::Ok();
            });
      });
  return j;
}

std::vector<uint64_t> GrantBook::EndedBy(int64_t now_ns) const {
  std::vector<uint64_t> ended;
  for (const auto& [id, e] : grants_) {
    if (e.not_after_unix_ns <= now_ns) ended.push_back(id);
  }
  return ended;
}

Status GrantBook::ApplyRevoked(uint64_t id, std::vector<std::string>* changed) {
  auto it = grants_.find(id);
  if (it == grants_.end()) return Status::NotFound("no live grant " + std::to_string(id));
  std::vector<std::string> hosts = std::move(it->second.hosts);
  grants_.erase(it);
  Bump(hosts);
  *changed = std::move(hosts);
  return Status::Ok();
}

Status GrantBook::SignedSet(const std::string& host, int64_t now_ns,
                            std::string* signed_set) const {
  std::vector<const std::string*> mine;
  for (const auto& [id, e] : grants_) {
    if (std::find(e.hosts.begin(), e.hosts.end(), host) != e.hosts.end()) {
      mine.push_back(&e.signed_grant);
    }
  }
  capnp::MallocMessageBuilder m;
  auto set = m.initRoot<schema::GrantSet>();
  set.setHostId(host);
  set.setVersion(version(host));
  set.setIssuedAtNs(now_ns);
  if (const HostPolicyState* hp = host_policy(host)) {
    LATCH_RETURN_IF_ERROR(schema::ReadCanonical<schema::HostPolicy>(
        hp->policy, "stored host policy", [&](schema::HostPolicy::Reader r) {
          set.setHostPolicy(r);
          set.getHostPolicy().setSinceNs(hp->since_ns);
          return Status::Ok();
        }));
  }
  auto list = set.initGrants(static_cast<unsigned>(mine.size()));
  for (unsigned i = 0; i < mine.size(); ++i) {
    LATCH_RETURN_IF_ERROR(schema::ReadCanonical<schema::SignedGrant>(
        *mine[i], "stored grant", [&](schema::SignedGrant::Reader r) {
          list.setWithCaveats(i, r);
          return Status::Ok();
        }));
  }
  capnp::MallocMessageBuilder sm;
  auto signed_root = sm.initRoot<schema::SignedGrantSet>();
  LATCH_RETURN_IF_ERROR(schema::SignGrantSet(key_, set.asReader(), signed_root));
  *signed_set = schema::CanonicalBytes(signed_root.asReader());
  return Status::Ok();
}

}  // namespace latch::collector
