#include "collector/grants/grant_service.h"

#include <capnp/message.h>

#include <algorithm>
#include <utility>

#include "lib/logging/logger.h"
#include "schemas/canonical.h"
#include "schemas/host_policy.h"

namespace latch::collector {
namespace {

// A resource as the API shows it: as the policy wrote it.
nlohmann::json ResourceJson(const resource::Resource& r) {
  nlohmann::json destinations = nlohmann::json::array();
  if (r.local) destinations.push_back("local");
  const std::vector<resource::Cidr> loopback = resource::LoopbackCidrs();
  for (const resource::Cidr& c : r.destinations) {
    bool for_local = r.local && std::find(loopback.begin(), loopback.end(), c) != loopback.end();
    if (!for_local) destinations.push_back(c.ToString());
  }
  std::string ports = r.port_lo == 0 && r.port_hi == 65535 ? "*"
                      : r.port_lo == r.port_hi
                          ? std::to_string(r.port_lo)
                          : std::to_string(r.port_lo) + "-" + std::to_string(r.port_hi);
  return {{"id", r.id},
          {"name", r.name},
          {"destinations", destinations},
          {"protocol", r.protocol == resource::Protocol::kTcp   ? "tcp"
                       : r.protocol == resource::Protocol::kUdp ? "udp"
                                                                : "any"},
          {"ports", ports},
          {"mode", r.mode == resource::Mode::kAudit ? "audit" : "enforce"}};
}

}  // namespace

GrantService::GrantService(tlog::NoteSigner key, std::vector<tlog::NoteVerifier> retired,
                           Recorder& recorder, GrantPusher push)
    : key_(std::move(key)),
      retired_(std::move(retired)),
      recorder_(recorder),
      push_(std::move(push)),
      book_(std::make_unique<GrantBook>(key_, retired_)) {}

Status GrantService::Issue(const GrantSpec& spec, const std::string& actor, uint64_t* id,
                           int64_t at_ns) {
  std::string signed_grant;
  LATCH_RETURN_IF_ERROR(book_->Sign(spec, &signed_grant));
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(actor);
  LATCH_RETURN_IF_ERROR(schema::ReadCanonical<schema::SignedGrant>(
      signed_grant, "signed grant", [&](schema::SignedGrant::Reader g) {
        a.initGrantIssued().setGrant(g);
        return Status::Ok();
      }));
  // On record first: a grant that is not recorded never takes effect.
  LATCH_RETURN_IF_ERROR(recorder_.Record(schema::CanonicalBytes(a.asReader()), "",
                                         at_ns != 0 ? at_ns : WallClockNs()));
  std::vector<std::string> changed;
  Status s = book_->ApplyIssued(signed_grant, id, &changed);
  if (!s.ok()) {
    // Signed but not applicable: should not happen (Sign checked the id).
    logging::Default().Error("a signed grant was not applied (should not happen)",
                             {{"error", s.ToString()}});
    return s;
  }
  Changed(changed);
  return Status::Ok();
}

Status GrantService::Revoke(uint64_t id, const std::string& actor, const std::string& reason) {
  if (!book_->Has(id)) return Status::NotFound("no live grant " + std::to_string(id));
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(actor);
  auto r = a.initGrantRevoked();
  r.setGrantId(id);
  r.setReason(reason);
  // The time it ended is the record's, as a replay finds it.
  const int64_t now = WallClockNs();
  LATCH_RETURN_IF_ERROR(recorder_.Record(schema::CanonicalBytes(a.asReader()), "", now));
  std::vector<std::string> changed;
  End(id, "revoked", now, &changed);
  Changed(changed);
  return Status::Ok();
}

// Recorded as expired and dropped from the hosts' sets (the kernels have
// refused them since notAfter on their own).
Status GrantService::ExpireEnded(int64_t now_ns) {
  for (uint64_t id : book_->EndedBy(now_ns)) {
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor("collector");
    a.initGrantExpired().setGrantId(id);
    LATCH_RETURN_IF_ERROR(recorder_.Record(schema::CanonicalBytes(a.asReader()), "", now_ns));
    std::vector<std::string> changed;
    End(id, "expired", now_ns, &changed);
    Changed(changed);
  }
  return Status::Ok();
}

void GrantService::End(uint64_t id, const std::string& how, int64_t at_ns,
                       std::vector<std::string>* changed) {
  if (!book_->Has(id)) return;
  past_[id] = {book_->Describe(id), how, at_ns};
  if (action_) action_->ended.push_back(id);
  (void)book_->ApplyRevoked(id, changed);
}

void GrantService::Changed(const std::vector<std::string>& hosts) {
  if (action_) {
    action_->push.insert(hosts.begin(), hosts.end());  // once the action is durable
    return;
  }
  for (const std::string& h : hosts) push_(h);
}

void GrantService::BeginAction() {
  action_.emplace();
  action_->book_before = std::make_unique<GrantBook>(*book_);
}

void GrantService::Durable() {
  if (!action_) return;
  std::set<std::string> push = std::move(action_->push);
  action_.reset();
  for (const std::string& h : push) push_(h);
}

void GrantService::Undo() {
  if (!action_) return;
  // Never pushed, and no version handed out in it is kept: the book is the
  // one a replay of the ledger gives.
  book_ = std::move(action_->book_before);
  for (uint64_t id : action_->ended) past_.erase(id);
  action_.reset();
}

void GrantService::NoteApplied(const std::string& host, uint64_t version,
                               capnp::List<uint64_t>::Reader grant_ids, int64_t at_ns) {
  for (uint64_t id : grant_ids) effective_[id].emplace(host, at_ns);  // keeps the first
  const GrantBook::HostPolicyState* policy = book_->host_policy(host);
  if (policy == nullptr || version < policy->version) return;
  PolicyInForce& in_force = policy_in_force_[host];
  if (in_force.version != policy->version) in_force = {policy->version, at_ns};  // the first
}

nlohmann::json GrantService::DescribeHosts() const {
  nlohmann::json hosts = nlohmann::json::array();
  for (const auto& [host, state] : book_->host_policies()) {
    nlohmann::json resources = nlohmann::json::array();
    std::vector<resource::Resource> list;
    Status s = schema::ReadCanonical<schema::HostPolicy>(
        state.policy, "host policy",
        [&](schema::HostPolicy::Reader p) { return resource::ResourcesFromPolicy(p, &list); });
    if (!s.ok()) {
      logging::Default().Error("a host policy the book holds does not read",  // should not happen
                               {{"host", host}, {"error", s.ToString()}});
    }
    for (const resource::Resource& r : list) resources.push_back(ResourceJson(r));
    auto in_force = policy_in_force_.find(host);
    bool held = in_force != policy_in_force_.end() && in_force->second.version == state.version;
    hosts.push_back({{"host", host},
                     {"resources", resources},
                     {"policy_since_ns", state.since_ns},
                     {"set_version", book_->version(host)},
                     {"policy_version", state.version},
                     {"in_force_since_ns",
                      held ? nlohmann::json(in_force->second.since_ns) : nlohmann::json(nullptr)}});
  }
  return hosts;
}

Status GrantService::SignedSet(const std::string& host, int64_t now_ns,
                               std::string* signed_set) const {
  return book_->SignedSet(host, now_ns, signed_set);
}

nlohmann::json GrantService::Describe(
    bool past, const std::function<bool(const nlohmann::json&)>& visible) const {
  auto effective_since = [&](uint64_t id) {
    nlohmann::json hosts = nlohmann::json::object();
    auto eff = effective_.find(id);
    if (eff != effective_.end()) {
      for (const auto& [h, at] : eff->second) hosts[h] = at;
    }
    return hosts;
  };
  nlohmann::json list = nlohmann::json::array();
  for (uint64_t id : book_->Ids()) {
    nlohmann::json grant = book_->Describe(id);
    if (!visible(grant)) continue;
    list.push_back({{"id", id}, {"effective_since", effective_since(id)}, {"grant", grant}});
  }
  if (!past) return {{"grants", list}};
  nlohmann::json ended = nlohmann::json::array();
  for (auto it = past_.rbegin(); it != past_.rend(); ++it) {
    if (!visible(it->second.grant)) continue;
    ended.push_back({{"id", it->first},
                     {"effective_since", effective_since(it->first)},
                     {"grant", it->second.grant},
                     {"ended", it->second.ended},
                     {"ended_at_ns", it->second.ended_at_ns}});
  }
  return {{"grants", list}, {"past", ended}};
}

Status GrantService::Replay(schema::WorkflowAction::Reader a, const std::string& host,
                            int64_t at_ns, const std::string& where) {
  std::vector<std::string> changed;  // nobody is connected yet
  if (a.isGrantIssued()) {
    uint64_t id = 0;
    return book_->ApplyIssued(schema::CanonicalBytes(a.getGrantIssued().getGrant()), &id, &changed)
        .WithContext(where);
  }
  if (a.isGrantRevoked()) End(a.getGrantRevoked().getGrantId(), "revoked", at_ns, &changed);
  if (a.isGrantExpired()) End(a.getGrantExpired().getGrantId(), "expired", at_ns, &changed);
  if (a.isPolicyLoaded()) book_->ApplyPolicy(a.getPolicyLoaded().getHosts(), at_ns, &changed);
  if (a.isGrantSetApplied()) {
    NoteApplied(host, a.getGrantSetApplied().getVersion(), a.getGrantSetApplied().getGrantIds(),
                a.getGrantSetApplied().getAppliedAtNs());
  }
  return Status::Ok();
}

void GrantService::ApplyPolicy(schema::PolicyLoaded::Reader loaded, int64_t at_ns) {
  std::vector<std::string> changed;
  book_->ApplyPolicy(loaded.getHosts(), at_ns, &changed);
  Changed(changed);
}

nlohmann::json GrantService::ToSnapshot() const {
  nlohmann::json past = nlohmann::json::array();
  for (const auto& [id, p] : past_) past.push_back({id, p.grant, p.ended, p.ended_at_ns});
  nlohmann::json effective = nlohmann::json::array();
  for (const auto& [id, hosts] : effective_) {
    nlohmann::json by_host = nlohmann::json::array();
    for (const auto& [host, at] : hosts) {
      by_host.push_back({nlohmann::json::binary({host.begin(), host.end()}), at});
    }
    effective.push_back({id, by_host});
  }
  nlohmann::json in_force = nlohmann::json::array();
  for (const auto& [host, p] : policy_in_force_) {
    in_force.push_back({nlohmann::json::binary({host.begin(), host.end()}), p.version, p.since_ns});
  }
  return {{"grants", book_->ToSnapshot()},
          {"past_grants", past},
          {"effective", effective},
          {"policy_in_force", in_force}};
}

Status GrantService::FromSnapshot(const nlohmann::json& state) {
  try {
    LATCH_RETURN_IF_ERROR(book_->FromSnapshot(state.at("grants")));
    past_.clear();
    for (const auto& p : state.at("past_grants")) {
      past_[p.at(0).get<uint64_t>()] = {p.at(1), p.at(2).get<std::string>(),
                                        p.at(3).get<int64_t>()};
    }
    effective_.clear();
    for (const auto& e : state.at("effective")) {
      auto& hosts = effective_[e.at(0).get<uint64_t>()];
      for (const auto& h : e.at(1)) {
        const auto& host = h.at(0).get_binary();
        hosts[std::string(host.begin(), host.end())] = h.at(1).get<int64_t>();
      }
    }
    policy_in_force_.clear();
    if (state.contains("policy_in_force")) {  // absent in snapshots from before issue 16
      for (const auto& p : state.at("policy_in_force")) {
        const auto& host = p.at(0).get_binary();
        policy_in_force_[std::string(host.begin(), host.end())] = {p.at(1).get<uint64_t>(),
                                                                   p.at(2).get<int64_t>()};
      }
    }
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("malformed grant state: ") + e.what());
  }
  return Status::Ok();
}

void GrantService::Reset() {
  book_ = std::make_unique<GrantBook>(key_, retired_);
  past_.clear();
  effective_.clear();
  policy_in_force_.clear();
  action_.reset();
}

}  // namespace latch::collector
