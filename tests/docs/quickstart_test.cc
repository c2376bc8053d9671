// README.md's Quickstart is what a newcomer types first: every command shown
// there must exist, and every flag it passes must be one that command takes.
// Commands are read from the section's ```sh blocks: scripts/ are checked to
// be there and executable (and scripts/demo's flags against its --help);
// Latch's binaries by their subcommand in `--help` and the flags in that
// subcommand's `--help`. A command of any other kind fails the test, so a new
// line in the Quickstart is checked or noticed.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli_help.h"
#include "run_tool.h"

namespace {

using latch::testing::HasFlag;
using latch::testing::HasSubcommand;
using latch::testing::RunTool;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The lines of the ```sh blocks between "## Quickstart" and the next "## ".
std::vector<std::string> QuickstartCommands(const std::string& readme) {
  size_t from = readme.find("\n## Quickstart\n");
  if (from == std::string::npos) return {};
  size_t to = readme.find("\n## ", from + 1);
  std::istringstream section(readme.substr(from, to - from));
  std::vector<std::string> commands;
  bool in_block = false;
  for (std::string line; std::getline(section, line);) {
    if (line.rfind("```", 0) == 0) {
      in_block = !in_block && line == "```sh";
      continue;
    }
    if (in_block && !line.empty()) commands.push_back(line);
  }
  return commands;
}

// Shell words, with double quotes grouping; a '#' starting a word ends the line.
std::vector<std::string> Words(const std::string& line) {
  std::vector<std::string> words;
  std::string word;
  bool quoted = false, in_word = false;
  for (char c : line) {
    if (c == '"') {
      quoted = !quoted;
      in_word = true;
    } else if (!quoted && (c == ' ' || c == '\t')) {
      if (in_word) words.push_back(word);
      word.clear();
      in_word = false;
    } else if (!quoted && c == '#' && !in_word) {
      break;
    } else {
      word.push_back(c);
      in_word = true;
    }
  }
  if (in_word) words.push_back(word);
  return words;
}

TEST(QuickstartTest, EveryCommandShownExistsAndTakesItsFlags) {
  const std::string source = LATCH_SOURCE_DIR;
  const std::string bin = LATCH_BIN_DIR;
  const std::set<std::string> ours = {"latch-agent", "latch-collector", "latchctl", "latch-ledger"};
  std::vector<std::string> commands = QuickstartCommands(Slurp(source + "/README.md"));
  // Not vacuous: the two commands, and the ones to try the demo by hand.
  ASSERT_GE(commands.size(), 8u) << "the Quickstart section or its ```sh blocks are gone";
  size_t checked = 0;
  for (const std::string& line : commands) {
    SCOPED_TRACE(line);
    std::vector<std::string> words = Words(line);
    size_t at = 0;
    while (at < words.size() && words[at].find('=') != std::string::npos) ++at;  // VAR=value
    ASSERT_LT(at, words.size()) << "no command on the line";
    const std::string& command = words[at];
    std::vector<std::string> args(words.begin() + static_cast<long>(at) + 1, words.end());
    std::string out;
    if (command.rfind("scripts/", 0) == 0) {
      std::string path = source + "/" + command;
      ASSERT_EQ(::access(path.c_str(), X_OK), 0) << path << " is missing or not executable";
      if (!args.empty()) {
        ASSERT_EQ(RunTool({path, "--help"}, &out), 0) << command << " --help failed";
        for (const std::string& a : args) {
          if (a.rfind("--", 0) == 0) {
            EXPECT_TRUE(HasFlag(out, a)) << command << " has no " << a;
          }
        }
      }
      ++checked;
      continue;
    }
    std::string name = command.substr(command.rfind('/') + 1);
    ASSERT_TRUE(ours.count(name) != 0) << "'" << command << "' is not a command this test knows";
    ASSERT_TRUE(command == name || command == "build/bin/" + name) << command;
    const std::string binary = bin + "/" + name;
    std::string top;
    ASSERT_EQ(RunTool({binary, "--help"}, &top), 0) << binary << " --help failed";
    // Flags before the subcommand are the program's; the first other word is
    // the subcommand, and the flags after it are its own.
    size_t i = 0;
    for (; i < args.size() && args[i].rfind("--", 0) == 0; ++i) {
      EXPECT_TRUE(HasFlag(top, args[i])) << name << " has no " << args[i];
    }
    ASSERT_LT(i, args.size()) << "no subcommand";
    const std::string sub = args[i];
    ASSERT_TRUE(HasSubcommand(top, sub)) << name << " has no subcommand " << sub;
    ASSERT_EQ(RunTool({binary, sub, "--help"}, &out), 0) << name << " " << sub << " --help";
    for (size_t j = i + 1; j < args.size(); ++j) {
      if (args[j].rfind("--", 0) == 0) {
        EXPECT_TRUE(HasFlag(out, args[j])) << name << " " << sub << " has no " << args[j];
      }
    }
    ++checked;
  }
  EXPECT_EQ(checked, commands.size());
}

// The checker itself: a subcommand or flag that does not exist is caught.
TEST(QuickstartTest, TheCheckCatchesWhatDoesNotExist) {
  std::string help;
  ASSERT_EQ(RunTool({std::string(LATCH_BIN_DIR) + "/latchctl", "--help"}, &help), 0);
  EXPECT_TRUE(HasSubcommand(help, "request"));
  EXPECT_FALSE(HasSubcommand(help, "requisition"));
  std::string sub;
  ASSERT_EQ(RunTool({std::string(LATCH_BIN_DIR) + "/latchctl", "request", "--help"}, &sub), 0);
  EXPECT_TRUE(HasFlag(sub, "--for"));
  EXPECT_FALSE(HasFlag(sub, "--fo"));
  EXPECT_FALSE(HasFlag(sub, "--forever"));
  EXPECT_EQ(Words("A=1 b \"c d\" # e"), (std::vector<std::string>{"A=1", "b", "c d"}));
  EXPECT_EQ(
      QuickstartCommands("x\n## Quickstart\n```sh\na\n```\n```\nb\n```\n## Next\n```sh\nc\n```"),
      std::vector<std::string>{"a"});
}

}  // namespace
