// Issue 13.9: scripts/demo runs as root and acts on what its directory holds
// (pid files, agent.toml, the PostgreSQL data). Another user must not be able
// to steer it: a directory, marker, pid file or config that is not root's
// alone, or a directory below one others can write, is refused before
// anything is stopped, killed or uninstalled.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "run_tool.h"

namespace {

namespace fs = std::filesystem;
using latch::testing::RunTool;

constexpr uid_t kOtherUser = 4242;

class DemoDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      if (std::getenv("CI") && std::string(std::getenv("CI")) == "true") {
        FAIL() << "needs root (chown) and must run under CI";
      }
      GTEST_SKIP() << "needs root";
    }
    // A process of the test's own, which a steered demo would kill.
    victim_ = ::fork();
    if (victim_ == 0) {
      ::pause();
      ::_exit(0);
    }
  }
  void TearDown() override {
    if (victim_ > 0) {
      ::kill(victim_, SIGKILL);  // our own child, by its id
      ::waitpid(victim_, nullptr, 0);
    }
    for (const auto& d : made_) fs::remove_all(d);
  }
  std::string MakeDir(const std::string& parent) {
    std::string tmpl = parent + "/latch-demo-dirtest-XXXXXX";
    EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
    made_.push_back(tmpl);
    return tmpl;
  }
  // What a previous demo run leaves, with a pid file naming the victim.
  void FillAsADemoDir(const std::string& dir) {
    std::ofstream(dir + "/.latch-demo");
    fs::create_directories(dir + "/run");
    std::ofstream(dir + "/run/latch-agent.pid") << victim_ << "\n";
    std::ofstream(dir + "/agent.toml") << "pin_dir = \"/sys/fs/bpf/not-this-demo\"\n";
  }
  int Demo(const std::string& dir, std::string* err) {
    return RunTool({"/bin/sh", "-c",
                    std::string(LATCH_SOURCE_DIR) + "/scripts/demo --no-build --bin " +
                        LATCH_BIN_DIR + " --dir " + dir + " --stop 2>&1"},
                   err, {{"LATCH_DEMO_CGROUP", "latch-demo-dirtest"}});
  }
  bool VictimAlive() { return ::waitpid(victim_, nullptr, WNOHANG) == 0; }

  pid_t victim_ = -1;
  std::vector<std::string> made_;
};

TEST_F(DemoDirTest, RefusesADirectoryOwnedByAnotherUser) {
  std::string dir = MakeDir("/var/lib");
  FillAsADemoDir(dir);
  ASSERT_EQ(::chown(dir.c_str(), kOtherUser, kOtherUser), 0);
  std::string out;
  EXPECT_EQ(Demo(dir, &out), 2) << out;
  EXPECT_NE(out.find("refusing --dir"), std::string::npos) << out;
  EXPECT_TRUE(VictimAlive());
  EXPECT_TRUE(fs::exists(dir + "/run/latch-agent.pid"));
}

TEST_F(DemoDirTest, RefusesADirectoryBelowAWorldWritableOne) {
  // Root's own directory, but in /var/tmp, where anyone could have made it.
  std::string dir = MakeDir("/var/tmp");
  FillAsADemoDir(dir);
  std::string out;
  EXPECT_EQ(Demo(dir, &out), 2) << out;
  EXPECT_NE(out.find("not root's alone"), std::string::npos) << out;
  EXPECT_TRUE(VictimAlive());
}

TEST_F(DemoDirTest, RefusesAPidFileOrConfigOfAnotherUser) {
  for (const char* planted : {"run/latch-agent.pid", "agent.toml", ".latch-demo"}) {
    std::string dir = MakeDir("/var/lib");
    FillAsADemoDir(dir);
    ASSERT_EQ(::chown((dir + "/" + planted).c_str(), kOtherUser, kOtherUser), 0);
    std::string out;
    EXPECT_EQ(Demo(dir, &out), 2) << planted << ": " << out;
    EXPECT_TRUE(VictimAlive()) << planted;
  }
  // World-writable, though root's: refused too.
  std::string dir = MakeDir("/var/lib");
  FillAsADemoDir(dir);
  ASSERT_EQ(::chmod((dir + "/run").c_str(), 0777), 0);
  std::string out;
  EXPECT_EQ(Demo(dir, &out), 2) << out;
  EXPECT_TRUE(VictimAlive());
}

TEST_F(DemoDirTest, RootsOwnDirectoryIsAccepted) {
  std::string dir = MakeDir("/var/lib");
  std::ofstream(dir + "/.latch-demo");
  std::string out;
  EXPECT_EQ(Demo(dir, &out), 0) << out;
  EXPECT_NE(out.find("stopped"), std::string::npos) << out;
}

}  // namespace
