#include "agent/libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace latch::agent {
namespace {

int LibbpfPrint(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG && !getenv("LATCH_LIBBPF_DEBUG")) return 0;
  if (level == LIBBPF_INFO && !getenv("LATCH_LIBBPF_DEBUG")) return 0;
  std::fputs("libbpf: ", stderr);
  return std::vfprintf(stderr, format, args);
}

}  // namespace

void RouteLibbpfWarningsToStderr() { libbpf_set_print(LibbpfPrint); }

}  // namespace latch::agent
