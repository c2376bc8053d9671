// Join tokens as `latch-agent enrol` reads them from an operator's paste
// (any bytes): refused or decoded, never a crash; a token that decodes
// encodes back to exactly the text given (one spelling per token), and its
// pin is well formed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "schemas/host_id.h"
#include "schemas/join_token.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace latch::schema;
  std::string input(reinterpret_cast<const char*>(data), size);
  (void)IsHostId(input);
  JoinToken token;
  if (!DecodeJoinToken(input, &token).ok()) return 0;
  if (EncodeJoinToken(token) != input) std::abort();
  if (CurveKeyPin(token.collector_key).size() != 7 + 64) std::abort();
  if (CurveKeyPin(CurveKeyZ85(token.collector_key)) != CurveKeyPin(token.collector_key)) {
    std::abort();
  }
  return 0;
}
