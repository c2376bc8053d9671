// Helpers for tests that run latch-agent and latch-collector as processes.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "collector/ledger/file_ledger.h"
#include "run_tool.h"
#include "schemas/activity_record.h"
#include "schemas/canonical.h"
#include "schemas/event.capnp.h"
#include "schemas/event_record.h"
#include "schemas/record_codec.h"
#include "schemas/workflow.capnp.h"

namespace latch::agent {

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

using latch::testing::RunTool;

// What the collector's ledger holds: decision events per (boot, sequence),
// every agent record's (boot, sequence) (decisions, activity, losses share
// the sequence), activity records, and workflow actions.
struct LedgerView {
  std::map<std::pair<std::string, uint64_t>, int> events;         // -> how many times
  std::map<std::pair<std::string, uint64_t>, int> agent_records;  // -> how many times
  std::vector<std::pair<std::string, uint64_t>> activity;         // (kind, grant id), in order
  std::vector<std::string> workflow;                              // action kinds, in order
  std::map<std::string, size_t> events_by_host;
  std::map<int, uint64_t> lost;  // loss records' counts added up, by schema::LossKind
  size_t loss_records = 0;
  std::vector<std::string> guard_events;  // guardDetached records: "reattached" or the error
  std::vector<std::string> denied;        // denials: the identity each names ("" if none)
  std::vector<std::string> alarms;        // agentAlarm records' kinds
  size_t size = 0;
};

// What `l` holds, whichever storage serves it.
inline LedgerView ReadLedgerView(ledger::Ledger* l) {
  LedgerView v;
  v.size = l->size();
  std::string entry;
  ledger::LedgerRecord r;
  for (uint64_t i = 0; i < v.size; ++i) {
    if (!l->ReadEntry(i, &entry).ok() || !ledger::DecodeRecord(entry, &r).ok()) continue;
    if (!r.agent_boot_id.empty()) v.agent_records[{r.agent_boot_id, r.sequence}]++;
    if (r.kind == ledger::RecordKind::kActivity) {
      record::ActivitySummary a;
      if (record::ViewActivityEvent(r.payload, &a).ok())
        v.activity.emplace_back(a.kind, a.grant_id);
    }
    if (r.kind == ledger::RecordKind::kGuard) {
      (void)schema::ReadCanonical<schema::GuardEvent>(r.payload, "guard", [&](auto g) {
        v.guard_events.push_back(g.getReattached() ? "reattached" : g.getError().cStr());
        return Status::Ok();
      });
    }
    if (r.kind == ledger::RecordKind::kLoss) {
      v.loss_records++;
      (void)schema::ReadCanonical<schema::LossEvent>(r.payload, "loss", [&](auto loss) {
        v.lost[static_cast<int>(loss.getKind())] += loss.getCount();
        return Status::Ok();
      });
    }
    if (r.kind == ledger::RecordKind::kEvent) {
      v.events[{r.agent_boot_id, r.sequence}]++;
      v.events_by_host[r.host_id]++;
      latch_decision_event e{};
      std::string identity;
      if (record::DecodeDecisionEvent(r.payload, &e, &identity).ok() &&
          e.verdict == LATCH_VERDICT_DENY) {
        v.denied.push_back(identity);
      }
    } else if (r.kind == ledger::RecordKind::kWorkflow) {
      (void)schema::ReadCanonical<schema::WorkflowAction>(r.payload, "action", [&](auto a) {
        const char* names[] = {"grantIssued",    "grantRevoked",   "grantSetApplied",
                               "refusal",        "agentAlarm",     "agentConnected",
                               "policyLoaded",   "requestCreated", "requestReviewed",
                               "requestDecided", "grantExpired",   "grantKeyInUse",
                               "agentSilent"};
        size_t which = static_cast<size_t>(a.which());
        v.workflow.push_back(which < std::size(names) ? names[which] : "unknown");
        if (a.isAgentAlarm()) v.alarms.push_back(a.getAgentAlarm().getAlarm().getKind());
        return Status::Ok();
      });
    }
  }
  return v;
}

inline LedgerView ReadLedgerAt(const std::string& dir) {
  std::unique_ptr<ledger::Ledger> l;
  Status s = ledger::FileLedger::Open(dir, ledger::FileLedger::Mode::kReadOnly, &l);
  if (!s.ok()) return LedgerView{};
  return ReadLedgerView(l.get());
}

}  // namespace latch::agent
