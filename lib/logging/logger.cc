#include "lib/logging/logger.h"

#include <chrono>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

namespace latch::logging {
namespace {

std::string Timestamp() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[80];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

// logfmt: bare when the value has no space, quote, '=' or control character;
// otherwise quoted with \" \\ \n \t escaped, so one entry stays one line.
void AppendValue(std::string* line, std::string_view v) {
  bool bare = !v.empty();
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      bare = false;
      break;
    }
  }
  if (bare) {
    line->append(v);
    return;
  }
  line->push_back('"');
  for (char c : v) {
    switch (c) {
      case '"':
        line->append("\\\"");
        break;
      case '\\':
        line->append("\\\\");
        break;
      case '\n':
        line->append("\\n");
        break;
      case '\t':
        line->append("\\t");
        break;
      case '\r':
        line->append("\\r");
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof(esc), "\\x%02x", static_cast<unsigned char>(c));
          line->append(esc);
        } else {
          line->push_back(c);
        }
    }
  }
  line->push_back('"');
}

}  // namespace

std::optional<Level> ParseLevel(std::string_view name) {
  if (name == "debug") return Level::kDebug;
  if (name == "info") return Level::kInfo;
  if (name == "warn" || name == "warning") return Level::kWarn;
  if (name == "error") return Level::kError;
  return std::nullopt;
}

std::optional<Format> ParseFormat(std::string_view name) {
  if (name == "text") return Format::kText;
  if (name == "json") return Format::kJson;
  return std::nullopt;
}

std::string_view LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
    case Level::kAlert:
      return "alert";
  }
  return "unknown";
}

void Logger::Write(Level level, std::string_view msg, Fields fields) {
  if (!enabled(level)) return;
  std::string line;
  if (format_ == Format::kJson) {
    // Ordered: ts, level, prog and msg lead, as in the text form.
    nlohmann::ordered_json j = {
        {"ts", Timestamp()}, {"level", LevelName(level)}, {"prog", program_}, {"msg", msg}};
    for (const Field& f : fields) {
      std::string key(f.key);
      if (f.number) {
        j[key] = nlohmann::ordered_json::parse(f.text, nullptr, /*allow_exceptions=*/false);
        if (j[key].is_discarded()) j[key] = f.text;
      } else {
        j[key] = f.text;
      }
    }
    // Bytes that are not UTF-8 (a path, a peer's text) are replaced, not fatal.
    line = j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  } else {
    line = Timestamp();
    line += " level=";
    line += LevelName(level);
    line += " prog=";
    AppendValue(&line, program_);
    line += " msg=";
    AppendValue(&line, msg);
    for (const Field& f : fields) {
      line.push_back(' ');
      line.append(f.key);
      line.push_back('=');
      AppendValue(&line, f.text);
    }
  }
  line.push_back('\n');
  MutexLock lock(mu_);
  out_->write(line.data(), static_cast<std::streamsize>(line.size()));
  out_->flush();
}

Logger& Default() {
  static Logger logger("latch", &std::cerr);
  return logger;
}

void ConfigureDefault(std::string program, Level level, Format format) {
  Logger& d = Default();
  d.set_program(std::move(program));
  d.set_level(level);
  d.set_format(format);
}

}  // namespace latch::logging
