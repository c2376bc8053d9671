// The content of entry i in crash tests: varying lengths, content tied to i.
#pragma once

#include <cstdint>
#include <string>

namespace latch::ledger {

inline std::string CrashEntry(uint64_t i) {
  return "entry-" + std::to_string(i) + "-" + std::string(i % 301, static_cast<char>('a' + i % 26));
}

}  // namespace latch::ledger
