// Decision and loss records as JSON lines: the agent's output until the
// collector channel exists (issue 4), and the form `latch-agent status` uses.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "guard_abi.h"

namespace latch::agent {

nlohmann::json DecisionToJson(const latch_decision_event& e, const std::string& host_id);
// A loss record: `count` new losses of `kind` (e.g. "ring_buffer_full").
nlohmann::json LossToJson(const std::string& kind, uint64_t count, uint64_t total,
                          const std::string& host_id);
const char* VerdictName(uint8_t verdict);

}  // namespace latch::agent
