// WorkflowService: requests, reviews and their outcomes under the loaded
// policy, each one a ledger record (promise 7). It decides with the
// RequestBook, records through its WorkflowSink before anything takes effect,
// and turns an approved request into a grant for the requester's principal on
// the resource's hosts for the approved duration. At start the collector
// replays the recorded actions into it (the ledger is the store).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collector/workflow/policy.h"
#include "collector/workflow/request_book.h"
#include "lib/status/status.h"
#include "schemas/workflow.capnp.h"

namespace latch::workflow {

// The grant an approved request becomes.
struct ApprovedGrant {
  const Identity* identity = nullptr;  // its principal on the hosts
  uint32_t resource_id = 0;
  std::vector<std::string> hosts;
  int64_t not_before_unix_ns = 0;
  int64_t not_after_unix_ns = 0;
  bool break_glass = false;
};

// What the service needs from the collector.
class WorkflowSink {
 public:
  virtual ~WorkflowSink() = default;
  // Appends a canonical WorkflowAction carrying `at_ns` (Unix ns) as its
  // time, the time the service decided at: replaying the record gives the
  // state the service kept. OK once it is part of the action under way,
  // whose records are durable before any of it takes effect; if they are
  // not, the collector puts the request book back (RestoreRequests).
  virtual Status Record(const std::string& action, const std::string& actor, int64_t at_ns) = 0;
  virtual Status IssueGrant(const ApprovedGrant& grant, const std::string& actor,
                            uint64_t* grant_id) = 0;
};

class WorkflowService {
 public:
  explicit WorkflowService(WorkflowSink& sink) : sink_(sink) {}

  // Loads and checks a policy; on success it replaces the running one and a
  // policyLoaded record names its hash. On failure the running one stays.
  // *record (if given): that record, a canonical WorkflowAction, for the
  // grant service (the hosts' resources come from it).
  Status LoadPolicy(const std::string& path, int64_t now_ns, std::string* record = nullptr);
  const Policy* policy() const { return policy_.get(); }

  // One recorded action, in ledger order.
  void Replay(schema::WorkflowAction::Reader action, int64_t at_ns);

  Status Request(const std::string& identity, const std::string& resource, int64_t duration_ns,
                 const std::string& reason, int64_t now_ns, AccessRequest* out);
  // *grant_id is set when this review approved the request.
  Status Review(const std::string& identity, uint64_t id, bool approve, const std::string& comment,
                int64_t now_ns, AccessRequest* out, uint64_t* grant_id);
  Status Cancel(const std::string& identity, uint64_t id, int64_t now_ns, AccessRequest* out);
  // Records the expiry of every pending request past its time; stops at
  // the first record refused (the rest are tried again later).
  Status ExpireDue(int64_t now_ns);

  const RequestBook& requests() const { return book_; }
  // Start-up from a state snapshot: the requests as they were at its size.
  void RestoreRequests(RequestBook book) { book_ = std::move(book); }

 private:
  Status RecordDecision(const AccessRequest& r, uint64_t grant_id, const std::string& actor,
                        int64_t at_ns);

  WorkflowSink& sink_;
  std::unique_ptr<Policy> policy_;
  RequestBook book_;
};

}  // namespace latch::workflow
