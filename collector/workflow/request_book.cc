#include "collector/workflow/request_book.h"

#include <re2/re2.h>

#include <set>
#include <stdexcept>

#include "collector/workflow/duration.h"
#include "collector/workflow/free_text.h"
#include "lib/text/utf8.h"

namespace latch::workflow {

const char* RequestStateName(RequestState s) {
  switch (s) {
    case RequestState::kPending:
      return "pending";
    case RequestState::kApproved:
      return "approved";
    case RequestState::kDenied:
      return "denied";
    case RequestState::kCancelled:
      return "cancelled";
    case RequestState::kExpired:
      return "expired";
  }
  return "unknown";
}

Status RequestBook::Create(const Policy& policy, const std::string& requester,
                           const std::string& resource, int64_t duration_ns,
                           const std::string& reason, int64_t now_ns, AccessRequest* out) {
  const Identity* who = policy.FindIdentity(requester);
  if (who == nullptr) return Status::FailedPrecondition("'" + requester + "' is not in the policy");
  if (policy.FindResource(resource) == nullptr) {
    return Status::InvalidArgument("no resource '" + resource + "'");
  }
  if (who->principal == Identity::Principal::kNone) {
    return Status::FailedPrecondition("'" + requester + "' has no user or cgroup on the hosts");
  }
  const RequestRule* rule = policy.RequestRuleFor(*who, resource);
  if (rule == nullptr) {
    return Status::FailedPrecondition("no request rule lets '" + requester + "' request '" +
                                      resource + "'");
  }
  if (duration_ns <= 0) return Status::InvalidArgument("the duration must be positive");
  if (duration_ns > rule->max_duration_ns) {
    return Status::FailedPrecondition("at most " + FormatDuration(rule->max_duration_ns) + " of '" +
                                      resource + "' may be requested");
  }
  LATCH_RETURN_IF_ERROR(CheckFreeText(reason, "the reason"));
  if (rule->reason_required && IsBlank(reason)) {
    return Status::FailedPrecondition("a reason is required for '" + resource + "'");
  }
  if (rule->ticket && !re2::RE2::PartialMatch(reason, *rule->ticket)) {
    // The pattern is searched for anywhere in the reason (anchors, if the
    // policy has them, say where): the answer shows both, so a requester
    // can see which does not fit.
    std::string_view start = text::TruncateUtf8(reason, 40);
    return Status::FailedPrecondition(
        "the reason must carry a ticket matching " + rule->ticket_pattern +
        " (searched for in the reason, which begins '" + std::string(start) +
        (start.size() < reason.size() ? "...'" : "'") + ")");
  }
  AccessRequest r;
  r.id = next_id_++;
  r.requester = requester;
  r.resource = resource;
  r.duration_ns = duration_ns;
  r.reason = reason;
  r.created_ns = now_ns;
  r.pending_until_ns = now_ns + rule->pending_ttl_ns;
  requests_[r.id] = r;
  *out = r;
  return Status::Ok();
}

bool RequestBook::MayReview(const Policy& policy, const AccessRequest& r,
                            const std::string& reviewer) const {
  if (r.state != RequestState::kPending) return false;
  const Identity* who = policy.FindIdentity(reviewer);
  const ApprovalRule* rule = policy.ApprovalRuleFor(r.resource);
  if (who == nullptr || rule == nullptr) return false;
  for (const RequestReview& rev : r.reviews) {
    if (rev.reviewer == reviewer) return false;  // one review each
  }
  if (reviewer == r.requester) {
    for (const std::string& g : rule->break_glass_groups) {
      if (who->groups.count(g)) return true;
    }
    return false;
  }
  for (const std::string& g : rule->approver_groups) {
    if (who->groups.count(g)) return true;
  }
  return false;
}

bool RequestBook::Complete(const ApprovalRule& rule, const Policy& policy,
                           const AccessRequest& r) const {
  std::set<std::string> approvers;
  std::set<std::string> groups_covered;
  for (const RequestReview& rev : r.reviews) {
    if (!rev.approve || rev.reviewer == r.requester) continue;
    approvers.insert(rev.reviewer);
    const Identity* who = policy.FindIdentity(rev.reviewer);
    if (who == nullptr) continue;
    for (const std::string& g : rule.approver_groups) {
      if (who->groups.count(g)) groups_covered.insert(g);
    }
  }
  if (static_cast<int>(approvers.size()) < rule.approvals) return false;
  return !rule.all_groups || groups_covered.size() == rule.approver_groups.size();
}

Status RequestBook::Review(const Policy& policy, uint64_t id, const std::string& reviewer,
                           bool approve, const std::string& comment, int64_t now_ns,
                           AccessRequest* out) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return Status::NotFound("no request " + std::to_string(id));
  AccessRequest& r = it->second;
  if (r.state != RequestState::kPending) {
    return Status::FailedPrecondition("request " + std::to_string(id) + " is " +
                                      RequestStateName(r.state));
  }
  if (now_ns > r.pending_until_ns) {
    return Status::FailedPrecondition("request " + std::to_string(id) + " has expired");
  }
  const ApprovalRule* rule = policy.ApprovalRuleFor(r.resource);
  if (rule == nullptr) {
    return Status::FailedPrecondition("'" + r.resource + "' has no approval rule any more");
  }
  if (reviewer == r.requester && !MayReview(policy, r, reviewer)) {
    return Status::FailedPrecondition("nobody approves their own request");
  }
  if (!MayReview(policy, r, reviewer)) {
    return Status::FailedPrecondition("'" + reviewer + "' may not review request " +
                                      std::to_string(id));
  }
  LATCH_RETURN_IF_ERROR(CheckFreeText(comment, "the comment"));
  bool self = reviewer == r.requester;
  if (self) {
    if (!approve) return Status::InvalidArgument("to withdraw your own request, cancel it");
    if (IsBlank(comment)) {
      return Status::FailedPrecondition("break-glass self-approval needs a reason");
    }
  }
  r.reviews.push_back({reviewer, approve, comment, now_ns});
  if (self) {
    r.break_glass = true;
    r.state = RequestState::kApproved;
    r.decided_ns = now_ns;
  } else if (!approve) {
    r.state = RequestState::kDenied;
    r.decided_ns = now_ns;
  } else if (Complete(*rule, policy, r)) {
    r.state = RequestState::kApproved;
    r.decided_ns = now_ns;
  }
  *out = r;
  return Status::Ok();
}

Status RequestBook::Cancel(uint64_t id, const std::string& who, int64_t now_ns,
                           AccessRequest* out) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return Status::NotFound("no request " + std::to_string(id));
  AccessRequest& r = it->second;
  if (r.requester != who) return Status::FailedPrecondition("only the requester may cancel");
  if (r.state != RequestState::kPending) {
    return Status::FailedPrecondition("request " + std::to_string(id) + " is " +
                                      RequestStateName(r.state));
  }
  r.state = RequestState::kCancelled;
  r.decided_ns = now_ns;
  *out = r;
  return Status::Ok();
}

bool RequestBook::AnyDue(int64_t now_ns) const {
  for (const auto& [id, r] : requests_) {
    if (r.state == RequestState::kPending && now_ns > r.pending_until_ns) return true;
  }
  return false;
}

std::vector<AccessRequest> RequestBook::ExpireDue(int64_t now_ns) {
  std::vector<AccessRequest> expired;
  for (auto& [id, r] : requests_) {
    if (r.state == RequestState::kPending && now_ns > r.pending_until_ns) {
      r.state = RequestState::kExpired;
      r.decided_ns = now_ns;
      expired.push_back(r);
    }
  }
  return expired;
}

std::string RequestBook::StillNeeded(const Policy& policy, const AccessRequest& r) const {
  if (r.state != RequestState::kPending) return "";
  const ApprovalRule* rule = policy.ApprovalRuleFor(r.resource);
  if (rule == nullptr) return "no approval rule";
  int have = 0;
  for (const RequestReview& rev : r.reviews) have += rev.approve;
  std::string who;
  for (const auto& [name, id] : policy.identities()) {
    if (MayReview(policy, r, name) && name != r.requester) who += (who.empty() ? "" : ", ") + name;
  }
  return std::to_string(rule->approvals - have) + " more approval(s)" +
         (rule->all_groups ? " (every approver group)" : "") + " from: " + who;
}

void RequestBook::RestoreCreated(const AccessRequest& r) {
  requests_[r.id] = r;
  if (r.id >= next_id_) next_id_ = r.id + 1;
}

void RequestBook::RestoreReview(uint64_t id, const RequestReview& review) {
  auto it = requests_.find(id);
  if (it != requests_.end()) it->second.reviews.push_back(review);
}

void RequestBook::RestoreDecided(uint64_t id, RequestState state, bool break_glass, int64_t at_ns) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  it->second.state = state;
  it->second.break_glass = break_glass;
  it->second.decided_ns = at_ns;
}

namespace {
// Free text from the ledger is kept byte for byte (JSON strings must be UTF-8).
nlohmann::json Bytes(const std::string& s) { return nlohmann::json::binary({s.begin(), s.end()}); }
std::string Text(const nlohmann::json& j) {
  const auto& b = j.get_binary();
  return std::string(b.begin(), b.end());
}
}  // namespace

nlohmann::json RequestBook::ToSnapshot() const {
  nlohmann::json requests = nlohmann::json::array();
  for (const auto& [id, r] : requests_) {
    nlohmann::json reviews = nlohmann::json::array();
    for (const RequestReview& v : r.reviews) {
      reviews.push_back({Bytes(v.reviewer), v.approve, Bytes(v.comment), v.at_ns});
    }
    requests.push_back({r.id, Bytes(r.requester), Bytes(r.resource), r.duration_ns, Bytes(r.reason),
                        r.created_ns, r.pending_until_ns, static_cast<int>(r.state), reviews,
                        r.break_glass, r.decided_ns});
  }
  return {{"requests", requests}, {"next_id", next_id_}};
}

void RequestBook::FromSnapshot(const nlohmann::json& j) {
  requests_.clear();
  for (const auto& q : j.at("requests")) {
    AccessRequest r;
    r.id = q.at(0).get<uint64_t>();
    r.requester = Text(q.at(1));
    r.resource = Text(q.at(2));
    r.duration_ns = q.at(3).get<int64_t>();
    r.reason = Text(q.at(4));
    r.created_ns = q.at(5).get<int64_t>();
    r.pending_until_ns = q.at(6).get<int64_t>();
    const int state = q.at(7).get<int>();
    if (state < 0 || state > static_cast<int>(RequestState::kExpired)) {
      throw std::out_of_range("a request state out of range");
    }
    r.state = static_cast<RequestState>(state);
    for (const auto& v : q.at(8)) {
      r.reviews.push_back(
          {Text(v.at(0)), v.at(1).get<bool>(), Text(v.at(2)), v.at(3).get<int64_t>()});
    }
    r.break_glass = q.at(9).get<bool>();
    r.decided_ns = q.at(10).get<int64_t>();
    requests_[r.id] = std::move(r);
  }
  next_id_ = j.at("next_id").get<uint64_t>();
  if (!requests_.empty() && requests_.rbegin()->first >= next_id_) {
    throw std::out_of_range("a request id at or above the next one");
  }
}

const AccessRequest* RequestBook::Find(uint64_t id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : &it->second;
}

}  // namespace latch::workflow
