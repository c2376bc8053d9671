// Decision events as schemas/event.capnp records: the form they travel in to
// the collector and take in the ledger (as LedgerRecord payloads).
#pragma once

#include <string>

#include "bpf/guard_abi.h"
#include "lib/status/status.h"

namespace latch::record {

// Canonical Cap'n Proto bytes of the DecisionEvent for `e`.
std::string EncodeDecisionEvent(const latch_decision_event& e);
// Back to the kernel's form; Corruption unless `bytes` is a canonical record.
Status DecodeDecisionEvent(const std::string& bytes, latch_decision_event* out);

}  // namespace latch::record
