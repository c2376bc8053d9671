#include "collector/api/query_string.h"

#include "lib/text/utf8.h"

namespace latch::api {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool Decode(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
    out->push_back(c);
  }
  return true;
}

}  // namespace

bool ParseQueryString(std::string_view query, std::map<std::string, std::string>* out,
                      std::string* why) {
  out->clear();
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    std::string key, value;
    if (!Decode(pair.substr(0, eq), &key) ||
        (eq != std::string_view::npos && !Decode(pair.substr(eq + 1), &value))) {
      *why = "malformed query parameter '" + std::string(pair.substr(0, 64)) + "'";
      return false;
    }
    if (key.empty()) {
      *why = "a query parameter has no name";
      return false;
    }
    if (!text::IsValidUtf8(key) || !text::IsValidUtf8(value)) {
      *why = "query parameters must be UTF-8";
      return false;
    }
    if (!out->emplace(key, value).second) {
      *why = "query parameter '" + key + "' is given twice";
      return false;
    }
  }
  return true;
}

}  // namespace latch::api
