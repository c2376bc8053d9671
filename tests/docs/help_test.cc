// Every binary and every subcommand answers --help with what it does and an
// example, and exits 0.
#include <gtest/gtest.h>

#include <string>

#include "cli_help.h"
#include "run_tool.h"

namespace {

using latch::testing::RunTool;
using latch::testing::Subcommands;

class HelpTest : public ::testing::TestWithParam<const char*> {};

TEST_P(HelpTest, EveryCommandHasHelpWithAnExample) {
  const std::string binary = std::string(LATCH_BIN_DIR) + "/" + GetParam();
  std::string top;
  ASSERT_EQ(RunTool({binary, "--help"}, &top), 0) << binary;
  EXPECT_NE(top.find("Example"), std::string::npos) << top;
  std::vector<std::string> subs = Subcommands(top);
  // latch-witness has two (key, state); the others more.
  EXPECT_GE(subs.size(), std::string(GetParam()) == "latch-witness" ? 2u : 3u) << top;
  for (const std::string& sub : subs) {
    std::string out;
    ASSERT_EQ(RunTool({binary, sub, "--help"}, &out), 0) << GetParam() << " " << sub;
    EXPECT_NE(out.find("Usage:"), std::string::npos) << GetParam() << " " << sub << ":\n" << out;
    EXPECT_NE(out.find("Example"), std::string::npos) << GetParam() << " " << sub << ":\n" << out;
  }
}

INSTANTIATE_TEST_SUITE_P(Binaries, HelpTest,
                         ::testing::Values("latch-agent", "latch-collector", "latchctl",
                                           "latch-ledger", "latch-witness"),
                         [](const auto& param_info) {
                           std::string name = param_info.param;
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

}  // namespace
