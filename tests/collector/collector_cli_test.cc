// `latch-collector keys` as an operator runs it (the binary, in a directory
// of the test's own): while the collector runs, and as root on a data
// directory the service user owns.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "collector/ingest/collector_server.h"
#include "kernel_sandbox.h"
#include "run_tool.h"
#include "temp_dir.h"

namespace latch::collector {
namespace {

class CollectorCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config_path_ = dir_ / "collector.toml";
    std::ofstream(config_path_) << "data_dir = \"" << (dir_ / "data")
                                << "\"\norigin = \"cli.example/log\"\n"
                                << "endpoints = [\"inproc://cli-test\"]\n";
  }
  int Keys(std::string* out) {
    return testing::RunTool({LATCH_COLLECTOR_BIN, "keys", "--config", config_path_}, out);
  }
  ledger::TempDir dir_;
  std::string config_path_;
};

// Issue 16: `latch-collector keys` failed while the collector ran ("open
// for writing by another process"); it reads the keys without that lock.
TEST_F(CollectorCliTest, KeysArePrintedWhileTheCollectorRuns) {
  std::string before;
  ASSERT_EQ(Keys(&before), 0) << before;  // made on first use
  EXPECT_NE(before.find("curve_public_key = \""), std::string::npos) << before;
  EXPECT_NE(before.find("grant_key = \""), std::string::npos) << before;
  EXPECT_NE(before.find("ledger_key = \""), std::string::npos) << before;
  CollectorConfig config;
  ASSERT_TRUE(LoadCollectorConfig(config_path_, &config).ok());
  std::unique_ptr<CollectorServer> server;
  ASSERT_TRUE(CollectorServer::Open(config, &server).ok());
  Status run_status;
  std::thread run([&] { run_status = server->Run(); });
  std::string during;
  EXPECT_EQ(Keys(&during), 0) << during;
  EXPECT_EQ(during, before);
  EXPECT_EQ(server->curve_public_key(),
            before.substr(before.find('"') + 1,
                          before.find('"', before.find('"') + 1) - before.find('"') - 1));
  server->Stop();
  run.join();
  EXPECT_TRUE(run_status.ok()) << run_status.ToString();
}

// Issue 16: run as root on a data directory the service user owns,
// `latch-collector keys` left root-owned keys there, and the service then
// failed with "creating .../curve.key: File exists". Everything it makes
// belongs to the directory's owner.
TEST_F(CollectorCliTest, RunAsRootItLeavesNothingRootOwned) {
  LATCH_SKIP_UNLESS_KERNEL_TEST_CAN_RUN();  // root: to own files as another user
  const uid_t service = 65534;              // nobody
  ASSERT_EQ(::mkdir((dir_ / "data").c_str(), 0700), 0);
  ASSERT_EQ(::chown((dir_ / "data").c_str(), service, service), 0);
  std::string out;
  ASSERT_EQ(Keys(&out), 0) << out;
  size_t seen = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir_ / "data")) {
    struct stat st {};
    ASSERT_EQ(::lstat(e.path().c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, service) << e.path();
    ++seen;
  }
  EXPECT_GE(seen, 4u);  // curve.key, grant.key, grant.vkey, ledger/...
}

}  // namespace
}  // namespace latch::collector
