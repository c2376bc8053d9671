// The daemons' log lines: one entry per line, levels filtered, values quoted
// so that an entry cannot be split or forged by what it carries.
#include "lib/logging/logger.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

namespace latch::logging {
namespace {

TEST(LoggerTest, TextEntryIsOneLogfmtLine) {
  std::ostringstream out;
  Logger log("latch-agent", &out);
  log.Info("guard attached", {{"cgroup", "/sys/fs/cgroup"}, {"resources", 3}});
  std::string line = out.str();
  EXPECT_TRUE(std::regex_match(
      line, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=info prog=latch-agent )"
                       R"(msg="guard attached" cgroup=/sys/fs/cgroup resources=3\n)")))
      << line;
}

TEST(LoggerTest, ValuesAreQuotedAndEscapedSoAnEntryStaysOneLine) {
  std::ostringstream out;
  Logger log("p", &out);
  log.Warn("m", {{"a", "two words"},
                 {"b", "say \"hi\"\nlevel=alert msg=forged"},
                 {"c", ""},
                 {"d", "x=y"},
                 {"e", std::string("nul\x01")}});
  std::string line = out.str();
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1) << line;
  EXPECT_NE(line.find(R"(a="two words")"), std::string::npos) << line;
  EXPECT_NE(line.find(R"(b="say \"hi\"\nlevel=alert msg=forged")"), std::string::npos) << line;
  EXPECT_NE(line.find(R"(c="")"), std::string::npos) << line;
  EXPECT_NE(line.find(R"(d="x=y")"), std::string::npos) << line;
  EXPECT_NE(line.find(R"(e="nul\x01")"), std::string::npos) << line;
}

TEST(LoggerTest, LevelsBelowTheSetOneAreDroppedButAlertsNever) {
  std::ostringstream out;
  Logger log("p", &out);
  log.Debug("hidden at the default level");
  EXPECT_EQ(out.str(), "");
  log.set_level(Level::kError);
  log.Info("hidden");
  log.Warn("hidden");
  EXPECT_EQ(out.str(), "");
  log.Error("shown");
  log.Alert("shown too");
  EXPECT_NE(out.str().find("level=error"), std::string::npos);
  EXPECT_NE(out.str().find("level=alert"), std::string::npos);
  log.set_level(Level::kDebug);
  log.Debug("now shown");
  EXPECT_NE(out.str().find("level=debug"), std::string::npos);
}

TEST(LoggerTest, JsonEntryIsOneObjectPerLineWithNumbersAsNumbers) {
  std::ostringstream out;
  Logger log("latch-collector", &out);
  log.set_format(Format::kJson);
  log.Error("cannot serve", {{"error", "bad\nthing"}, {"port", 8443}, {"hint", "fix it"}});
  log.Info("second");
  std::istringstream lines(out.str());
  std::string first, second;
  ASSERT_TRUE(std::getline(lines, first));
  ASSERT_TRUE(std::getline(lines, second));
  auto j = nlohmann::json::parse(first);
  EXPECT_EQ(j["level"], "error");
  EXPECT_EQ(j["prog"], "latch-collector");
  EXPECT_EQ(j["msg"], "cannot serve");
  EXPECT_EQ(j["error"], "bad\nthing");
  EXPECT_EQ(j["port"], 8443);
  EXPECT_EQ(j["hint"], "fix it");
  EXPECT_TRUE(j["ts"].is_string());
  EXPECT_EQ(nlohmann::json::parse(second)["msg"], "second");
}

TEST(LoggerTest, ParsesTheNamesTheFlagsAccept) {
  EXPECT_EQ(ParseLevel("debug"), Level::kDebug);
  EXPECT_EQ(ParseLevel("warn"), Level::kWarn);
  EXPECT_EQ(ParseLevel("error"), Level::kError);
  EXPECT_EQ(ParseLevel("loud"), std::nullopt);
  EXPECT_EQ(ParseFormat("json"), Format::kJson);
  EXPECT_EQ(ParseFormat("xml"), std::nullopt);
}

}  // namespace
}  // namespace latch::logging
