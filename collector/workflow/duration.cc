#include "collector/workflow/duration.h"

namespace latch::workflow {

namespace {
constexpr int64_t kSecond = 1'000'000'000;
constexpr int64_t kMax = int64_t{366} * 24 * 3600 * kSecond;
}  // namespace

Status ParseDuration(std::string_view text, int64_t* ns) {
  auto bad = [&] {
    return Status::InvalidArgument("'" + std::string(text) +
                                   "' is not a duration (like 90s, 30m, 4h, 2d or 1h30m)");
  };
  if (text.empty()) return bad();
  int64_t total = 0;
  size_t i = 0;
  while (i < text.size()) {
    int64_t n = 0;
    size_t digits = 0;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      n = n * 10 + (text[i] - '0');
      if (n > kMax / kSecond) return bad();
      ++i;
      ++digits;
    }
    if (digits == 0 || i == text.size()) return bad();
    int64_t unit = 0;
    switch (text[i]) {
      case 's':
        unit = kSecond;
        break;
      case 'm':
        unit = 60 * kSecond;
        break;
      case 'h':
        unit = 3600 * kSecond;
        break;
      case 'd':
        unit = 86400 * kSecond;
        break;
      default:
        return bad();
    }
    ++i;
    // Checked before multiplying: 213504d is 1.8e19 ns, past int64_t, and
    // once wrapped round to a 25-minute request (issue 14).
    if (n > (kMax - total) / unit) return bad();
    total += n * unit;
  }
  if (total == 0) return bad();
  *ns = total;
  return Status::Ok();
}

std::string FormatDuration(int64_t ns) {
  int64_t s = ns / kSecond;
  std::string out;
  for (auto [unit, name] :
       {std::pair<int64_t, char>{86400, 'd'}, {3600, 'h'}, {60, 'm'}, {1, 's'}}) {
    if (s >= unit) {
      out += std::to_string(s / unit) + name;
      s %= unit;
    }
  }
  return out.empty() ? "0s" : out;
}

}  // namespace latch::workflow
