// Structured, levelled log lines for the daemons (latch-agent, latch-collector).
//
// One entry is one line: a UTC timestamp, the level, the program, a short
// message saying what happened, then key=value fields (logfmt), e.g.
//
//   2026-11-29T06:18:35.826Z level=error prog=latch-agent msg="grant set refused"
//       reason="signed by another key" hint="check grant_key in [collector]"
//
// or the same as one JSON object per line (--log-format json). Errors carry a
// `hint` field saying what to do where there is something to do. The levels
// are debug < info < warn < error < alert; alert is for what an operator must
// look at now (a rolled-back ledger, capture that cannot run), and is never
// filtered out.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>

#include "lib/sync/mutex.h"

namespace latch::logging {

enum class Level : uint8_t { kDebug, kInfo, kWarn, kError, kAlert };
enum class Format : uint8_t { kText, kJson };

std::optional<Level> ParseLevel(std::string_view name);    // debug, info, warn, error
std::optional<Format> ParseFormat(std::string_view name);  // text, json
std::string_view LevelName(Level level);

// One key=value field. Numbers stay numbers in JSON.
struct Field {
  Field(std::string_view k, std::string_view v) : key(k), text(v) {}
  Field(std::string_view k, const std::string& v) : key(k), text(v) {}
  Field(std::string_view k, const char* v) : key(k), text(v) {}
  template <typename N>
  requires std::is_arithmetic_v<N> Field(std::string_view k, N v)
      : key(k), text(std::to_string(v)), number(true) {}

  std::string_view key;
  std::string text;
  bool number = false;
};
using Fields = std::initializer_list<Field>;

// Writes entries to one stream, whole lines under a lock (the agent logs from
// its loop and from capture threads).
class Logger {
 public:
  Logger(std::string program, std::ostream* out) : program_(std::move(program)), out_(out) {}

  // Settings are made before other threads log (in main()).
  void set_program(std::string program) { program_ = std::move(program); }
  void set_level(Level level) { level_ = level; }
  void set_format(Format format) { format_ = format; }
  bool enabled(Level level) const { return level >= level_ || level == Level::kAlert; }

  void Write(Level level, std::string_view msg, Fields fields = {});
  void Debug(std::string_view msg, Fields fields = {}) { Write(Level::kDebug, msg, fields); }
  void Info(std::string_view msg, Fields fields = {}) { Write(Level::kInfo, msg, fields); }
  void Warn(std::string_view msg, Fields fields = {}) { Write(Level::kWarn, msg, fields); }
  void Error(std::string_view msg, Fields fields = {}) { Write(Level::kError, msg, fields); }
  void Alert(std::string_view msg, Fields fields = {}) { Write(Level::kAlert, msg, fields); }

 private:
  std::string program_;
  Mutex mu_;  // one line at a time: lines from threads never interleave
  std::ostream* out_ LATCH_PT_GUARDED_BY(mu_);
  Level level_ = Level::kInfo;
  Format format_ = Format::kText;
};

// The process's logger: standard error, program "latch". A daemon's main()
// names it and applies --log-level and --log-format before anything logs.
Logger& Default();
void ConfigureDefault(std::string program, Level level, Format format);

}  // namespace latch::logging
