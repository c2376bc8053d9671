#include "collector/tools/terminal_text.h"

#include <cstdint>
#include <cstdio>

#include "lib/text/utf8.h"

namespace latch::tools {

std::string TerminalText(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  char buf[16];
  for (size_t i = 0; i < text.size();) {
    uint32_t cp = 0;
    size_t n = text::DecodeUtf8(text, i, &cp);
    if (n == 0) {
      std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<uint8_t>(text[i]));
      out += buf;
      ++i;
      continue;
    }
    if (text::IsControl(cp)) {
      std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned>(cp));
      out += buf;
    } else if (text::IsBidiControl(cp)) {
      std::snprintf(buf, sizeof(buf), "\\u{%04x}", static_cast<unsigned>(cp));
      out += buf;
    } else if (cp == '\\') {
      out += "\\\\";  // so that an escape in the output always means one was made
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  return out;
}

}  // namespace latch::tools
