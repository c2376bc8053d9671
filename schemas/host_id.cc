#include "schemas/host_id.h"

namespace latch::schema {

namespace {
bool IsAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
}  // namespace

bool IsHostId(std::string_view id) {
  if (id.empty() || id.size() > 253 || !IsAlnum(id[0])) return false;
  for (char c : id) {
    if (!IsAlnum(c) && c != '.' && c != '_' && c != '-') return false;
  }
  return true;
}

}  // namespace latch::schema
