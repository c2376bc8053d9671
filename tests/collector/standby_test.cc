// Hot standbys (issue 17): two collectors in this process share one ledger
// in a PostgreSQL 15 cluster the test starts. The standby follows what the
// sequencer records, taking each entry in as it lands (its snapshots show
// it), so when the sequencer stops it takes over replaying nothing and
// holds exactly the sequencer's derived state; nothing is written to the
// ledger by a standby, and a stop while it waits ends it promptly.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include "collector/client/api_client.h"
#include "collector/ingest/collector_server.h"
#include "collector/ingest/ledger_storage.h"
#include "collector/ingest/state_snapshot.h"
#include "collector/ledger/postgres/postgres_ledger.h"
#include "https_client.h"
#include "lib/storage/append_file.h"
#include "postgres_cluster.h"
#include "temp_dir.h"
#include "test_policy.h"

namespace latch::collector {
namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;

constexpr char kTess[] = "tess-token-0123456789";
constexpr char kAnn[] = "ann-token-0123456789";

class StandbyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LATCH_START_POSTGRES_OR_SKIP(cluster_);
    latch::testing::WriteTestPolicy(dir_ / "policy.toml");
    base_.origin = "standby.example/ledger";
    base_.policy = dir_ / "policy.toml";
    base_.storage_postgres = cluster_.Conninfo();
    base_.storage_key = dir_ / "ledger.key";
    base_.sequencer_wait_ms = 50;
    base_.snapshot_every_entries = 1;  // the standby's snapshot shows each follow
    base_.api_enabled = true;
    base_.api_port = 0;
    base_.api_tokens[api::TokenHash(kTess)] = "tess";
    base_.api_tokens[api::TokenHash(kAnn)] = "ann";
    std::string vkey;
    Status s = InitPostgresStorage(base_, &vkey);
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  CollectorConfig ConfigOf(const std::string& name) const {
    CollectorConfig c = base_;
    c.data_dir = dir_ / name;
    c.endpoints = {"inproc://standby-test-" + name};
    return c;
  }
  // The second collector's data directory: the first one's keys, copied as
  // an operator would (not its state snapshot or events index).
  void CopyKeys(const std::string& from, const std::string& to) {
    fs::create_directories(dir_ / to);
    for (const auto& e : fs::directory_iterator(dir_ / from)) {
      const std::string name = e.path().filename();
      if (!e.is_regular_file() || name == CollectorServer::kSnapshotName ||
          name.rfind("index", 0) == 0) {
        continue;
      }
      fs::copy_file(e.path(), fs::path(dir_ / to) / name);
    }
  }
  uint64_t DatabaseSize() {
    std::string text;
    tlog::NoteSigner signer;
    EXPECT_TRUE(storage::ReadWholeFile(base_.storage_key, &text).ok());
    while (!text.empty() && text.back() == '\n') text.pop_back();
    EXPECT_TRUE(tlog::NoteSigner::Parse(text, &signer).ok());
    std::unique_ptr<ledger::postgres::PostgresLedger> l;
    Status s = ledger::postgres::PostgresLedger::Open(cluster_.Conninfo(), "test", signer, &l);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return l ? l->size() : 0;
  }
  // The size of the standby's last snapshot (0: none yet).
  uint64_t SnapshotSize(const std::string& name) {
    StateSnapshot snapshot;
    if (!ReadStateSnapshot(dir_ / (name + "/" + CollectorServer::kSnapshotName), &snapshot).ok()) {
      return 0;
    }
    return snapshot.size;
  }
  static void WaitForApi(CollectorServer& server) {
    for (int i = 0; i < 500 && server.api_port() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  testing::PostgresCluster cluster_;
  ledger::TempDir dir_;
  CollectorConfig base_;
};

TEST_F(StandbyTest, AStandbyAnswersReadsFollowsAndTakesOverReplayingNothing) {
  std::unique_ptr<CollectorServer> a;
  Status s = CollectorServer::Open(ConfigOf("a"), &a);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(a->is_standby());
  Status a_run;
  std::thread a_thread([&] { a_run = a->Run(); });
  WaitForApi(*a);
  ASSERT_NE(a->api_port(), 0);
  CopyKeys("a", "b");  // the API's certificate too: both serve the same name

  std::unique_ptr<CollectorServer> b;
  s = CollectorServer::Open(ConfigOf("b"), &b);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(b->is_standby());
  Status b_run;
  std::thread b_thread([&] { b_run = b->Run(); });
  WaitForApi(*b);
  ASSERT_NE(b->api_port(), 0);
  const std::string ca = ConfigOf("a").data_dir + "/api.crt";
  auto call = [&](CollectorServer& c, http::verb method, const std::string& target,
                  const std::string& token, const std::string& body = "") {
    return latch::testing::HttpsCall(c.api_port(), ca, method, target, token, body);
  };

  const uint64_t before = DatabaseSize();
  for (int i = 0; i < 12; ++i) {
    auto r = call(
        *a, http::verb::post, "/v1/requests", kTess,
        R"({"resource":"db","duration":"10m","reason":"followed )" + std::to_string(i) + R"("})");
    ASSERT_EQ(r.status, 201) << r.body;
  }
  const uint64_t after = DatabaseSize();
  ASSERT_GE(after, before + 12);
  // The standby answers reads from what it took in as the entries landed.
  latch::testing::HttpsReply listed;
  for (int i = 0; i < 500; ++i) {
    listed = call(*b, http::verb::get, "/v1/requests?all=1", kAnn);
    if (listed.body.find("followed 11") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(listed.status, 200) << listed.body;
  for (int i = 0; i < 12; ++i) {
    EXPECT_NE(listed.body.find("followed " + std::to_string(i)), std::string::npos) << i;
  }
  EXPECT_EQ(SnapshotSize("b"), after);
  // It refuses changes, naming itself a standby, and says so to a load
  // balancer and in its metrics; nothing reaches the ledger through it.
  auto refused = call(*b, http::verb::post, "/v1/requests", kTess,
                      R"({"resource":"db","duration":"10m","reason":"to the standby"})");
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_NE(refused.body.find("\"standby\":true"), std::string::npos) << refused.body;
  // It names the sequencer, as the sequencer published itself (its
  // session's application_name), once it has followed after that.
  const std::string a_url = "https://127.0.0.1:" + std::to_string(a->api_port());
  for (int i = 0; i < 200 && refused.body.find(a_url) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    refused = call(*b, http::verb::post, "/v1/requests", kTess,
                   R"({"resource":"db","duration":"10m","reason":"to the standby"})");
  }
  EXPECT_NE(refused.body.find("\"sequencer\":\"" + a_url + "\""), std::string::npos)
      << refused.body;
  // A client whose list has only the standby does not follow the name with
  // its credentials: the refusal is its answer.
  client::Endpoint standby_only;
  standby_only.server = "https://localhost:" + std::to_string(b->api_port());
  standby_only.token = kTess;
  standby_only.ca = ca;
  client::Reply not_followed;
  s = client::Call(standby_only, "POST", "/v1/requests",
                   R"({"resource":"db","duration":"10m","reason":"not followed"})", &not_followed);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(not_followed.status, 503) << not_followed.body;
  EXPECT_NE(not_followed.body.find("changes go to the sequencer at " + a_url), std::string::npos)
      << not_followed.body;
  EXPECT_EQ(call(*b, http::verb::get, "/healthz", kAnn).status, 503);
  EXPECT_EQ(call(*a, http::verb::get, "/healthz", kAnn).status, 200);
  EXPECT_NE(call(*b, http::verb::get, "/metrics", kAnn).body.find("latch_collector_sequencer 0\n"),
            std::string::npos);
  EXPECT_EQ(DatabaseSize(), after);
  // A client listing both collectors, the standby first, reaches the sequencer.
  client::Endpoint both;
  both.server = "https://localhost:" + std::to_string(b->api_port()) +
                ",https://localhost:" + std::to_string(a->api_port());
  both.token = kTess;
  both.ca = ca;
  client::Reply reply;
  s = client::Call(both, "POST", "/v1/requests",
                   R"({"resource":"db","duration":"10m","reason":"through the list"})", &reply);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(reply.status, 201) << reply.body;
  const uint64_t last = DatabaseSize();

  a->Stop();
  a_thread.join();
  ASSERT_TRUE(a_run.ok()) << a_run.ToString();
  const nlohmann::json a_state = a->DerivedState();
  const uint64_t a_size = DatabaseSize();
  a.reset();  // its session ends: the sequencer's lock is free
  for (int i = 0; i < 1000 && b->is_standby(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_FALSE(b->is_standby()) << "the standby did not take over";
  EXPECT_GE(b->counters().standby_followed_entries.load(), 13u);
  EXPECT_LE(b->counters().takeover_replayed_entries.load(), a_size - after);
  EXPECT_LE(a_size - last, 1u);
  // The new sequencer numbers on from what the old one recorded.
  s = client::Call(both, "POST", "/v1/requests",
                   R"({"resource":"db","duration":"10m","reason":"after"})", &reply);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(reply.status, 201) << reply.body;
  EXPECT_EQ(nlohmann::json::parse(reply.body)["id"], 14) << reply.body;
  b->Stop();
  b_thread.join();
  EXPECT_TRUE(b_run.ok()) << b_run.ToString();
  EXPECT_GT(DatabaseSize(), a_size);
  // Its state is the old sequencer's and the one request since.
  nlohmann::json b_state = b->DerivedState();
  EXPECT_EQ(b_state["sequences"], a_state["sequences"]);
  EXPECT_EQ(b_state["enrolment"], a_state["enrolment"]);
  const nlohmann::json& had = a_state["requests"]["requests"];
  const nlohmann::json& has = b_state["requests"]["requests"];
  ASSERT_EQ(has.size(), had.size() + 1) << has.dump();
  for (size_t i = 0; i < had.size(); ++i) EXPECT_EQ(has[i], had[i]) << i;
  EXPECT_EQ(b_state["grants"], a_state["grants"]);
}

// A standby stopped while it follows ends promptly and cleanly, having
// written nothing to the ledger, with its snapshot where it followed to.
TEST_F(StandbyTest, AStandbyStopsPromptlyAndWritesNothing) {
  std::unique_ptr<CollectorServer> a;
  Status s = CollectorServer::Open(ConfigOf("a"), &a);
  ASSERT_TRUE(s.ok()) << s.ToString();
  CopyKeys("a", "b");
  std::unique_ptr<CollectorServer> b;
  s = CollectorServer::Open(ConfigOf("b"), &b);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(b->is_standby());
  Status b_run;
  std::thread b_thread([&] { b_run = b->Run(); });
  const uint64_t size = DatabaseSize();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto stop = std::chrono::steady_clock::now();
  b->Stop();
  b_thread.join();
  EXPECT_LT(std::chrono::steady_clock::now() - stop, std::chrono::seconds(5));
  EXPECT_TRUE(b_run.ok()) << b_run.ToString();
  EXPECT_TRUE(b->is_standby());
  EXPECT_EQ(SnapshotSize("b"), size);
  EXPECT_EQ(DatabaseSize(), size);
}

}  // namespace
}  // namespace latch::collector
