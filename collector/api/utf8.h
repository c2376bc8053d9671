// Whether text from outside (a query parameter, a JSON string, a path) is
// well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past
// U+10FFFF). The API refuses what is not, before any of it is used: JSON
// written from such bytes would be invalid, and nlohmann::json throws on it.
#pragma once

#include <string_view>

namespace latch::api {

bool IsValidUtf8(std::string_view text);

// At most `max_bytes` of valid UTF-8 `text`, cut before a character rather
// than inside one.
std::string_view TruncateUtf8(std::string_view text, size_t max_bytes);

}  // namespace latch::api
