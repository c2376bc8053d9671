// Enrolment as an operator does it (issue 16), with the real binaries:
// `latch-collector token create` on the collector, `latch-agent enrol` on
// the host, then the agent's configuration complete without a key copied by
// hand. And the ways it goes wrong: a wrong pin, a spent token, an agent
// started before it is enrolled.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <thread>

#include "agent/agent_config.h"
#include "collector/ingest/collector_server.h"
#include "kernel_sandbox.h"
#include "run_tool.h"
#include "schemas/join_token.h"
#include "temp_dir.h"

namespace latch::collector {
namespace {

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in b{};
  b.sin_family = AF_INET;
  b.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(b);
  ::bind(fd, reinterpret_cast<sockaddr*>(&b), len);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&b), &len);
  ::close(fd);
  return ntohs(b.sin_port);
}

class EnrolmentCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    endpoint_ = "tcp://127.0.0.1:" + std::to_string(FreePort());
    collector_config_ = dir_ / "collector.toml";
    std::ofstream(collector_config_) << "data_dir = \"" << (dir_ / "data")
                                     << "\"\norigin = \"enrol.example/log\"\nendpoints = [\""
                                     << endpoint_ << "\"]\nbatch_max_age_ms = 1\n";
    ASSERT_TRUE(LoadCollectorConfig(collector_config_, &config_).ok());
    ASSERT_TRUE(CollectorServer::Open(config_, &server_).ok());
    thread_ = std::thread([this] { run_status_ = server_->Run(); });
    agent_config_ = dir_ / "agent.toml";
    std::ofstream(agent_config_) << "host_id = \"host-b\"\n[collector]\nendpoints = [\""
                                 << endpoint_ << "\"]\nstate_dir = \"" << (dir_ / "agent-state")
                                 << "\"\n";
  }
  void TearDown() override {
    server_->Stop();
    thread_.join();
    EXPECT_TRUE(run_status_.ok()) << run_status_.ToString();
  }
  // `latch-collector token create`: the token and pin it prints.
  void CreateToken(const std::string& host, std::string* token, std::string* pin) {
    std::string out;
    ASSERT_EQ(testing::RunTool({LATCH_COLLECTOR_BIN, "token", "create", "--config",
                                collector_config_, "--host", host, "--ttl", "15m"},
                               &out, {}, true),
              0)
        << out;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(out, m, std::regex("(latchjoin1\\.[A-Za-z0-9_-]+)"))) << out;
    *token = m[1];
    ASSERT_TRUE(std::regex_search(out, m, std::regex("(sha256:[0-9a-f]{64})"))) << out;
    *pin = m[1];
    // It says what to run on the host.
    EXPECT_NE(out.find("latch-agent enrol --config"), std::string::npos) << out;
  }
  int Enrol(const std::string& token, const std::string& pin, std::string* out) {
    return testing::RunTool(
        {LATCH_AGENT_BIN, "enrol", "--config", agent_config_, "--token", token, "--ca-pin", pin},
        out, {}, true);
  }
  ledger::TempDir dir_;
  std::string endpoint_, collector_config_, agent_config_;
  CollectorConfig config_;
  std::unique_ptr<CollectorServer> server_;
  std::thread thread_;
  Status run_status_;
};

TEST_F(EnrolmentCliTest, ATokenAndItsPinEnrolAnAgentWhoseConfigThenNeedsNoKeys) {
  // Before enrolment the daemon says what is missing and how to get it.
  std::string out;
  EXPECT_NE(testing::RunTool({LATCH_AGENT_BIN, "--config", agent_config_}, &out, {}, true), 0);
  EXPECT_NE(out.find("missing"), std::string::npos) << out;
  EXPECT_NE(out.find("latch-agent enrol"), std::string::npos) << out;

  std::string token, pin;
  CreateToken("host-b", &token, &pin);
  EXPECT_EQ(pin, schema::CurveKeyPin(server_->curve_public_key()));
  // A pin that is not the token's collector: nothing is sent.
  std::string wrong_pin = pin;
  wrong_pin.back() = wrong_pin.back() == '0' ? '1' : '0';
  EXPECT_EQ(Enrol(token, wrong_pin, &out), 1) << out;
  EXPECT_NE(out.find("nothing was sent"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "agent-state/enrolment.toml"));
  // A token cut short when copied.
  EXPECT_EQ(Enrol(token.substr(0, token.size() - 3), pin, &out), 1) << out;
  EXPECT_NE(out.find("cut short"), std::string::npos) << out;

  ASSERT_EQ(Enrol(token, pin, &out), 0) << out;
  EXPECT_NE(out.find("enrolled as host-b"), std::string::npos) << out;
  // The daemon's configuration is now complete: the collector's keys came
  // from the enrolment.
  agent::AgentConfig config;
  ASSERT_TRUE(agent::LoadAgentConfig(agent_config_, &config).ok());
  Status resolved = agent::ResolveAgentDefaults(&config);
  ASSERT_TRUE(resolved.ok()) << resolved.ToString();
  EXPECT_EQ(config.collector.server_public_key, server_->curve_public_key());
  ASSERT_EQ(config.collector.grant_keys.size(), 1u);
  EXPECT_EQ(config.collector.grant_keys[0], server_->grant_vkey());
  EXPECT_EQ(config.collector.ledger_key, server_->ledger_vkey());
  EXPECT_EQ(config.collector.endpoints, std::vector<std::string>{endpoint_});
  // The file is the agent's alone.
  EXPECT_EQ(std::filesystem::status(dir_ / "agent-state/enrolment.toml").permissions() &
                std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  // The collector lists it, enrolled by token.
  ASSERT_EQ(testing::RunTool({LATCH_COLLECTOR_BIN, "agents", "--config", collector_config_}, &out),
            0);
  EXPECT_NE(out.find("host-b"), std::string::npos) << out;
  EXPECT_NE(out.find("enrolment"), std::string::npos) << out;

  // Spent: the same token again (another token open, so the key gets to ask).
  std::string other_token, other_pin;
  CreateToken("host-c", &other_token, &other_pin);
  std::filesystem::remove(dir_ / "agent-state/agent.key");  // a new key, as a thief's
  EXPECT_EQ(Enrol(token, pin, &out), 1) << out;
  EXPECT_NE(out.find("already used"), std::string::npos) << out;
  // A token for another host.
  EXPECT_EQ(Enrol(other_token, other_pin, &out), 1) << out;
  EXPECT_NE(out.find("for another host"), std::string::npos) << out;
}

TEST_F(EnrolmentCliTest, WithNoTokenOpenTheHandshakeIsRefusedAndTheAgentSaysWhy) {
  std::string token, pin;
  CreateToken("host-b", &token, &pin);
  std::string out;
  ASSERT_EQ(Enrol(token, pin, &out), 0) << out;
  std::filesystem::remove(dir_ / "agent-state/agent.key");
  EXPECT_EQ(Enrol(token, pin, &out), 1) << out;
  EXPECT_NE(out.find("no join token is open"), std::string::npos) << out;
}

// A full state disk: the answer could not be kept, so nothing is sent and
// the token is not spent; once there is room, the same token enrols.
TEST_F(EnrolmentCliTest, AFullStateDiskSpendsNoToken) {
  LATCH_SKIP_UNLESS_KERNEL_TEST_CAN_RUN();  // root: to mount a small tmpfs
  const std::string state = dir_ / "agent-state";
  std::filesystem::create_directories(state);
  ASSERT_EQ(::mount("tmpfs", state.c_str(), "tmpfs", 0, "size=64k,mode=0700"), 0);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{state};
  std::string out;
  ASSERT_EQ(testing::RunTool({LATCH_AGENT_BIN, "key", "--config", agent_config_}, &out), 0) << out;
  {  // fill it
    std::ofstream fill(state + "/fill", std::ios::binary);
    std::string block(4096, 'x');
    for (int i = 0; i < 64 && fill; ++i) fill << block << std::flush;
  }
  std::string token, pin;
  CreateToken("host-b", &token, &pin);
  EXPECT_EQ(Enrol(token, pin, &out), 1) << out;
  EXPECT_NE(out.find("nothing was sent, the token is still good"), std::string::npos) << out;
  EXPECT_NE(out.find("No space"), std::string::npos) << out;
  std::filesystem::remove(state + "/fill");
  ASSERT_EQ(Enrol(token, pin, &out), 0) << out;
  EXPECT_TRUE(std::filesystem::exists(state + "/enrolment.toml"));
}

TEST_F(EnrolmentCliTest, TokenCreateRefusesABadHostOrTtl) {
  std::string out;
  EXPECT_NE(testing::RunTool({LATCH_COLLECTOR_BIN, "token", "create", "--config", collector_config_,
                              "--host", "bad host;rm"},
                             &out, {}, true),
            0);
  EXPECT_NE(out.find("not a host id"), std::string::npos) << out;
  EXPECT_NE(testing::RunTool({LATCH_COLLECTOR_BIN, "token", "create", "--config", collector_config_,
                              "--host", "h", "--ttl", "60d"},
                             &out, {}, true),
            0);
  EXPECT_NE(out.find("1m to 30d"), std::string::npos) << out;
}

}  // namespace
}  // namespace latch::collector
