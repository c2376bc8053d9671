// UTF-8 as RFC 3629 has it (no overlong forms, no surrogates, nothing past
// U+10FFFF), for text that comes from outside: the API refuses what is not
// well formed before any of it is used (JSON written from such bytes would be
// invalid, and nlohmann::json throws on it), and latchctl and the workflow
// look at text code point by code point.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace latch::text {

// The length of the well-formed sequence at text[i] (1 to 4) with its code
// point in *cp, or 0 if there is none there.
size_t DecodeUtf8(std::string_view text, size_t i, uint32_t* cp);

bool IsValidUtf8(std::string_view text);
// `text` with each byte that is not part of a well-formed sequence replaced
// by U+FFFD: for showing bytes from outside that were never checked.
std::string ReplaceInvalidUtf8(std::string_view text);

// C0 and C1 control characters and DEL: what a terminal obeys.
bool IsControl(uint32_t cp);
// Bidirectional marks, embeddings, overrides and isolates: what reorders the
// text around them on screen.
bool IsBidiControl(uint32_t cp);

// At most `max_bytes` of valid UTF-8 `text`, cut before a character rather
// than inside one.
std::string_view TruncateUtf8(std::string_view text, size_t max_bytes);

}  // namespace latch::text
