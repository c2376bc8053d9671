// A split view, end to end (issue 18). Two forks of one ledger under the
// same keys: the collector's data directory copied, then each copy grown
// with different records by its own collector process-in-this-test. Agent A
// is fed by the first fork, agent B by the second; both collectors use the
// same witness (a latch-witness process). The witness cosigns the first
// fork and refuses the second (409, then 422 once it is longer); agent B,
// whose acknowledged records no witnessed checkpoint ever covers, raises
// the alarm within its bound, and agent A, covered, raises none. No
// checkpoint of the second fork ever carries the witness's cosignature.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <sstream>
#include <thread>

#include "agent/checkpoint_witness.h"
#include "agent/collector_link.h"
#include "agent/spool.h"
#include "agent/spool_sink.h"
#include "collector/ingest/collector_server.h"
#include "https_client.h"
#include "lib/tlog/witnessed_checkpoint.h"
#include "sample_decision.h"
#include "temp_dir.h"
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

// A collector over one fork, run on its own thread.
struct Fork {
  CollectorConfig config;
  std::unique_ptr<CollectorServer> server;
  std::thread thread;
  Status run;
  void Start() {
    Status s = CollectorServer::Open(config, &server);
    ASSERT_TRUE(s.ok()) << s.ToString();
    thread = std::thread([this] { run = server->Run(); });
    for (int i = 0; i < 500 && server->api_port() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  void Stop() {
    if (server == nullptr) return;
    server->Stop();
    thread.join();
    server.reset();
  }
  ~Fork() { Stop(); }
  latch::testing::HttpsReply Get(const std::string& target) {
    return latch::testing::HttpsCall(server->api_port(), config.data_dir + "/api.crt",
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

  CollectorConfig base;
  base.origin = kOrigin;
  base.data_dir = dir / "first";
  base.api_enabled = true;
  base.api_port = 0;
  base.api_tokens[api::TokenHash(kSam)] = "sam";
  base.agents[a.key.public_z85] = "host-a";
  base.agents[b.key.public_z85] = "host-b";
  base.witness_interval_ms = 100;
  // The keys, made once; the copy made now is the second fork's start.
  std::string ledger_vkey, curve_key;
  {
    std::unique_ptr<CollectorServer> first;
    Status s = CollectorServer::Open(base, &first);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ledger_vkey = first->ledger_vkey();
    curve_key = first->curve_public_key();
  }
  for (const auto& e : fs::recursive_directory_iterator(base.data_dir)) {
    const fs::path to = fs::path(dir / "second") / fs::relative(e.path(), base.data_dir);
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
  base.witnesses = {{witness.url(), witness.vkey(), witness.ca()}};
  base.witness_quorum = 1;

  Fork first, second;
  first.config = base;
  first.config.endpoints = {"tcp://127.0.0.1:" + std::to_string(FreePort())};
  second.config = base;
  second.config.data_dir = dir / "second";
  second.config.endpoints = {"tcp://127.0.0.1:" + std::to_string(FreePort())};

  // The first fork runs, takes agent A's records, and is witnessed.
  first.Start();
  a.Start(first.config.endpoints[0], curve_key, ledger_vkey, witness.key(), "host-a");
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
  second.Start();
  b.Start(second.config.endpoints[0], curve_key, ledger_vkey, witness.key(), "host-b");
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
  const tlog::CosignatureVerifier keys[] = {witness.key()};
  tlog::Checkpoint cp;
  ASSERT_TRUE(tlog::OpenWitnessedCheckpoint(first_checkpoint.body, ledger_key, keys, 1, &cp).ok());
  EXPECT_EQ(witness.HeldSize() >= cp.size, true);
  a.Stop();
  b.Stop();
}

}  // namespace
}  // namespace latch::collector
