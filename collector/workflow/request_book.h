// RequestBook: access requests and their reviews, under a Policy. It decides;
// the collector records each decision in the ledger and turns an approved
// request into a signed grant.
//
// Rules (promise 9): nobody approves their own request, except a member of
// the resource's break-glass groups, who may approve their own with a reason:
// the request is approved at once and flagged break-glass. Otherwise a
// request is approved when `approvals` distinct members of the approver
// groups have approved it (with all_groups, at least one from each group),
// and denied by the first eligible denial. Unreviewed requests expire after
// the rule's pending_ttl.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "collector/workflow/policy.h"
#include "lib/status/status.h"

namespace latch::workflow {

enum class RequestState { kPending, kApproved, kDenied, kCancelled, kExpired };
const char* RequestStateName(RequestState s);

struct RequestReview {
  std::string reviewer;
  bool approve = false;
  std::string comment;
  int64_t at_ns = 0;
};

struct AccessRequest {
  uint64_t id = 0;
  std::string requester;
  std::string resource;
  int64_t duration_ns = 0;
  std::string reason;
  int64_t created_ns = 0;
  int64_t pending_until_ns = 0;  // expires unreviewed after this
  RequestState state = RequestState::kPending;
  std::vector<RequestReview> reviews;
  bool break_glass = false;
  int64_t decided_ns = 0;
};

class RequestBook {
 public:
  // Checks the request against the policy; FailedPrecondition (with the rule
  // that refuses it) or InvalidArgument for bad values.
  Status Create(const Policy& policy, const std::string& requester, const std::string& resource,
                int64_t duration_ns, const std::string& reason, int64_t now_ns, AccessRequest* out);
  // An approval or denial by `reviewer`. OK means it was recorded (the request
  // may or may not be decided by it: see out->state).
  Status Review(const Policy& policy, uint64_t id, const std::string& reviewer, bool approve,
                const std::string& comment, int64_t now_ns, AccessRequest* out);
  // Only the requester, only while pending.
  Status Cancel(uint64_t id, const std::string& who, int64_t now_ns, AccessRequest* out);
  // Pending requests past their time become expired; returns them.
  std::vector<AccessRequest> ExpireDue(int64_t now_ns);
  // Whether ExpireDue would expire any request now.
  bool AnyDue(int64_t now_ns) const;

  // Whether `reviewer` may approve or deny request `r` now (an approver's inbox).
  bool MayReview(const Policy& policy, const AccessRequest& r, const std::string& reviewer) const;
  // Who may still approve, in words, for `show`.
  std::string StillNeeded(const Policy& policy, const AccessRequest& r) const;
  const AccessRequest* Find(uint64_t id) const;

  // Replay of recorded actions (the ledger is the store): no policy checks,
  // the decisions were made when they were recorded.
  void RestoreCreated(const AccessRequest& r);
  void RestoreReview(uint64_t id, const RequestReview& review);
  void RestoreDecided(uint64_t id, RequestState state, bool break_glass, int64_t at_ns);
  const std::map<uint64_t, AccessRequest>& all() const { return requests_; }

  // Every request for a state snapshot, and back (throws nlohmann::json's
  // exceptions on a malformed one; the caller discards the book).
  nlohmann::json ToSnapshot() const;
  void FromSnapshot(const nlohmann::json& j);

 private:
  bool Complete(const ApprovalRule& rule, const Policy& policy, const AccessRequest& r) const;
  std::map<uint64_t, AccessRequest> requests_;
  uint64_t next_id_ = 1;
};

}  // namespace latch::workflow
