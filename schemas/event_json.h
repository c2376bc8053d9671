// Decision and loss records as JSON lines: the agent's output until the
// collector channel exists (issue 4), and the form `latch-agent status` uses.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "bpf/guard_abi.h"

namespace latch::record {

// A decision record as a JSON object (parsed back from AppendDecisionJsonLine,
// so the two never disagree).
nlohmann::json DecisionToJson(const latch_decision_event& e, const std::string& host_id);

// The same record as DecisionToJson, appended to `out` as one JSON line
// without building a DOM: this runs once per event on the agent's drain path.
// `host_id_json` is the host id already encoded as a JSON string (quotes
// included), e.g. from nlohmann::json(host_id).dump().
void AppendDecisionJsonLine(const latch_decision_event& e, const std::string& host_id_json,
                            std::string* out);
// A loss record: `count` new losses of `kind` (e.g. "ring_buffer_full").
nlohmann::json LossToJson(const std::string& kind, uint64_t count, uint64_t total,
                          const std::string& host_id);
const char* VerdictName(uint8_t verdict);

}  // namespace latch::record
