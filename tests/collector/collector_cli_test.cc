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

// Issue 17, bad days with [storage] postgres, as an operator meets them: no
// key yet, no database, a setting left empty. Each is one line that names
// what to fix; nothing starts half-way.
TEST_F(CollectorCliTest, PostgresStorageThatCannotWorkSaysWhyInOneLine) {
  const std::string key = dir_ / "ledger.key";
  std::ofstream(config_path_, std::ios::app)
      << "[storage]\npostgres = \"host=" << (dir_ / "nobody") << " port=1 connect_timeout=2\"\n"
      << "key = \"" << key << "\"\n";
  std::string out;
  // Serving without the key: names the file and the command that makes it.
  EXPECT_EQ(testing::RunTool({LATCH_COLLECTOR_BIN, "--config", config_path_}, &out, {}, true), 1);
  EXPECT_NE(out.find("no ledger key at " + key), std::string::npos) << out;
  EXPECT_NE(out.find("latch-collector storage init"), std::string::npos) << out;
  // storage init with nobody there: makes the key, then one line naming the setting.
  EXPECT_EQ(testing::RunTool({LATCH_COLLECTOR_BIN, "storage", "init", "--config", config_path_},
                             &out, {}, true),
            1);
  EXPECT_NE(
      out.find("latch-collector: I/O error: [storage] postgres: cannot connect to PostgreSQL"),
      std::string::npos)
      << out;
  EXPECT_TRUE(std::filesystem::exists(key));
  struct stat st {};
  ASSERT_EQ(::stat(key.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Serving with the key but no database: the same line, and no start.
  EXPECT_EQ(testing::RunTool({LATCH_COLLECTOR_BIN, "--config", config_path_}, &out, {}, true), 1);
  EXPECT_NE(out.find("[storage] postgres: cannot connect to PostgreSQL"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "data/ledger")) << "made a file ledger instead";
  // Settings: an empty connection string, an unknown key, a key of another origin.
  const std::pair<const char*, const char*> bad_settings[] = {
      {"[storage]\npostgres = \"\"\n", "storage postgres must be a connection string"},
      {"[storage]\npostgres = \"x\"\nurl = \"y\"\n", "unknown setting 'url'"},
      {"[storage]\nkey = \"/k\"\n", "missing setting 'postgres'"}};
  for (const auto& [bad, why] : bad_settings) {
    std::ofstream(config_path_) << "data_dir = \"" << (dir_ / "data")
                                << "\"\norigin = \"cli.example/log\"\n"
                                << bad;
    EXPECT_EQ(
        testing::RunTool({LATCH_COLLECTOR_BIN, "keys", "--config", config_path_}, &out, {}, true),
        1)
        << bad;
    EXPECT_NE(out.find(why), std::string::npos) << bad << ": " << out;
    EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  }
  std::ofstream(config_path_) << "data_dir = \"" << (dir_ / "data")
                              << "\"\norigin = \"other.example/log\"\n[storage]\npostgres = \"x\"\n"
                              << "key = \"" << key << "\"\n";
  EXPECT_EQ(
      testing::RunTool({LATCH_COLLECTOR_BIN, "keys", "--config", config_path_}, &out, {}, true), 1);
  EXPECT_NE(out.find("signs for 'cli.example/log'"), std::string::npos) << out;
}

}  // namespace
}  // namespace latch::collector
