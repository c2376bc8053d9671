// latch-witness as a process (issue 18), started by the test in its own
// directory on loopback: its key, add-checkpoint over HTTPS answered with a
// cosignature that verifies under the key it prints, the spec's refusals
// with nothing stored, and kill -9 at random moments of a stream of
// add-checkpoints: it never cosigns two inconsistent checkpoints, and what it
// acknowledged survives each restart.
#include "witness_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include "https_client.h"
#include "lib/tlog/base64.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/cosignature.h"
#include "memory_hashes.h"
#include "run_tool.h"
#include "temp_dir.h"

namespace latch::witness {
namespace {

namespace http = boost::beast::http;
using latch::testing::RunTool;
constexpr char kOrigin[] = "example.com/log";

class WitnessProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(tlog::NoteSigner::Generate(kOrigin, &log_).ok());
    leaves_ = tlog::NumberedLeaves(hasher_, 20000);
    std::string error;
    ASSERT_TRUE(witness_.Configure(dir_.path(), "witness.example/w1",
                                   {{kOrigin, log_.verifier().ToString()}}, &error))
        << error;
    witness_key_ = witness_.key();
  }
  void Start() {
    ASSERT_TRUE(witness_.Start()) << "the witness did not start: " << witness_.ReadLog();
    port_ = witness_.port();
  }
  void Kill() { witness_.Kill(); }
  tlog::Hash Root(uint64_t size) {
    return tlog::ReferenceRoot(hasher_, std::span(leaves_).subspan(0, size));
  }
  std::string Checkpoint(uint64_t size, const tlog::Hash& root) {
    std::string note;
    EXPECT_TRUE(log_.Sign(tlog::Checkpoint{kOrigin, size, root, {}}.Body(), &note).ok());
    return note;
  }
  std::string Body(uint64_t old_size, uint64_t size) {
    std::string body = "old " + std::to_string(old_size) + "\n";
    if (old_size != 0) {
      tlog::MemoryHashes hashes(std::vector<tlog::Hash>(leaves_.begin(), leaves_.begin() + size));
      tlog::TreeReader reader(hashes);
      std::vector<tlog::Hash> proof;
      EXPECT_TRUE(reader.ConsistencyProof(old_size, size, &proof).ok());
      for (const tlog::Hash& h : proof) body += tlog::Base64Encode(h) + "\n";
    }
    return body + "\n" + Checkpoint(size, Root(size));
  }
  latch::testing::HttpsReply Post(const std::string& body) {
    return latch::testing::HttpsCall(static_cast<uint16_t>(port_), dir_ / "data/tls.crt",
                                     http::verb::post, "/add-checkpoint", "", body);
  }
  bool Cosigns(const std::string& answer, uint64_t size) {
    std::vector<size_t> found;
    const std::vector<tlog::CosignatureVerifier> keys = {witness_key_};
    return tlog::FindCosignatures(Checkpoint(size, Root(size)) + answer, keys, &found).ok() &&
           found.size() == 1;
  }
  uint64_t HeldSize() { return witness_.HeldSize(); }

  ledger::TempDir dir_;
  tlog::MerkleHasher hasher_;
  std::vector<tlog::Hash> leaves_;
  tlog::NoteSigner log_;
  latch::testing::WitnessProcess witness_;
  tlog::CosignatureVerifier witness_key_;
  int port_ = 0;
};

TEST_F(WitnessProcessTest, CosignsOverHttpsAndRefusesBadRequests) {
  Start();
  auto r = Post(Body(0, 10));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_TRUE(Cosigns(r.body, 10)) << r.body;
  r = Post(Body(0, 20));
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(r.body, "10\n");
  for (const std::string& bad :
       {std::string("garbage"), std::string(70 * 1024, 'x'),
        std::string("old 10\n\nother.example/log\n1\nAAAA\n\n\xE2\x80\x94 x y\n")}) {
    r = Post(bad);
    EXPECT_NE(r.status, 200) << r.body;
    EXPECT_GE(r.status, 400) << r.body;
  }
  r = latch::testing::HttpsCall(static_cast<uint16_t>(port_), dir_ / "data/tls.crt",
                                http::verb::get, "/metrics", "");
  EXPECT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("latch_witness_cosigned_total 1\n"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("latch_witness_log_size{origin=\"example.com/log\"} 10\n"),
            std::string::npos)
      << r.body;
  EXPECT_EQ(HeldSize(), 10u);
  // A fork at the size it holds: refused, and the honest history goes on.
  tlog::Hash other{};
  other[0] = 1;
  r = Post("old 10\n\n" + Checkpoint(10, other));
  EXPECT_EQ(r.status, 422) << r.body;
  r = Post(Body(10, 30));
  EXPECT_EQ(r.status, 200) << r.body;
}

// A flood of connections from one address past its limit (16): each is
// refused and counted, and the log says so once per second, not once per
// connection (a flood must not fill the disk with log lines).
TEST_F(WitnessProcessTest, AConnectionFloodIsCountedNotLoggedLineByLine) {
  Start();
  std::vector<int> held;
  for (int i = 0; i < 200; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port_));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    held.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  for (int fd : held) ::close(fd);
  auto r = latch::testing::HttpsCall(static_cast<uint16_t>(port_), dir_ / "data/tls.crt",
                                     http::verb::get, "/metrics", "");
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string name = "\nlatch_witness_server_refusals_total ";
  const size_t at = r.body.find(name);
  ASSERT_NE(at, std::string::npos) << r.body;
  EXPECT_GE(std::strtoull(r.body.c_str() + at + name.size(), nullptr, 10), 150u) << r.body;
  std::ifstream f(dir_ / "witness.log");
  const std::string log((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  size_t lines = 0;
  for (size_t p = log.find("msg=refused"); p != std::string::npos;
       p = log.find("msg=refused", p + 1)) {
    ++lines;
  }
  EXPECT_GE(lines, 1u) << log;
  EXPECT_LE(lines, 4u) << log;
}

TEST_F(WitnessProcessTest, KilledAtRandomItKeepsWhatItCosigned) {
  std::mt19937 rng(static_cast<uint32_t>(::getpid()));
  uint64_t acknowledged = 0, sent = 0;
  int interrupted = 0;
  for (int kill = 0; kill < 10; ++kill) {
    Start();
    // What it holds: at least everything it acknowledged, nothing never sent.
    const uint64_t held = HeldSize();
    EXPECT_GE(held, acknowledged) << "an acknowledged checkpoint was forgotten";
    EXPECT_LE(held, sent) << "a checkpoint never sent";
    acknowledged = std::max(acknowledged, held);
    std::thread killer([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 300));
      Kill();
    });
    uint64_t at = held;
    while (at + 7 < leaves_.size()) {
      const uint64_t next = at + 1 + rng() % 7;
      sent = std::max(sent, next);
      auto r = Post(Body(at, next));
      if (r.status != 200) {
        ++interrupted;  // the kill came during a request
        break;
      }
      EXPECT_TRUE(Cosigns(r.body, next));
      acknowledged = at = next;
    }
    killer.join();
  }
  Start();
  EXPECT_GE(HeldSize(), acknowledged);
  EXPECT_LE(HeldSize(), sent);
  std::printf(
      "10 kills, %d during a request: checkpoints up to %llu acknowledged, %llu sent, the witness "
      "holds %llu\n",
      interrupted, static_cast<unsigned long long>(acknowledged),
      static_cast<unsigned long long>(sent), static_cast<unsigned long long>(HeldSize()));
  EXPECT_GE(interrupted, 5) << "the kills missed the requests";
  auto r = Post(Body(HeldSize(), HeldSize() + 1));
  EXPECT_EQ(r.status, 200) << r.body;
}

}  // namespace
}  // namespace latch::witness
