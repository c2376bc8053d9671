// RecordView: one ledger entry decoded into the fields the events index and
// the query results use (kind, host, time, who, which grant and resource,
// verdict) plus every payload field as JSON. It reads only the entry itself;
// what needs earlier entries (whose grant this was) is the index's job.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "lib/status/status.h"

namespace latch::index {

struct RecordView {
  // "decision", "loss", "opaque", an activity's kind ("exec", "exit",
  // "connect", "open", "credentials", "throttle"), or the workflow action's
  // name as in schemas/workflow.capnp ("requestCreated", "grantIssued", ...).
  std::string kind;
  std::string host;       // the record's host ("" for the collector's own)
  int64_t time_ns = 0;    // when it happened (Unix ns), as its source said
  std::string identity;   // who acted or asked, when the record says
  bool activity = false;  // an activity record (what a watched principal did)
  bool has_uid = false;   // decisions: the connecting uid; activity: the task's uid
  uint32_t uid = 0;
  std::vector<uint64_t> grant_ids;  // grants the record refers to
  uint32_t resource_id = 0;         // decisions and grants: the kernel's resource id
  // policyLoaded: what the policy calls each resource id.
  std::vector<std::pair<uint32_t, std::string>> resource_names;
  std::string resource;  // requests: the resource's name
  uint64_t request_id = 0;
  bool approved = false;  // requestDecided: state is "approved"
  std::string verdict;    // decisions: "allow", "deny" or "auditAllow"
  nlohmann::json detail;  // the whole record, fields by their schema names
};

// Decodes a ledger entry (canonical LedgerRecord). Corruption if it is not one.
// Without `with_detail`, `detail` stays empty: the index needs only the fields.
Status ViewRecord(std::string_view entry, RecordView* out, bool with_detail = true);
// The same for a bare workflow action (a WorkflowAction's canonical bytes).
Status ViewWorkflowAction(std::string_view action, RecordView* out);

}  // namespace latch::index
