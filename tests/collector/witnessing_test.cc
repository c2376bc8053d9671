// The collector's witnesses (issue 18): real latch-witness processes the
// test starts on loopback, and a collector in this process over a file
// ledger. A quorum's cosignatures make the witnessed checkpoint, which
// /checkpoint serves and the data directory keeps; witnesses that die or
// come back, a collector restart (409s from the sizes they hold), a
// witness that never answers, and a ledger that is not the history the
// witness cosigned (an alarm, never a cosignature).
#include "collector/witnessing/witnessing.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "collector/ingest/collector_server.h"
#include "https_client.h"
#include "lib/storage/append_file.h"
#include "lib/tlog/witnessed_checkpoint.h"
#include "temp_dir.h"
#include "test_policy.h"
#include "witness_process.h"

namespace latch::collector {
namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;

constexpr char kOrigin[] = "witnessing.example/ledger";
constexpr char kTess[] = "tess-token-0123456789";
constexpr char kSam[] = "sam-token-0123456789";

class WitnessingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    latch::testing::WriteTestPolicy(dir_ / "policy.toml");
    config_.data_dir = dir_ / "collector";
    config_.origin = kOrigin;
    config_.policy = dir_ / "policy.toml";
    config_.endpoints = {"inproc://witnessing-test"};
    config_.api_enabled = true;
    config_.api_port = 0;
    config_.api_tokens[api::TokenHash(kTess)] = "tess";
    config_.api_tokens[api::TokenHash(kSam)] = "sam";
    config_.witness_interval_ms = 100;
    // The ledger's key, made by a first open, is what the witnesses trust.
    std::unique_ptr<CollectorServer> first;
    Status s = CollectorServer::Open(config_, &first);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ledger_vkey_ = first->ledger_vkey();
    ASSERT_TRUE(tlog::NoteVerifier::Parse(ledger_vkey_, &ledger_key_).ok());
  }
  void TearDown() override { StopCollector(); }

  void AddWitnesses(int n, size_t quorum) {
    for (int i = 0; i < n; ++i) {
      auto w = std::make_unique<latch::testing::WitnessProcess>();
      std::string error;
      ASSERT_TRUE(w->Configure(dir_ / ("w" + std::to_string(i)),
                               "witness.example/w" + std::to_string(i), {{kOrigin, ledger_vkey_}},
                               &error))
          << error;
      ASSERT_TRUE(w->Start()) << w->ReadLog();
      w->KeepPort();
      config_.witnesses.push_back({w->url(), w->vkey(), w->ca()});
      keys_.push_back(w->key());
      witnesses_.push_back(std::move(w));
    }
    config_.witness_quorum = quorum;
  }
  void StartCollector() {
    Status s = CollectorServer::Open(config_, &server_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    thread_ = std::thread([this] { run_ = server_->Run(); });
    for (int i = 0; i < 500 && server_->api_port() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_NE(server_->api_port(), 0);
  }
  void StopCollector() {
    if (server_ == nullptr) return;
    server_->Stop();
    thread_.join();
    EXPECT_TRUE(run_.ok()) << run_.ToString();
    server_.reset();
  }
  latch::testing::HttpsReply Call(http::verb verb, const std::string& target,
                                  const std::string& token, const std::string& body = "") {
    return latch::testing::HttpsCall(server_->api_port(), config_.data_dir + "/api.crt", verb,
                                     target, token, body);
  }
  // A request: the ledger grows by a record.
  void Grow() {
    auto r = Call(http::verb::post, "/v1/requests", kTess,
                  R"({"resource":"db","duration":"10m","reason":"witnessing test"})");
    ASSERT_EQ(r.status, 201) << r.body;
  }
  uint64_t Metric(const std::string& line_start) {
    const std::string text = Call(http::verb::get, "/metrics", kSam).body;
    const size_t at = text.find("\n" + line_start + " ");
    return at == std::string::npos
               ? ~uint64_t{0}
               : std::strtoull(text.c_str() + at + line_start.size() + 2, nullptr, 10);
  }
  uint64_t LedgerSize() { return Metric("latch_collector_ledger_size"); }
  // Waits (10 s at most) for /checkpoint to cover the ledger's size with
  // cosignatures by at least `quorum` of the witnesses; the note, or "".
  std::string WaitWitnessed(size_t quorum, std::vector<size_t>* cosigned = nullptr) {
    for (int i = 0; i < 200; ++i) {
      const uint64_t size = LedgerSize();
      auto r = Call(http::verb::get, "/checkpoint", kSam);
      tlog::Checkpoint cp;
      std::vector<size_t> found;
      if (r.status == 200 &&
          tlog::OpenWitnessedCheckpoint(r.body, ledger_key_, keys_, quorum, &cp, &found).ok() &&
          cp.size == size) {
        if (cosigned != nullptr) *cosigned = found;
        return r.body;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return "";
  }
  // The witnessProblem records an auditor sees, as the events query's body.
  std::string WitnessRecords() {
    return Call(http::verb::get, "/v1/events?kind=witnessProblem", kSam).body;
  }
  bool WaitFor(const std::function<bool()>& condition) {
    for (int i = 0; i < 200; ++i) {
      if (condition()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  ledger::TempDir dir_;
  CollectorConfig config_;
  std::string ledger_vkey_;
  tlog::NoteVerifier ledger_key_;
  std::vector<std::unique_ptr<latch::testing::WitnessProcess>> witnesses_;
  std::vector<tlog::CosignatureVerifier> keys_;
  std::unique_ptr<CollectorServer> server_;
  std::thread thread_;
  Status run_;
};

TEST_F(WitnessingTest, AQuorumCosignsAndTheWitnessedCheckpointFollowsWitnessesDownAndBack) {
  AddWitnesses(3, 2);
  StartCollector();
  Grow();
  // Every witness cosigns in the end, and the note is what the data
  // directory keeps.
  std::string note = WaitWitnessed(3);
  ASSERT_FALSE(note.empty());
  std::string kept;
  ASSERT_TRUE(storage::ReadWholeFile(config_.data_dir + "/" + Witnessing::kFileName, &kept).ok());
  EXPECT_EQ(kept, note);
  EXPECT_GE(Metric("latch_collector_witnessed_cosignatures"), 3u);

  // One witness down: two still make the quorum, and its failure is logged,
  // counted and on record.
  witnesses_[0]->Kill();
  Grow();
  std::vector<size_t> cosigned;
  note = WaitWitnessed(2, &cosigned);
  ASSERT_FALSE(note.empty());
  EXPECT_EQ(std::count(cosigned.begin(), cosigned.end(), 0u), 0);
  EXPECT_TRUE(WaitFor([&] {
    return Metric("latch_collector_witness_failing{witness=\"witness.example/w0\"}") == 1;
  }));
  EXPECT_GE(Metric("latch_collector_witness_failures_total{witness=\"witness.example/w0\"}"), 1u);
  EXPECT_TRUE(WaitFor([&] { return WitnessRecords().find("unreachable") != std::string::npos; }));

  // Two down: no quorum, so the witnessed checkpoint stays behind the ledger.
  witnesses_[1]->Kill();
  const uint64_t witnessed = Metric("latch_collector_witnessed_size");
  Grow();
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // ten rounds
  EXPECT_EQ(Metric("latch_collector_witnessed_size"), witnessed);
  EXPECT_GT(LedgerSize(), witnessed);
  tlog::Checkpoint cp;
  auto r = Call(http::verb::get, "/checkpoint", kSam);
  ASSERT_EQ(r.status, 200);
  ASSERT_TRUE(tlog::OpenWitnessedCheckpoint(r.body, ledger_key_, keys_, 2, &cp).ok());
  EXPECT_EQ(cp.size, witnessed);

  // Both back: the ledger is witnessed again, by all three, and the
  // recovery is on record.
  ASSERT_TRUE(witnesses_[0]->Start());
  ASSERT_TRUE(witnesses_[1]->Start());
  EXPECT_FALSE(WaitWitnessed(3).empty());
  EXPECT_TRUE(WaitFor([&] { return WitnessRecords().find("recovered") != std::string::npos; }));
  EXPECT_EQ(Metric("latch_collector_witness_failing{witness=\"witness.example/w0\"}"), 0u);
}

TEST_F(WitnessingTest, ARestartedCollectorServesWhatWasWitnessedAndCatchesWitnessesUp) {
  AddWitnesses(1, 1);
  StartCollector();
  Grow();
  const std::string note = WaitWitnessed(1);
  ASSERT_FALSE(note.empty());
  StopCollector();

  // With the witness down, the restarted collector serves the witnessed
  // checkpoint it kept (its start added records nobody cosigned yet).
  witnesses_[0]->Kill();
  StartCollector();
  auto r = Call(http::verb::get, "/checkpoint", kSam);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.body, note);

  // The witness back: this collector does not know the size it holds, so
  // its first request is answered 409 with it, and the next one, from that
  // size, is cosigned.
  ASSERT_TRUE(witnesses_[0]->Start());
  Grow();
  EXPECT_FALSE(WaitWitnessed(1).empty());
  EXPECT_GE(Metric("latch_collector_witness_conflicts_total{witness=\"witness.example/w0\"}"), 1u);
  EXPECT_EQ(witnesses_[0]->HeldSize(), Metric("latch_collector_witnessed_size"));
}

TEST_F(WitnessingTest, ALedgerThatIsNotTheHistoryTheWitnessCosignedIsAnAlarmAndNeverCosigned) {
  AddWitnesses(1, 1);
  StartCollector();
  Grow();
  const std::string common = WaitWitnessed(1);
  ASSERT_FALSE(common.empty());
  StopCollector();
  // A copy of the ledger as it stands, same keys: the second fork.
  const std::string original = config_.data_dir;
  fs::create_directories(dir_ / "fork");
  for (const auto& e : fs::recursive_directory_iterator(original)) {
    const fs::path to = dir_ / "fork" / fs::relative(e.path(), original);
    if (e.is_directory()) fs::create_directories(to);
    if (e.is_regular_file()) fs::copy_file(e.path(), to);  // not the admin socket
  }
  // The first fork goes on and is witnessed.
  StartCollector();
  for (int i = 0; i < 6; ++i) Grow();
  ASSERT_FALSE(WaitWitnessed(1).empty());
  const uint64_t held = witnesses_[0]->HeldSize();
  StopCollector();

  // The second fork, served by a collector with the same keys: the witness
  // holds a size past it (409), an alarm logged, counted and on record.
  config_.data_dir = dir_ / "fork";
  StartCollector();
  ASSERT_LT(LedgerSize(), held);
  const std::string forked_metric =
      "latch_collector_witness_forked_total{witness=\"witness.example/w0\"}";
  EXPECT_TRUE(WaitFor([&] { return Metric(forked_metric) >= 1; }));
  EXPECT_TRUE(WaitFor([&] { return WitnessRecords().find("forked") != std::string::npos; }));
  // Grown past the size the witness holds, its proof from that size fails
  // (422): still an alarm, still no cosignature.
  while (LedgerSize() <= held) Grow();
  const uint64_t forked = Metric(forked_metric);
  EXPECT_TRUE(WaitFor([&] { return Metric(forked_metric) > forked; }));
  // All it serves is what both forks share, witnessed before they parted.
  auto r = Call(http::verb::get, "/checkpoint", kSam);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, common);
  EXPECT_EQ(Metric("latch_collector_witnessed_publications_total"), 0u);
  EXPECT_EQ(witnesses_[0]->HeldSize(), held);
}

// An auditor's latchctl pins witness keys: verify demands their quorum.
TEST_F(WitnessingTest, LatchctlVerifyDemandsTheWitnessesItPins) {
  AddWitnesses(2, 1);
  StartCollector();
  Grow();
  ASSERT_FALSE(WaitWitnessed(2).empty());
  const std::map<std::string, std::string> env = {
      {"XDG_CONFIG_HOME", dir_ / "auditor"},
      {"LATCH_SERVER", "https://127.0.0.1:" + std::to_string(server_->api_port())},
      {"LATCH_CA", config_.data_dir + "/api.crt"},
      {"LATCH_TOKEN", kSam},
      {"LATCH_LEDGER_KEY", ledger_vkey_}};
  auto latchctl = [&](std::vector<std::string> args, std::string* out,
                      std::map<std::string, std::string> more = {}) {
    args.insert(args.begin(), LATCHCTL_BIN);
    more.insert(env.begin(), env.end());
    return latch::testing::RunTool(args, out, more, true);
  };
  std::string out;
  ASSERT_EQ(
      latchctl({"--witness", witnesses_[0]->vkey(), "--witness", witnesses_[1]->vkey(), "verify"},
               &out),
      0)
      << out;
  // In the order their cosignatures came.
  EXPECT_NE(out.find("cosigned by 2 of 2 witnesses ("), std::string::npos) << out;
  EXPECT_NE(out.find("witness.example/w0"), std::string::npos) << out;
  EXPECT_NE(out.find("witness.example/w1"), std::string::npos) << out;
  // From the environment, and from the auditor's settings file.
  EXPECT_EQ(latchctl({"verify"}, &out,
                     {{"LATCH_WITNESS_KEYS", witnesses_[0]->vkey() + "," + witnesses_[1]->vkey()}}),
            0)
      << out;
  std::ofstream(dir_ / "auditor/latch/latchctl.toml")
      << "witness_keys = [\"" << witnesses_[1]->vkey() << "\"]\nwitness_quorum = 1\n";
  EXPECT_EQ(latchctl({"verify"}, &out), 0) << out;
  EXPECT_NE(out.find("cosigned by 1 of 1 witnesses (witness.example/w1)"), std::string::npos)
      << out;
  // A witness the collector does not use: not verified.
  tlog::CosignatureSigner stranger;
  ASSERT_TRUE(tlog::CosignatureSigner::Generate("witness.example/stranger", &stranger).ok());
  EXPECT_EQ(latchctl({"--witness", stranger.verifier().ToString(), "verify"}, &out), 1) << out;
  EXPECT_NE(out.find("NOT VERIFIED"), std::string::npos) << out;
  EXPECT_NE(out.find("0 of the 1 witness cosignatures required"), std::string::npos) << out;
  EXPECT_EQ(latchctl({"--witness", "not-a-key", "verify"}, &out), 2) << out;
  EXPECT_EQ(latchctl({"--witness", "not-a-key", "events"}, &out), 2) << out;

  // The events query's proofs, held to the witnessed checkpoint: covered
  // events are said to be, later ones are said not to be yet.
  EXPECT_EQ(
      latchctl({"--witness", witnesses_[0]->vkey(), "events", "--kind", "requestCreated"}, &out), 0)
      << out;
  EXPECT_NE(out.find("1 of them in the witnessed checkpoint of"), std::string::npos) << out;
  EXPECT_NE(out.find("cosigned by 1 of 1 witnesses (witness.example/w0)"), std::string::npos)
      << out;
  witnesses_[0]->Kill();
  witnesses_[1]->Kill();
  Grow();
  ASSERT_TRUE(WaitFor([&] {
    latchctl({"--witness", witnesses_[0]->vkey(), "events", "--kind", "requestCreated"}, &out);
    return out.find("2 event(s)") != std::string::npos;
  })) << out;
  EXPECT_NE(out.find("1 of them in the witnessed checkpoint"), std::string::npos) << out;
  EXPECT_NE(out.find("(the rest not witnessed yet)"), std::string::npos) << out;
  EXPECT_EQ(latchctl({"--witness", stranger.verifier().ToString(), "events"}, &out), 1) << out;
  EXPECT_NE(out.find("NOT VERIFIED: against the witnesses"), std::string::npos) << out;
  EXPECT_EQ(latchctl({"--witness", witnesses_[0]->vkey(), "--witness-quorum", "2", "verify"}, &out),
            2)
      << out;
}

TEST_F(WitnessingTest, AWitnessThatNeverAnswersCostsOnlyItsTimeout) {
  // A listener that never accepts: connections queue, no TLS handshake.
  int silent = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(silent, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(silent, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(silent, 16), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(silent, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  AddWitnesses(1, 1);
  tlog::CosignatureSigner silent_key;
  ASSERT_TRUE(tlog::CosignatureSigner::Generate("witness.example/silent", &silent_key).ok());
  config_.witnesses.push_back({"https://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)),
                               silent_key.verifier().ToString(), witnesses_[0]->ca()});
  config_.witness_timeout_ms = 300;
  StartCollector();
  Grow();
  EXPECT_FALSE(WaitWitnessed(1).empty());
  EXPECT_TRUE(WaitFor([&] {
    return Metric("latch_collector_witness_failures_total{witness=\"witness.example/silent\"}") >=
           2;
  }));
  // One request in flight at a time: a new connection per failed attempt,
  // each given up after the timeout, so the backlog never fills.
  const auto before = std::chrono::steady_clock::now();
  StopCollector();
  EXPECT_LT(std::chrono::steady_clock::now() - before, std::chrono::seconds(5));
  ::close(silent);
}

}  // namespace
}  // namespace latch::collector
