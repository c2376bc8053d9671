#include "collector/workflow/policy.h"

#include <re2/re2.h>

#include <algorithm>
#include <fstream>

#include "collector/workflow/duration.h"
#include "lib/config/toml_settings.h"
#include "lib/tlog/hex.h"
#include "lib/tlog/sha256.h"

namespace latch::workflow {
namespace {

// Reads one table's settings, with errors that name the line.
using Reader = config::TableReader;
using config::ForEachTable;

// A duration setting ("30m", "4h"): *ns keeps its default when absent.
Status GetDuration(const Reader& r, const char* key, int64_t* ns, bool required) {
  std::string text;
  bool had = r.table().get(key) != nullptr;
  LATCH_RETURN_IF_ERROR(r.Get(key, &text, required));
  if (!had) return Status::Ok();
  Status s = ParseDuration(text, ns);
  return s.ok() ? s : r.Bad(std::string("setting '") + key + "': " + s.message());
}

}  // namespace

Status Policy::Parse(std::string_view toml_text, const std::string& source,
                     std::unique_ptr<Policy>* out) {
  toml::table root;
  LATCH_RETURN_IF_ERROR(config::ParseToml(toml_text, source, &root));
  auto p = std::make_unique<Policy>();
  p->hash_ = tlog::HexEncode(
      tlog::Sha256::Of({reinterpret_cast<const uint8_t*>(toml_text.data()), toml_text.size()}));
  Reader top(root, source);
  LATCH_RETURN_IF_ERROR(top.Known({"host", "resource", "identity", "request_rule", "approval_rule",
                                   "auditor_groups", "admin_groups"}));

  Status table_status = ForEachTable(root, "host", source, [&](const Reader& r) {
    LATCH_RETURN_IF_ERROR(r.Known({"id", "labels"}));
    std::string id;
    std::vector<std::string> labels;
    LATCH_RETURN_IF_ERROR(r.Get("id", &id, true));
    LATCH_RETURN_IF_ERROR(r.Strings("labels", &labels, false));
    if (id.empty()) return r.Bad("host id must not be empty");
    if (p->host_labels_.count(id)) return r.Bad("host '" + id + "' is listed twice");
    p->host_labels_[id] = {labels.begin(), labels.end()};
    return Status::Ok();
  });
  LATCH_RETURN_IF_ERROR(table_status);

  std::set<uint32_t> resource_ids;
  table_status = ForEachTable(root, "resource", source, [&](const Reader& r) {
    LATCH_RETURN_IF_ERROR(r.Known(
        {"name", "id", "destinations", "protocol", "ports", "mode", "hosts", "host_labels"}));
    PolicyResource pr;
    int64_t id = 0;
    std::string protocol = "tcp", ports, mode = "enforce";
    std::vector<std::string> dests, hosts, labels;
    LATCH_RETURN_IF_ERROR(r.Get("name", &pr.name, true));
    LATCH_RETURN_IF_ERROR(r.Get("id", &id, true));
    LATCH_RETURN_IF_ERROR(r.Strings("destinations", &dests, true));
    LATCH_RETURN_IF_ERROR(r.Get("protocol", &protocol, false));
    LATCH_RETURN_IF_ERROR(r.Get("ports", &ports, true));
    LATCH_RETURN_IF_ERROR(r.Get("mode", &mode, false));
    LATCH_RETURN_IF_ERROR(r.Strings("hosts", &hosts, false));
    LATCH_RETURN_IF_ERROR(r.Strings("host_labels", &labels, false));
    if (pr.name.empty()) return r.Bad("resource name must not be empty");
    if (p->resources_.count(pr.name)) return r.Bad("resource '" + pr.name + "' is defined twice");
    if (id <= 0 || id > UINT32_MAX) return r.Bad("resource id must be 1 to 4294967295");
    if (!resource_ids.insert(static_cast<uint32_t>(id)).second) {
      return r.Bad("resource id " + std::to_string(id) + " is used twice");
    }
    resource::Resource& res = pr.resource;
    res.id = static_cast<uint32_t>(id);
    res.name = pr.name;
    Status s = resource::ParseProtocol(protocol, &res.protocol);
    if (s.ok()) s = resource::ParsePortRange(ports, &res.port_lo, &res.port_hi);
    if (s.ok()) s = resource::ParseMode(mode, &res.mode);
    for (const std::string& d : dests) {
      if (s.ok()) s = resource::ParseDestination(d, &res);
    }
    if (!s.ok()) return r.Bad("resource '" + pr.name + "': " + s.message());
    std::set<std::string> targets;
    for (const std::string& h : hosts) {
      if (!p->host_labels_.count(h))
        return r.Bad("resource '" + pr.name + "': unknown host '" + h + "'");
      targets.insert(h);
    }
    for (const std::string& l : labels) {
      bool any = false;
      for (const auto& [h, ls] : p->host_labels_) {
        if (ls.count(l)) {
          targets.insert(h);
          any = true;
        }
      }
      if (!any) return r.Bad("resource '" + pr.name + "': no host has label '" + l + "'");
    }
    if (targets.empty()) return r.Bad("resource '" + pr.name + "' names no hosts");
    pr.hosts.assign(targets.begin(), targets.end());
    std::string name = pr.name;
    p->resources_[name] = std::move(pr);
    return Status::Ok();
  });
  LATCH_RETURN_IF_ERROR(table_status);

  std::set<std::string> groups;
  table_status = ForEachTable(root, "identity", source, [&](const Reader& r) {
    LATCH_RETURN_IF_ERROR(r.Known({"name", "groups", "host_user", "uid", "cgroup"}));
    Identity id;
    std::vector<std::string> gs;
    LATCH_RETURN_IF_ERROR(r.Get("name", &id.name, true));
    LATCH_RETURN_IF_ERROR(r.Strings("groups", &gs, false));
    if (id.name.empty() || id.name.rfind("group:", 0) == 0) {
      return r.Bad("identity name must be non-empty and not start with 'group:'");
    }
    if (p->identities_.count(id.name)) return r.Bad("identity '" + id.name + "' is defined twice");
    id.groups = {gs.begin(), gs.end()};
    groups.insert(gs.begin(), gs.end());
    int principals = 0;
    std::string user, cgroup;
    int64_t uid = -1;
    LATCH_RETURN_IF_ERROR(r.Get("host_user", &user, false));
    LATCH_RETURN_IF_ERROR(r.Get("uid", &uid, false));
    LATCH_RETURN_IF_ERROR(r.Get("cgroup", &cgroup, false));
    if (!user.empty()) {
      ++principals;
      id.principal = Identity::Principal::kUser;
      id.host_user = user;
    }
    if (uid >= 0) {
      ++principals;
      if (uid > UINT32_MAX) return r.Bad("uid out of range");
      id.principal = Identity::Principal::kUid;
      id.uid = static_cast<uint32_t>(uid);
    }
    if (!cgroup.empty()) {
      ++principals;
      if (cgroup.find("..") != std::string::npos) return r.Bad("cgroup path must not contain '..'");
      id.principal = Identity::Principal::kCgroup;
      id.host_user = cgroup;
    }
    if (principals > 1) {
      return r.Bad("identity '" + id.name + "': give at most one of host_user, uid, cgroup");
    }
    std::string name = id.name;
    p->identities_[name] = std::move(id);
    return Status::Ok();
  });
  LATCH_RETURN_IF_ERROR(table_status);

  auto check_resources = [&](const Reader& r, const std::vector<std::string>& names,
                             std::set<std::string>* into) {
    if (names.empty()) return r.Bad("'resources' must not be empty");
    for (const std::string& n : names) {
      if (!p->resources_.count(n)) return r.Bad("unknown resource '" + n + "'");
      into->insert(n);
    }
    return Status::Ok();
  };

  table_status = ForEachTable(root, "request_rule", source, [&](const Reader& r) {
    LATCH_RETURN_IF_ERROR(r.Known({"resources", "requesters", "max_duration", "reason_required",
                                   "ticket_pattern", "pending_ttl"}));
    RequestRule rule;
    std::vector<std::string> res, who;
    LATCH_RETURN_IF_ERROR(r.Strings("resources", &res, true));
    LATCH_RETURN_IF_ERROR(check_resources(r, res, &rule.resources));
    LATCH_RETURN_IF_ERROR(r.Strings("requesters", &who, true));
    if (who.empty()) return r.Bad("'requesters' must not be empty");
    for (const std::string& w : who) {
      if (w.rfind("group:", 0) == 0) {
        std::string g = w.substr(6);
        if (!groups.count(g)) return r.Bad("no identity is in group '" + g + "'");
        rule.groups.insert(g);
      } else {
        if (!p->identities_.count(w)) return r.Bad("unknown identity '" + w + "'");
        rule.identities.insert(w);
      }
    }
    LATCH_RETURN_IF_ERROR(GetDuration(r, "max_duration", &rule.max_duration_ns, true));
    LATCH_RETURN_IF_ERROR(r.Get("reason_required", &rule.reason_required, false));
    LATCH_RETURN_IF_ERROR(r.Get("ticket_pattern", &rule.ticket_pattern, false));
    if (!rule.ticket_pattern.empty()) {
      re2::RE2::Options options;
      options.set_log_errors(false);
      options.set_max_mem(1 << 20);  // a pattern, not a program: bounded
      auto compiled = std::make_shared<const re2::RE2>(rule.ticket_pattern, options);
      if (!compiled->ok()) {
        return r.Bad("ticket_pattern is not a valid regular expression (RE2 syntax): " +
                     compiled->error());
      }
      rule.ticket = std::move(compiled);
    }
    LATCH_RETURN_IF_ERROR(GetDuration(r, "pending_ttl", &rule.pending_ttl_ns, false));
    p->request_rules_.push_back(std::move(rule));
    return Status::Ok();
  });
  LATCH_RETURN_IF_ERROR(table_status);

  table_status = ForEachTable(root, "approval_rule", source, [&](const Reader& r) {
    LATCH_RETURN_IF_ERROR(
        r.Known({"resources", "approver_groups", "approvals", "all_groups", "break_glass_groups"}));
    ApprovalRule rule;
    std::vector<std::string> res, bg;
    LATCH_RETURN_IF_ERROR(r.Strings("resources", &res, true));
    LATCH_RETURN_IF_ERROR(check_resources(r, res, &rule.resources));
    LATCH_RETURN_IF_ERROR(r.Strings("approver_groups", &rule.approver_groups, true));
    if (rule.approver_groups.empty()) return r.Bad("'approver_groups' must not be empty");
    for (const std::string& g : rule.approver_groups) {
      if (!groups.count(g)) return r.Bad("no identity is in approver group '" + g + "'");
    }
    int64_t approvals = 1;
    LATCH_RETURN_IF_ERROR(r.Get("approvals", &approvals, false));
    LATCH_RETURN_IF_ERROR(r.Get("all_groups", &rule.all_groups, false));
    if (approvals < 1 || approvals > 16) return r.Bad("approvals must be 1 to 16");
    rule.approvals = static_cast<int>(approvals);
    if (rule.all_groups && rule.approvals < static_cast<int>(rule.approver_groups.size())) {
      rule.approvals = static_cast<int>(rule.approver_groups.size());
    }
    LATCH_RETURN_IF_ERROR(r.Strings("break_glass_groups", &bg, false));
    for (const std::string& g : bg) {
      if (!groups.count(g)) return r.Bad("no identity is in break-glass group '" + g + "'");
    }
    rule.break_glass_groups = {bg.begin(), bg.end()};
    for (const std::string& n : rule.resources) {
      if (p->ApprovalRuleFor(n) != nullptr)
        return r.Bad("resource '" + n + "' has two approval rules");
    }
    // Enough distinct approvers must exist, or requests could never be approved.
    std::set<std::string> eligible;
    for (const auto& [name, id] : p->identities_) {
      for (const std::string& g : rule.approver_groups) {
        if (id.groups.count(g)) eligible.insert(name);
      }
    }
    if (static_cast<int>(eligible.size()) < rule.approvals) {
      return r.Bad("approvals = " + std::to_string(rule.approvals) + " but only " +
                   std::to_string(eligible.size()) + " identities may approve");
    }
    p->approval_rules_.push_back(std::move(rule));
    return Status::Ok();
  });
  LATCH_RETURN_IF_ERROR(table_status);

  // Every requestable resource must have someone to approve it.
  for (const RequestRule& rule : p->request_rules_) {
    for (const std::string& n : rule.resources) {
      if (p->ApprovalRuleFor(n) == nullptr) {
        return Status::InvalidArgument(source + ": resource '" + n +
                                       "' may be requested but has no approval rule");
      }
    }
  }
  std::vector<std::string> auditors;
  LATCH_RETURN_IF_ERROR(top.Strings("auditor_groups", &auditors, false));
  for (const std::string& g : auditors) {
    if (!groups.count(g)) return top.Bad("no identity is in auditor group '" + g + "'");
  }
  p->auditor_groups_ = {auditors.begin(), auditors.end()};
  std::vector<std::string> admins;
  LATCH_RETURN_IF_ERROR(top.Strings("admin_groups", &admins, false));
  for (const std::string& g : admins) {
    if (!groups.count(g)) return top.Bad("no identity is in admin group '" + g + "'");
  }
  p->admin_groups_ = {admins.begin(), admins.end()};
  *out = std::move(p);
  return Status::Ok();
}

Status Policy::Load(const std::string& path, std::unique_ptr<Policy>* out) {
  std::ifstream in(path);
  if (!in) return Status::NotFound("cannot read policy file " + path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return Parse(text, path, out);
}

const PolicyResource* Policy::FindResource(const std::string& name) const {
  auto it = resources_.find(name);
  return it == resources_.end() ? nullptr : &it->second;
}

bool Policy::MayReadAllEvents(const std::string& identity) const {
  const Identity* who = FindIdentity(identity);
  if (who == nullptr) return false;
  for (const std::string& g : who->groups) {
    if (auditor_groups_.count(g)) return true;
  }
  for (const ApprovalRule& rule : approval_rules_) {
    for (const std::string& g : rule.approver_groups) {
      if (who->groups.count(g)) return true;
    }
  }
  return false;
}

bool Policy::IsAuditor(const std::string& identity) const {
  const Identity* who = FindIdentity(identity);
  if (who == nullptr) return false;
  for (const std::string& g : who->groups) {
    if (auditor_groups_.count(g)) return true;
  }
  return false;
}

bool Policy::IsAdmin(const std::string& identity) const {
  const Identity* who = FindIdentity(identity);
  if (who == nullptr) return false;
  for (const std::string& g : who->groups) {
    if (admin_groups_.count(g)) return true;
  }
  return false;
}

bool Policy::MayApprove(const std::string& identity, const std::string& resource) const {
  const Identity* who = FindIdentity(identity);
  const ApprovalRule* rule = ApprovalRuleFor(resource);
  if (who == nullptr || rule == nullptr) return false;
  for (const std::string& g : rule->approver_groups) {
    if (who->groups.count(g)) return true;
  }
  return false;
}

bool Policy::MayRevoke(const std::string& identity,
                       const std::vector<uint32_t>& resource_ids) const {
  if (IsAuditor(identity)) return true;
  for (const auto& [name, res] : resources_) {
    bool named =
        std::find(resource_ids.begin(), resource_ids.end(), res.resource.id) != resource_ids.end();
    if (named && MayApprove(identity, name)) return true;
  }
  return false;
}

const Identity* Policy::FindIdentity(const std::string& name) const {
  auto it = identities_.find(name);
  return it == identities_.end() ? nullptr : &it->second;
}

const RequestRule* Policy::RequestRuleFor(const Identity& identity,
                                          const std::string& resource) const {
  for (const RequestRule& rule : request_rules_) {
    if (!rule.resources.count(resource)) continue;
    if (rule.identities.count(identity.name)) return &rule;
    for (const std::string& g : identity.groups) {
      if (rule.groups.count(g)) return &rule;
    }
  }
  return nullptr;
}

const ApprovalRule* Policy::ApprovalRuleFor(const std::string& resource) const {
  for (const ApprovalRule& rule : approval_rules_) {
    if (rule.resources.count(resource)) return &rule;
  }
  return nullptr;
}

std::set<std::string> Policy::HostIds() const {
  std::set<std::string> ids;
  for (const auto& [id, labels] : host_labels_) ids.insert(id);
  for (const auto& [name, r] : resources_) ids.insert(r.hosts.begin(), r.hosts.end());
  return ids;
}

}  // namespace latch::workflow
