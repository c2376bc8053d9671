// Test helper: reading CLI11's --help output (and our scripts' usage text).
#pragma once

#include <sstream>
#include <string>
#include <vector>

namespace latch::testing {

inline bool HasFlag(const std::string& help, const std::string& flag) {
  // CLI11 lists "--for TEXT", "-h,--help", "--json"; our scripts "  --dir DIR".
  for (size_t at = help.find(flag); at != std::string::npos; at = help.find(flag, at + 1)) {
    char before = at == 0 ? ' ' : help[at - 1];
    char after = at + flag.size() < help.size() ? help[at + flag.size()] : ' ';
    if ((before == ' ' || before == ',') && (after == ' ' || after == '\n' || after == ','))
      return true;
  }
  return false;
}

// Whether `help` (CLI11's) lists `name` under "Subcommands:".
inline bool HasSubcommand(const std::string& help, const std::string& name) {
  size_t at = help.find("\nSubcommands:\n");
  if (at == std::string::npos) return false;
  std::istringstream rest(help.substr(at + 14));
  for (std::string line; std::getline(rest, line);) {
    std::istringstream words(line);
    std::string first;
    words >> first;
    if (first == name) return true;
  }
  return false;
}

// The names CLI11's help lists under "Subcommands:".
inline std::vector<std::string> Subcommands(const std::string& help) {
  std::vector<std::string> names;
  size_t at = help.find("\nSubcommands:\n");
  if (at == std::string::npos) return names;
  std::istringstream rest(help.substr(at + 14));
  for (std::string line; std::getline(rest, line);) {
    if (line.rfind("  ", 0) != 0) break;
    std::istringstream words(line);
    std::string first;
    words >> first;
    if (!first.empty()) names.push_back(first);
  }
  return names;
}

}  // namespace latch::testing
