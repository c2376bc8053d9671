#include "collector/grants/grant_service.h"

#include <capnp/message.h>

#include <utility>

#include "lib/logging/logger.h"
#include "schemas/canonical.h"

namespace latch::collector {

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

void GrantService::NoteApplied(const std::string& host, capnp::List<uint64_t>::Reader grant_ids,
                               int64_t at_ns) {
  for (uint64_t id : grant_ids) effective_[id].emplace(host, at_ns);  // keeps the first
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
  if (a.isGrantSetApplied()) {
    NoteApplied(host, a.getGrantSetApplied().getGrantIds(),
                a.getGrantSetApplied().getAppliedAtNs());
  }
  return Status::Ok();
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
  return {{"grants", book_->ToSnapshot()}, {"past_grants", past}, {"effective", effective}};
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
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("malformed grant state: ") + e.what());
  }
  return Status::Ok();
}

void GrantService::Reset() {
  book_ = std::make_unique<GrantBook>(key_, retired_);
  past_.clear();
  effective_.clear();
  action_.reset();
}

}  // namespace latch::collector
