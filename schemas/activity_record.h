// Activity records (bpf/activity_abi.h) as schemas/event.capnp ActivityEvent:
// the form they travel in to the collector and take in the ledger, and their
// JSON (the agent's JSON lines, the events query's detail).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "bpf/activity_abi.h"
#include "lib/status/status.h"

namespace latch::record {

// What takes the secrets out of a command line before it is recorded (the
// agent's ArgvRedactor, from configured patterns): the format needs only this.
class ArgsRedactor {
 public:
  virtual ~ArgsRedactor() = default;
  // Rewrites the secrets in `args` (argv, program first) in place; `path` is
  // the executed file. Returns whether anything was replaced.
  virtual bool Redact(std::string_view path, std::vector<std::string>* args) const = 0;
};

// Canonical ActivityEvent bytes for one record as the kernel wrote it.
// Corruption when the record's size, kind or lengths do not hold together
// (a layout mismatch between the programs and this binary). With a
// `redactor`, an exec record's arguments lose their secrets first (the
// record then says argsRedacted, and `*redacted` is set).
Status EncodeActivityEvent(std::string_view raw, std::string* out,
                           const ArgsRedactor* redactor = nullptr, bool* redacted = nullptr);

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

}  // namespace latch::record
