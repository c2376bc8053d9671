// TOML as latch-collector reads it: its configuration file
// (ParseCollectorConfig) and the approval policy (Policy::Parse), which an
// operator's typo or a hostile file must never crash.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "collector/ingest/collector_config.h"
#include "collector/workflow/policy.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  latch::collector::CollectorConfig config;
  (void)latch::collector::ParseCollectorConfig(text, "fuzz.toml", &config);
  std::unique_ptr<latch::workflow::Policy> policy;
  (void)latch::workflow::Policy::Parse(text, "fuzz.toml", &policy);
  return 0;
}
