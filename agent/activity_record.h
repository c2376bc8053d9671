// Activity records (bpf/activity_abi.h) as schemas/event.capnp ActivityEvent:
// the form they travel in to the collector and take in the ledger, and their
// JSON (the agent's JSON lines, the events query's detail).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "activity_abi.h"
#include "tlog/status.h"

namespace latch::agent {

class ArgvRedactor;

// Canonical ActivityEvent bytes for one record as the kernel wrote it.
// Corruption when the record's size, kind or lengths do not hold together
// (a layout mismatch between the programs and this binary). With a
// `redactor`, an exec record's arguments lose their secrets first (the
// record then says argsRedacted, and `*redacted` is set).
Status EncodeActivityEvent(std::string_view raw, std::string* out,
                           const ArgvRedactor* redactor = nullptr, bool* redacted = nullptr);

// "exec", "exit", "connect", "open", "credentials", "throttle".
const char* ActivityKindName(uint32_t kind);

// What the events index and the query need of an encoded ActivityEvent.
struct ActivitySummary {
  std::string kind;  // as ActivityKindName
  uint32_t uid = 0;
  uint64_t grant_id = 0;
};
// Decodes an encoded ActivityEvent; `detail` (optional) gets every field as JSON.
Status ViewActivityEvent(std::string_view canonical, ActivitySummary* out,
                         nlohmann::json* detail = nullptr);

}  // namespace latch::agent
