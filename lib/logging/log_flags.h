// The daemons' --log-level and --log-format flags (CLI11), and applying them
// to the process's logger. Header-only, so latch_logging needs no CLI11.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "lib/logging/logger.h"

namespace latch::logging {

struct LogFlags {
  std::string level = "info";
  std::string format = "text";

  void AddTo(CLI::App& app) {
    app.add_option("--log-level", level, "debug, info, warn or error (default info)")
        ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
    app.add_option("--log-format", format,
                   "text (timestamp, level=, msg=, key=value fields) or json (one object per line)")
        ->check(CLI::IsMember({"text", "json"}));
  }
  // After parsing (the checks above make both names valid).
  void Apply(std::string program) const {
    ConfigureDefault(std::move(program), ParseLevel(level).value_or(Level::kInfo),
                     ParseFormat(format).value_or(Format::kText));
  }
};

}  // namespace latch::logging
