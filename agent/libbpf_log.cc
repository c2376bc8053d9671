#include "agent/libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <string>

#include "lib/logging/logger.h"

namespace latch::agent {
namespace {

int LibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  logging::Logger& log = logging::Default();
  logging::Level ours = level == LIBBPF_WARN ? logging::Level::kWarn : logging::Level::kDebug;
  if (!log.enabled(ours)) return 0;
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  if (n <= 0) return n;
  std::string text(static_cast<size_t>(n) + 1, '\0');
  std::vsnprintf(text.data(), text.size(), format, args);
  text.resize(static_cast<size_t>(n));
  while (!text.empty() && text.back() == '\n') text.pop_back();
  log.Write(ours, "libbpf", {{"text", text}});
  return n;
}

}  // namespace

void RouteLibbpfMessagesToLog() { libbpf_set_print(LibbpfPrint); }

}  // namespace latch::agent
