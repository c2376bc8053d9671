// The witness's add-checkpoint (issue 18) by the C2SP tlog-witness rules:
// the answers the spec names for each bad request with nothing stored, a
// cosignature only for a checkpoint consistent with what it cosigned before,
// stored before it answers, kept across a restart; a forked checkpoint
// refused and kept as evidence; a state file that does not parse stops it.
#include "witness/add_checkpoint.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <thread>

#include "lib/tlog/base64.h"
#include "lib/tlog/checkpoint.h"
#include "memory_hashes.h"
#include "temp_dir.h"

namespace latch::witness {
namespace {

constexpr char kOrigin[] = "example.com/log";
constexpr uint64_t kNow = 1796000000;

class WitnessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(tlog::NoteSigner::Generate(kOrigin, &log_).ok());
    ASSERT_TRUE(tlog::CosignatureSigner::Generate("witness.example/w1", &key_).ok());
    leaves_ = tlog::NumberedLeaves(hasher_, 1000);
    Reopen();
  }
  void Reopen() {
    witness_.reset();
    WitnessState state;
    Status s = WitnessState::Open(dir_ / "state", &state);
    ASSERT_TRUE(s.ok()) << s.ToString();
    witness_ = std::make_unique<Witness>(key_, Logs(), std::move(state));
  }
  std::map<std::string, std::vector<tlog::NoteVerifier>> Logs() const {
    return {{kOrigin, {log_.verifier()}}};
  }
  tlog::Hash Root(uint64_t size) {
    return tlog::ReferenceRoot(hasher_, std::span(leaves_).subspan(0, size));
  }
  // The log's signed checkpoint of its first `size` leaves (or `root`).
  std::string Checkpoint(uint64_t size, const tlog::Hash* root = nullptr,
                         const tlog::NoteSigner* signer = nullptr) {
    tlog::Checkpoint cp{kOrigin, size, root != nullptr ? *root : Root(size), {}};
    std::string note;
    EXPECT_TRUE((signer != nullptr ? *signer : log_).Sign(cp.Body(), &note).ok());
    return note;
  }
  std::vector<tlog::Hash> Proof(uint64_t from, uint64_t to) {
    tlog::MemoryHashes hashes(std::vector<tlog::Hash>(leaves_.begin(), leaves_.begin() + to));
    tlog::TreeReader reader(hashes);
    std::vector<tlog::Hash> proof;
    EXPECT_TRUE(reader.ConsistencyProof(from, to, &proof).ok());
    return proof;
  }
  static std::string Body(uint64_t old_size, const std::vector<tlog::Hash>& proof,
                          const std::string& note) {
    std::string body = "old " + std::to_string(old_size) + "\n";
    for (const tlog::Hash& h : proof) body += tlog::Base64Encode(h) + "\n";
    return body + "\n" + note;
  }
  WitnessAnswer Add(uint64_t old_size, uint64_t size) {
    return witness_->AddCheckpoint(
        Body(old_size, old_size == 0 ? std::vector<tlog::Hash>{} : Proof(old_size, size),
             Checkpoint(size)),
        kNow);
  }
  // Whether `answer` is a valid cosignature of the checkpoint of `size`.
  bool Cosigns(const WitnessAnswer& answer, uint64_t size) {
    const std::string cosigned = Checkpoint(size) + answer.body;
    std::vector<size_t> found;
    const std::vector<tlog::CosignatureVerifier> witnesses = {key_.verifier()};
    return tlog::FindCosignatures(cosigned, witnesses, &found).ok() && found.size() == 1;
  }

  ledger::TempDir dir_;
  tlog::MerkleHasher hasher_;
  std::vector<tlog::Hash> leaves_;
  tlog::NoteSigner log_;
  tlog::CosignatureSigner key_;
  std::unique_ptr<Witness> witness_;
};

TEST_F(WitnessTest, CosignsConsistentCheckpointsAndKeepsItsStateAcrossARestart) {
  WitnessAnswer a = Add(0, 10);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_TRUE(Cosigns(a, 10)) << a.body;
  a = Add(10, 300);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_TRUE(Cosigns(a, 300));
  a = Add(300, 300);  // the same checkpoint again: cosigned again
  ASSERT_EQ(a.status, 200) << a.body;
  Reopen();
  EXPECT_EQ(witness_->Logs().at(kOrigin).size, 300u);
  a = Add(10, 400);  // stale: the size it holds
  EXPECT_EQ(a.status, 409);
  EXPECT_EQ(a.content_type, "text/x.tlog.size");
  EXPECT_EQ(a.body, "300\n");
  a = Add(300, 999);
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(witness_->counters().cosigned, 1u);  // since the restart
}

TEST_F(WitnessTest, EachBadRequestGetsTheSpecsAnswerAndChangesNothing) {
  ASSERT_EQ(Add(0, 100).status, 200);
  const std::string good = Checkpoint(200);
  const auto proof = Proof(100, 200);
  tlog::NoteSigner stranger;
  ASSERT_TRUE(tlog::NoteSigner::Generate(kOrigin, &stranger).ok());
  tlog::NoteSigner other_log;
  ASSERT_TRUE(tlog::NoteSigner::Generate("other.example/log", &other_log).ok());
  std::string other_note;
  ASSERT_TRUE(
      other_log.Sign(tlog::Checkpoint{"other.example/log", 5, Root(5), {}}.Body(), &other_note)
          .ok());
  std::string bad_sig = good;
  bad_sig[bad_sig.size() - 10] = bad_sig[bad_sig.size() - 10] == 'A' ? 'B' : 'A';
  auto bad_proof = proof;
  bad_proof[0][0] ^= 1;
  struct Case {
    std::string body;
    int status;
  } cases[] = {
      {"", 400},
      {"garbage", 400},
      {"old 100\n", 400},
      {"old 0100\n\n" + good, 400},
      {"old -1\n\n" + good, 400},
      {"old 99999999999999999999999\n\n" + good, 400},
      {"old 100\nnot base64!\n\n" + good, 400},
      {"old 100\n" + tlog::Base64Encode(std::vector<uint8_t>(31)) + "\n\n" + good, 400},
      {Body(100, std::vector<tlog::Hash>(64), good), 400},
      {Body(300, {}, good), 400},  // an old size past the checkpoint's
      {std::string(Witness::kMaxBody + 1, 'x'), 400},
      {"old 0\n\n" + other_note, 404},
      {Body(100, proof, Checkpoint(200, nullptr, &stranger)), 403},
      {Body(100, proof, bad_sig), 403},
      {Body(100, bad_proof, good), 422},
      {Body(100, {}, good), 422},
      {Body(100, proof,
            "example.com/log\n200\nnot a hash\n\n" + good.substr(good.find("\n\n") + 2)),
       403},
  };
  for (const Case& k : cases) {
    WitnessAnswer a = witness_->AddCheckpoint(k.body, kNow);
    EXPECT_EQ(a.status, k.status) << k.body.substr(0, 200) << " -> " << a.body;
    EXPECT_EQ(witness_->Logs().at(kOrigin).size, 100u) << k.body.substr(0, 200);
  }
  // Another root at the size held, and a size-0 tree that is not empty.
  tlog::Hash other{};
  other[3] = 7;
  EXPECT_EQ(witness_->AddCheckpoint(Body(100, {}, Checkpoint(100, &other)), kNow).status, 422);
  // Nothing above moved it: the right request still works.
  WitnessAnswer a = witness_->AddCheckpoint(Body(100, proof, good), kNow);
  EXPECT_EQ(a.status, 200) << a.body;
}

TEST_F(WitnessTest, AForkIsRefusedAndKeptAsEvidence) {
  ASSERT_EQ(Add(0, 100).status, 200);
  // A second history with the same key: the same first 50 entries, then others.
  std::vector<tlog::Hash> fork(leaves_.begin(), leaves_.begin() + 50);
  auto forked = tlog::NumberedLeaves(hasher_, 300);
  for (size_t i = 50; i < 200; ++i) fork.push_back(hasher_.Node(forked[i], forked[i]));
  const tlog::Hash fork_root = tlog::ReferenceRoot(hasher_, fork);
  tlog::MemoryHashes hashes(fork);
  tlog::TreeReader reader(hashes);
  std::vector<tlog::Hash> proof;
  ASSERT_TRUE(reader.ConsistencyProof(100, 200, &proof).ok());
  WitnessAnswer a = witness_->AddCheckpoint(Body(100, proof, Checkpoint(200, &fork_root)), kNow);
  EXPECT_EQ(a.status, 422) << a.body;
  EXPECT_EQ(witness_->counters().evidence, 1u);
  EXPECT_EQ(witness_->Logs().at(kOrigin).size, 100u);
  size_t kept = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir_ / "state/evidence")) {
    std::ifstream f(e.path());
    std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    EXPECT_NE(text.find(tlog::Base64Encode(fork_root)), std::string::npos) << text;
    EXPECT_NE(text.find(tlog::Base64Encode(Root(100))), std::string::npos) << text;
    ++kept;
  }
  EXPECT_EQ(kept, 1u);
  // The honest history goes on.
  EXPECT_EQ(Add(100, 200).status, 200);
}

// A full disk: the state cannot be stored, so nothing is cosigned (503) and
// what is held stays; once there is room, the same request is cosigned.
TEST_F(WitnessTest, AFullDiskCosignsNothingUntilThereIsRoom) {
  if (::geteuid() != 0) GTEST_FAIL() << "needs root to mount a small tmpfs";
  const std::string small = dir_ / "small";
  ASSERT_TRUE(std::filesystem::create_directory(small));
  ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=256k"), 0) << strerror(errno);
  struct Unmount {
    std::string path;
    ~Unmount() { ::umount2(path.c_str(), MNT_DETACH); }
  } unmount{small};
  {
    witness_.reset();
    WitnessState state;
    ASSERT_TRUE(WitnessState::Open(small + "/state", &state).ok());
    witness_ = std::make_unique<Witness>(key_, Logs(), std::move(state));
  }
  ASSERT_EQ(Add(0, 100).status, 200);
  {
    std::ofstream fill(small + "/fill", std::ios::binary);
    const std::string block(4096, 'x');
    while (fill.write(block.data(), block.size())) {
    }
  }
  const std::string body = Body(100, Proof(100, 200), Checkpoint(200));
  WitnessAnswer a = witness_->AddCheckpoint(body, kNow);
  EXPECT_EQ(a.status, 503) << a.body;
  EXPECT_EQ(witness_->Logs().at(kOrigin).size, 100u);
  EXPECT_EQ(witness_->counters().store_failed, 1u);
  std::filesystem::remove(small + "/fill");
  a = witness_->AddCheckpoint(body, kNow);
  EXPECT_EQ(a.status, 200) << a.body;
  EXPECT_TRUE(Cosigns(a, 200));
  WitnessState reread;
  ASSERT_TRUE(WitnessState::Open(small + "/state", &reread).ok());
  EXPECT_EQ(reread.Get(kOrigin).size, 200u);
}

// The spec's race: the check of the old size and the store are one step, so
// of many requests from the same old size at once exactly one is cosigned,
// and what is held is that one's (never rolled back by a slower other).
TEST_F(WitnessTest, OfRacingRequestsFromOneSizeExactlyOneIsCosigned) {
  ASSERT_EQ(Add(0, 100).status, 200);
  std::vector<std::string> bodies;
  for (uint64_t size = 101; size <= 116; ++size) {
    bodies.push_back(Body(100, Proof(100, size), Checkpoint(size)));
  }
  std::vector<int> status(bodies.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < bodies.size(); ++i) {
    threads.emplace_back([&, i] { status[i] = witness_->AddCheckpoint(bodies[i], kNow).status; });
  }
  for (std::thread& t : threads) t.join();
  int cosigned = 0;
  uint64_t winner = 0;
  for (size_t i = 0; i < status.size(); ++i) {
    if (status[i] == 200) {
      ++cosigned;
      winner = 101 + i;
    } else {
      EXPECT_EQ(status[i], 409) << i;
    }
  }
  EXPECT_EQ(cosigned, 1);
  EXPECT_EQ(witness_->Logs().at(kOrigin).size, winner);
  Reopen();
  EXPECT_EQ(witness_->Logs().at(kOrigin).size, winner);
}

TEST_F(WitnessTest, AStateFileThatDoesNotParseStopsTheWitness) {
  ASSERT_EQ(Add(0, 100).status, 200);
  witness_.reset();
  std::string file;
  for (const auto& e : std::filesystem::directory_iterator(dir_ / "state/logs")) file = e.path();
  ASSERT_FALSE(file.empty());
  std::string text;
  {
    std::ifstream f(file);
    text.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }
  for (const std::string& damaged :
       {text.substr(0, 30), std::string("latch-witness-state v1\nexample.com/log\n01\n"),
        std::string(""),
        "latch-witness-state v1\nother.example/log\n5\n" + tlog::Base64Encode(Root(5)) + "\n\n"}) {
    std::ofstream(file, std::ios::trunc) << damaged;
    WitnessState state;
    Status s = WitnessState::Open(dir_ / "state", &state);
    EXPECT_EQ(s.code(), Status::Code::kCorruption) << damaged << ": " << s.ToString();
  }
}

}  // namespace
}  // namespace latch::witness
