// URL query strings as the API parses them (api::ParseQueryString): a
// refusal or a map of decoded, control-free, valid UTF-8 keys and values.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>

#include "collector/api/query_string.h"
#include "lib/text/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view query(reinterpret_cast<const char*>(data), size);
  std::map<std::string, std::string> out;
  std::string why;
  if (!latch::api::ParseQueryString(query, &out, &why)) {
    if (why.empty()) std::abort();  // a refusal names its reason
    return 0;
  }
  for (const auto& [k, v] : out) {
    if (!latch::text::IsValidUtf8(k) || !latch::text::IsValidUtf8(v)) std::abort();
    for (char c : k + v) {
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) std::abort();
    }
  }
  return 0;
}
