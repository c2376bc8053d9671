// Decision events as schemas/event.capnp records: the form they travel in to
// the collector and take in the ledger (as LedgerRecord payloads).
#pragma once

#include <string>
#include <string_view>

#include "bpf/guard_abi.h"
#include "lib/status/status.h"

namespace latch::record {

// Canonical Cap'n Proto bytes of the DecisionEvent for `e`; `identity`: who
// holds its uid or cgroup on the host, as the collector's policy names them.
std::string EncodeDecisionEvent(const latch_decision_event& e, std::string_view identity = {});
// Back to the kernel's form; Corruption unless `bytes` is a canonical record.
// *identity (if given): the identity the agent named, as sent (unchecked).
Status DecodeDecisionEvent(const std::string& bytes, latch_decision_event* out,
                           std::string* identity = nullptr);

}  // namespace latch::record
