// README.md's Quickstart is what a newcomer types first, and docs/OPERATIONS.md's
// walk from packages to a fleet what an operator types next: every command shown
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

// The lines of the ```sh blocks between `heading` and the next "## ".
std::vector<std::string> SectionCommands(const std::string& doc, const std::string& heading) {
  size_t from = doc.find("\n" + heading + "\n");
  if (from == std::string::npos) return {};
  size_t to = doc.find("\n## ", from + 1);
  std::istringstream section(doc.substr(from, to - from));
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

// Checks one command of a documented ```sh block: scripts/ exist and take
// their flags; Latch's binaries have the subcommand and its flags; any other
// command must be one of `system` and be installed. Pipelines are checked
// command by command.
void CheckLine(const std::string& line, const std::set<std::string>& system) {
  SCOPED_TRACE(line);
  const std::string source = LATCH_SOURCE_DIR;
  const std::string bin = LATCH_BIN_DIR;
  const std::set<std::string> ours = {"latch-agent", "latch-collector", "latchctl", "latch-ledger"};
  std::vector<std::string> all = Words(line);
  std::vector<std::vector<std::string>> pipeline(1);
  for (const std::string& w : all) {
    if (w == "|") {
      pipeline.emplace_back();
    } else {
      pipeline.back().push_back(w);
    }
  }
  for (const std::vector<std::string>& words : pipeline) {
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
      continue;
    }
    if (system.count(command) != 0) {
      bool installed = false;
      for (const char* dir : {"/usr/bin/", "/bin/", "/usr/sbin/", "/sbin/"}) {
        installed |= ::access((dir + command).c_str(), X_OK) == 0;
      }
      EXPECT_TRUE(installed) << command << " is not installed here";
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
    size_t first_flag = i + 1;
    // A subcommand's own subcommand (`latch-collector token create`).
    if (first_flag < args.size() && args[first_flag].rfind("--", 0) != 0 &&
        HasSubcommand(out, args[first_flag])) {
      ASSERT_EQ(RunTool({binary, sub, args[first_flag], "--help"}, &out), 0)
          << name << " " << sub << " " << args[first_flag] << " --help";
      ++first_flag;
    }
    for (size_t j = first_flag; j < args.size(); ++j) {
      if (args[j].rfind("--", 0) == 0) {
        EXPECT_TRUE(HasFlag(out, args[j])) << name << " " << sub << " has no " << args[j];
      }
    }
  }
}

TEST(QuickstartTest, EveryCommandShownExistsAndTakesItsFlags) {
  std::vector<std::string> commands =
      SectionCommands(Slurp(std::string(LATCH_SOURCE_DIR) + "/README.md"), "## Quickstart");
  // Not vacuous: the two commands, and the ones to try the demo by hand.
  ASSERT_GE(commands.size(), 8u) << "the Quickstart section or its ```sh blocks are gone";
  for (const std::string& line : commands) CheckLine(line, {});
}

// docs/OPERATIONS.md's walk from packages to a collector and two hosts
// (issue 16): every command it shows exists and takes its flags; the few
// system commands it uses are known and installed.
TEST(QuickstartTest, TheTwoHostWalkthroughsCommandsExistAndTakeTheirFlags) {
  std::vector<std::string> commands =
      SectionCommands(Slurp(std::string(LATCH_SOURCE_DIR) + "/docs/OPERATIONS.md"),
                      "## A collector and two hosts, from packages");
  ASSERT_GE(commands.size(), 15u) << "the walkthrough or its ```sh blocks are gone";
  for (const std::string& line : commands) {
    CheckLine(line, {"apt-get", "cp", "chmod", "openssl", "tee", "systemctl"});
  }
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
  EXPECT_EQ(SectionCommands("x\n## Quickstart\n```sh\na\n```\n```\nb\n```\n## Next\n```sh\nc\n```",
                            "## Quickstart"),
            std::vector<std::string>{"a"});
}

}  // namespace
