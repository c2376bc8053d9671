#include "lib/text/utf8.h"

namespace latch::text {

size_t DecodeUtf8(std::string_view text, size_t i, uint32_t* cp) {
  if (i >= text.size()) return 0;
  uint8_t c = static_cast<uint8_t>(text[i]);
  size_t n;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if ((c & 0xe0) == 0xc0) {
    n = 2;
    *cp = c & 0x1f;
  } else if ((c & 0xf0) == 0xe0) {
    n = 3;
    *cp = c & 0x0f;
  } else if ((c & 0xf8) == 0xf0) {
    n = 4;
    *cp = c & 0x07;
  } else {
    return 0;  // a continuation byte first, or 0xf8..0xff
  }
  if (text.size() - i < n) return 0;  // cut short
  for (size_t k = 1; k < n; ++k) {
    uint8_t d = static_cast<uint8_t>(text[i + k]);
    if ((d & 0xc0) != 0x80) return 0;
    *cp = (*cp << 6) | (d & 0x3f);
  }
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (*cp < kMin[n] || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff)) return 0;
  return n;
}

bool IsValidUtf8(std::string_view text) {
  uint32_t cp;
  for (size_t i = 0; i < text.size();) {
    size_t n = DecodeUtf8(text, i, &cp);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string ReplaceInvalidUtf8(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  uint32_t cp;
  for (size_t i = 0; i < text.size();) {
    size_t n = DecodeUtf8(text, i, &cp);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD
      ++i;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

bool IsControl(uint32_t cp) { return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f); }

bool IsBidiControl(uint32_t cp) {
  return cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x202a && cp <= 0x202e) ||
         (cp >= 0x2066 && cp <= 0x2069);
}

std::string_view TruncateUtf8(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  size_t n = max_bytes;
  while (n > 0 && (static_cast<uint8_t>(text[n]) & 0xc0) == 0x80) --n;  // a continuation byte
  return text.substr(0, n);
}

}  // namespace latch::text
