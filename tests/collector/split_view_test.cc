// A split view, end to end (issue 18). Two forks of one ledger under the
// same keys: the collector's data directory copied, then each copy grown
// with different records by its own latch-collector process. Agent A
// is fed by the first fork, agent B by the second; both collectors use the
// same witness (a latch-witness process). The witness cosigns the first
// fork and refuses the second (409, then 422 once it is longer); agent B,
// whose acknowledged records no witnessed checkpoint ever covers, raises
// the alarm within its bound, and agent A, covered, raises none. No
// checkpoint of the second fork ever carries the witness's cosignature.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>

#include "agent/checkpoint_witness.h"
#include "agent/collector_link.h"
#include "agent/spool.h"
#include "agent/spool_sink.h"
#include "collector/ingest/collector_server.h"
#include "https_client.h"
#include "lib/tlog/witnessed_checkpoint.h"
#include "run_tool.h"
#include "sample_decision.h"
#include "temp_dir.h"
#include "test_policy.h"
#include "witness_process.h"

namespace latch::collector {
namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;

constexpr char kOrigin[] = "split.example/ledger";
constexpr char kSam[] = "sam-token-0123456789";

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A latch-collector process over one fork, started by the test in its own
// directory, ended by its id.
struct Fork {
  std::string dir, config_path;
  int api_port = 0;
  pid_t pid = -1;
  // Writes its configuration: the agents it enrols, the witness it uses.
  void Configure(const std::string& data_dir, const std::string& policy, int agent_port,
                 const std::string& agents, const std::string& witness) {
    dir = data_dir;
    api_port = FreePort();
    config_path = data_dir + ".toml";
    std::ofstream(config_path) << "data_dir = \"" << data_dir << "\"\norigin = \"" << kOrigin
                               << "\"\npolicy = \"" << policy
                               << "\"\nendpoints = [\"tcp://127.0.0.1:" << agent_port
                               << "\"]\n[api]\nlisten = \"127.0.0.1:" << api_port
                               << "\"\n[[api_token]]\nidentity = \"sam\"\nsha256 = \""
                               << api::TokenHash(kSam) << "\"\n"
                               << agents << witness;
  }
  bool Start() {
    const std::string log = dir + ".log";
    pid = ::fork();
    if (pid == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      ::dup2(fd, STDERR_FILENO);
      ::execl(LATCH_COLLECTOR_BIN, LATCH_COLLECTOR_BIN, "--config", config_path.c_str(),
              static_cast<char*>(nullptr));
      ::_exit(127);
    }
    for (int i = 0; i < 500; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (Log().find("msg=serving") != std::string::npos) return true;
    }
    return false;
  }
  std::string Log() const {
    std::ifstream f(dir + ".log");
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
  }
  void Stop() {
    if (pid <= 0) return;
    ::kill(pid, SIGTERM);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
  }
  ~Fork() { Stop(); }
  latch::testing::HttpsReply Get(const std::string& target) {
    return latch::testing::HttpsCall(static_cast<uint16_t>(api_port), dir + "/api.crt",
                                     http::verb::get, target, kSam);
  }
};

// An agent's link, with its spool and held checkpoint, on its own loop.
struct Agent {
  std::string dir;
  schema::CurveKeyPair key;
  std::unique_ptr<agent::Spool> spool;
  std::unique_ptr<agent::SpoolSink> sink;
  std::unique_ptr<agent::CheckpointWitness> held;
  boost::asio::io_context io;
  std::ostringstream log_text;
  logging::Logger log{"split-view-agent", &log_text};
  std::unique_ptr<agent::CollectorLink> link;
  std::thread thread;

  void Start(const std::string& endpoint, const std::string& server_key,
             const std::string& ledger_vkey, const tlog::CosignatureVerifier& witness,
             const std::string& host) {
    agent::SpoolOptions so;
    so.dir = dir + "/spool";
    ASSERT_TRUE(agent::Spool::Open(so, std::string(16, host[0]), &spool).ok());
    sink = std::make_unique<agent::SpoolSink>(*spool);
    tlog::NoteVerifier ledger_key;
    ASSERT_TRUE(tlog::NoteVerifier::Parse(ledger_vkey, &ledger_key).ok());
    ASSERT_TRUE(agent::CheckpointWitness::Open(dir + "/checkpoint", ledger_key, &held).ok());
    agent::CollectorLinkOptions lo;
    lo.endpoints = {endpoint};
    lo.server_public_key = server_key;
    lo.key = key;
    lo.host_id = host;
    lo.tick = std::chrono::milliseconds(100);
    lo.witnessing.witnesses = {witness};
    lo.witnessing.quorum = 1;
    lo.witnessing.bound = std::chrono::seconds(3);
    link = std::make_unique<agent::CollectorLink>(
        io, lo, *spool, *held, [] { return uint64_t{0}; }, [](schema::SignedGrantSet::Reader) {},
        log);
    ASSERT_TRUE(link->Start().ok());
    thread = std::thread([this] {
      auto guard = boost::asio::make_work_guard(io);
      io.run();
    });
  }
  // Spools `n` records and has the link send them (on its loop).
  void Feed(int n) {
    boost::asio::post(io, [this, n] {
      for (int i = 0; i < n; ++i) sink->AddEvent(bench::SampleDecision(static_cast<uint64_t>(i)));
      ASSERT_TRUE(sink->Flush().ok());
      link->Pump();
    });
  }
  // The link's counters, read on its loop.
  agent::CollectorLinkCounters Counters() {
    std::promise<agent::CollectorLinkCounters> p;
    boost::asio::post(io, [&] { p.set_value(link->counters()); });
    return p.get_future().get();
  }
  void Stop() {
    if (!thread.joinable()) return;
    io.stop();
    thread.join();
  }
  ~Agent() { Stop(); }
};

TEST(SplitViewTest, TheWitnessRefusesTheSecondForkAndItsAgentRaisesTheAlarm) {
  ledger::TempDir dir;
  Agent a, b;
  a.dir = dir / "agent-a";
  b.dir = dir / "agent-b";
  fs::create_directories(a.dir);
  fs::create_directories(b.dir);
  ASSERT_TRUE(schema::LoadOrCreateCurveKey(a.dir + "/agent.key", &a.key).ok());
  ASSERT_TRUE(schema::LoadOrCreateCurveKey(b.dir + "/agent.key", &b.key).ok());

  // The keys, made once (latch-collector keys); the copy made now is the
  // second fork's start: same keys, same (empty) ledger.
  const std::string first_dir = dir / "first";
  std::ofstream(dir / "keys.toml")
      << "data_dir = \"" << first_dir << "\"\norigin = \"" << kOrigin << "\"\n";
  std::string keys;
  ASSERT_EQ(
      latch::testing::RunTool({LATCH_COLLECTOR_BIN, "keys", "--config", dir / "keys.toml"}, &keys),
      0)
      << keys;
  auto setting = [&](const std::string& name) {  // name = "value" as it prints them
    const size_t at = keys.find(name + " = \"");
    if (at == std::string::npos) return std::string();
    const size_t from = at + name.size() + 4;
    return keys.substr(from, keys.find('"', from) - from);
  };
  const std::string ledger_vkey = setting("ledger_key"), curve_key = setting("curve_public_key");
  ASSERT_FALSE(ledger_vkey.empty()) << keys;
  ASSERT_FALSE(curve_key.empty()) << keys;
  for (const auto& e : fs::recursive_directory_iterator(first_dir)) {
    const fs::path to = fs::path(dir / "second") / fs::relative(e.path(), first_dir);
    if (e.is_directory()) fs::create_directories(to);
    if (e.is_regular_file()) {
      fs::create_directories(to.parent_path());
      fs::copy_file(e.path(), to);
    }
  }

  latch::testing::WitnessProcess witness;
  std::string error;
  ASSERT_TRUE(
      witness.Configure(dir / "witness", "witness.example/w1", {{kOrigin, ledger_vkey}}, &error))
      << error;
  ASSERT_TRUE(witness.Start()) << witness.ReadLog();
  const std::string agents = "[[agent]]\nhost_id = \"host-a\"\ncurve_public_key = \"" +
                             a.key.public_z85 + "\"\n[[agent]]\nhost_id = \"host-b\"\n" +
                             "curve_public_key = \"" + b.key.public_z85 + "\"\n";
  const std::string witnessing = "[[witness]]\nurl = \"" + witness.url() + "\"\nkey = \"" +
                                 witness.vkey() + "\"\nca = \"" + witness.ca() +
                                 "\"\n[witnessing]\nquorum = 1\ninterval_ms = 100\n";
  Fork first, second;
  const int first_port = FreePort(), second_port = FreePort();
  latch::testing::WriteTestPolicy(dir / "policy.toml");  // sam audits
  first.Configure(first_dir, dir / "policy.toml", first_port, agents, witnessing);
  second.Configure(dir / "second", dir / "policy.toml", second_port, agents, witnessing);

  // The first fork runs, takes agent A's records, and is witnessed.
  ASSERT_TRUE(first.Start()) << first.Log();
  a.Start("tcp://127.0.0.1:" + std::to_string(first_port), curve_key, ledger_vkey, witness.key(),
          "host-a");
  a.Feed(50);
  ASSERT_TRUE([&] {
    for (int i = 0; i < 200; ++i) {
      if (a.Counters().records_acknowledged >= 50 && a.Counters().witnessed_accepted >= 1 &&
          witness.HeldSize() > 0) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }()) << a.log_text.str();

  // The second fork, same keys, fed by agent B.
  ASSERT_TRUE(second.Start()) << second.Log();
  b.Start("tcp://127.0.0.1:" + std::to_string(second_port), curve_key, ledger_vkey, witness.key(),
          "host-b");
  const auto fed_at = Clock::now();
  b.Feed(200);  // longer than the first fork: the witness also gets a proof (422)
  bool alarmed = false;
  for (int i = 0; i < 200 && !alarmed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    alarmed = b.Counters().alarms >= 1;
  }
  ASSERT_TRUE(alarmed) << b.log_text.str();
  const auto waited = Clock::now() - fed_at;
  EXPECT_NE(b.log_text.str().find("unwitnessed"), std::string::npos) << b.log_text.str();
  EXPECT_GE(b.Counters().records_acknowledged, 200u);  // its collector acknowledged them all
  // The bound (3 s) plus a tick, with room for a slow machine.
  EXPECT_LT(waited, std::chrono::seconds(10));
  EXPECT_EQ(a.Counters().alarms, 0u) << a.log_text.str();
  // The alarm is on the second fork's own record too (agentAlarm).
  bool recorded = false;
  for (int i = 0; i < 100 && !recorded; ++i) {
    recorded =
        second.Get("/v1/events?kind=agentAlarm").body.find("unwitnessed") != std::string::npos;
    if (!recorded) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(recorded) << second.Get("/v1/events?kind=agentAlarm").body;

  // The witness never cosigned the second fork: it holds the first's, the
  // second collector has nothing witnessed to serve, and says why.
  auto second_checkpoint = second.Get("/checkpoint");
  EXPECT_EQ(second_checkpoint.status, 503);
  const std::string metrics = second.Get("/metrics").body;
  EXPECT_NE(metrics.find("latch_collector_witnessed_publications_total 0"), std::string::npos);
  EXPECT_EQ(metrics.find("latch_collector_witness_forked_total{witness=\"witness.example/w1\"} 0"),
            std::string::npos)
      << metrics;
  auto first_checkpoint = first.Get("/checkpoint");
  ASSERT_EQ(first_checkpoint.status, 200);
  tlog::NoteVerifier ledger_key;
  ASSERT_TRUE(tlog::NoteVerifier::Parse(ledger_vkey, &ledger_key).ok());
  const tlog::CosignatureVerifier witness_keys[] = {witness.key()};
  tlog::Checkpoint cp;
  ASSERT_TRUE(
      tlog::OpenWitnessedCheckpoint(first_checkpoint.body, ledger_key, witness_keys, 1, &cp).ok());
  EXPECT_EQ(witness.HeldSize() >= cp.size, true);
  a.Stop();
  b.Stop();
}

}  // namespace
}  // namespace latch::collector
