// The collector's channel, in process, against test agents speaking the real
// protocol over CURVE on loopback.
#include "collector/ingest/collector_server.h"

#include <arpa/inet.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>
#include <tuple>
#include <zmq.hpp>

#include "collector/grants/grant_keys.h"
#include "collector/index/record_view.h"
#include "collector/ingest/state_snapshot.h"
#include "collector/ledger/file_ledger.h"
#include "https_client.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/merkle_hash.h"
#include "lib/tlog/proof.h"
#include "schemas/canonical.h"
#include "schemas/event.capnp.h"
#include "schemas/grant_signature.h"
#include "schemas/join_token.h"
#include "schemas/record_codec.h"
#include "schemas/wire.capnp.h"
#include "temp_dir.h"
#include "test_policy.h"

namespace latch::collector {
namespace {

std::string Str(capnp::Data::Reader d) {
  return {reinterpret_cast<const char*>(d.begin()), d.size()};
}
capnp::Data::Reader Bytes(const std::string& s) {
  return {reinterpret_cast<const capnp::byte*>(s.data()), s.size()};
}

// A test agent: a CURVE DEALER with its own key.
class TestAgent {
 public:
  TestAgent(zmq::context_t& ctx, const std::string& endpoint, const std::string& server_key) {
    char pub[41], sec[41];
    zmq_curve_keypair(pub, sec);
    public_key = pub;
    socket_ = std::make_unique<zmq::socket_t>(ctx, zmq::socket_type::dealer);
    socket_->set(zmq::sockopt::curve_serverkey, server_key);
    socket_->set(zmq::sockopt::curve_publickey, std::string(pub));
    socket_->set(zmq::sockopt::curve_secretkey, std::string(sec));
    socket_->set(zmq::sockopt::linger, 0);
    endpoint_ = endpoint;
  }
  void Connect() { socket_->connect(endpoint_); }
  // A new connection (and handshake): ZeroMQ does not retry one the
  // collector's ZAP handler refused; the agent's link makes a new socket.
  void Reconnect() {
    socket_->disconnect(endpoint_);
    socket_->connect(endpoint_);
  }
  void SendRaw(const std::string& bytes) {
    socket_->send(zmq::buffer(bytes), zmq::send_flags::none);
  }
  void Send(capnp::MessageBuilder& m) {
    auto words = capnp::messageToFlatArray(m);
    auto b = words.asBytes();
    SendRaw(std::string(reinterpret_cast<const char*>(b.begin()), b.size()));
  }
  // The next message of kind `which`, skipping others; false on timeout.
  bool Receive(schema::Envelope::Which which, std::string* out, int timeout_ms = 5000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (std::chrono::steady_clock::now() < deadline) {
      zmq::pollitem_t item{socket_->handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(50));
      if (!(item.revents & ZMQ_POLLIN)) continue;
      zmq::message_t msg;
      (void)socket_->recv(msg);
      kj::Array<capnp::word> words = kj::heapArray<capnp::word>(msg.size() / 8);
      std::memcpy(words.begin(), msg.data(), words.size() * 8);
      capnp::FlatArrayMessageReader r(words.asPtr());
      if (r.getRoot<schema::Envelope>().which() == which) {
        *out = msg.to_string();
        return true;
      }
    }
    return false;
  }
  // Reads and drops whatever arrives until nothing has for `quiet_ms`.
  void Drain(int quiet_ms) {
    zmq::message_t msg;
    while (true) {
      zmq::pollitem_t item{socket_->handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(quiet_ms));
      if (!(item.revents & ZMQ_POLLIN)) return;
      while (socket_->recv(msg, zmq::recv_flags::dontwait)) {
      }
    }
  }
  std::string public_key;

 private:
  std::unique_ptr<zmq::socket_t> socket_;
  std::string endpoint_;
};

template <typename Fn>
void WithEnvelope(const std::string& bytes, Fn fn) {
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / 8);
  std::memcpy(words.begin(), bytes.data(), words.size() * 8);
  capnp::FlatArrayMessageReader r(words.asPtr());
  fn(r.getRoot<schema::Envelope>());
}

class CollectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Keys first (a throwaway server), so the agent keys can be enrolled.
    config_.data_dir = dir_ / "data";
    config_.origin = "test.example/ledger";
    config_.batch_max_age_ms = 1;
    int port = 0;
    {  // a loopback port nobody listens on now
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in b{};
      b.sin_family = AF_INET;
      b.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      socklen_t blen = sizeof(b);
      ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&b), blen), 0);
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&b), &blen);
      ::close(fd);
      port = ntohs(b.sin_port);
    }
    config_.endpoints = {"tcp://127.0.0.1:" + std::to_string(port)};
    endpoint_ = config_.endpoints[0];
    std::unique_ptr<CollectorServer> probe;
    ASSERT_TRUE(CollectorServer::Open(config_, &probe).ok());
    server_key_ = probe->curve_public_key();
    probe.reset();
    agent_ = std::make_unique<TestAgent>(ctx_, endpoint_, server_key_);
    config_.agents[agent_->public_key] = "host-a";
    ASSERT_TRUE(CollectorServer::Open(config_, &server_).ok());
    thread_ = std::thread([this] { run_status_ = server_->Run(); });
    agent_->Connect();
  }
  void TearDown() override {
    server_->Stop();
    thread_.join();
    EXPECT_TRUE(run_status_.ok()) << run_status_.ToString();
  }
  // One request on the running collector's admin socket; its reply.
  std::string AdminCall(const std::string& req) {
    zmq::socket_t admin(ctx_, zmq::socket_type::req);
    admin.set(zmq::sockopt::linger, 0);
    admin.set(zmq::sockopt::rcvtimeo, 10000);  // a collector that stopped answers nothing
    admin.connect(server_->admin_endpoint());
    admin.send(zmq::buffer(req), zmq::send_flags::none);
    zmq::message_t reply;
    if (!admin.recv(reply)) return "(no reply)";
    return reply.to_string();
  }
  void Hello(TestAgent& a, const std::string& host, uint64_t session = 0,
             uint64_t last_acknowledged = 0, uint64_t checkpoint_size = 0) {
    capnp::MallocMessageBuilder m;
    auto h = m.initRoot<schema::Envelope>().initHello();
    h.setHostId(host);
    h.setBootId(Bytes(boot_));
    h.setSession(session);
    h.setLastAcknowledgedSequence(last_acknowledged);
    h.setCheckpointSize(checkpoint_size);
    a.Send(m);
  }
  // `n` Hellos from host-a, each of an agent boot never seen before (each is
  // an agentConnected record and answers: a Welcome and the host's grant
  // set). The answers are read and dropped as they come, as an agent reads
  // them: a peer that never reads fills its pipe, and ZeroMQ then drops what
  // the collector sends it later (the host's grant set carries its policy
  // since issue 16, and 10,000 of them overflowed it).
  // With `drain`, what came back is read (and dropped) every 256 Hellos.
  void HellosOfNewBoots(uint64_t n, char fill, bool drain = true) {
    std::string ignored;
    for (uint64_t i = 0; i < n; ++i) {
      if (drain && i % 256 == 255) (void)agent_->Receive(schema::Envelope::HELLO, &ignored, 5);
      capnp::MallocMessageBuilder m;
      auto h = m.initRoot<schema::Envelope>().initHello();
      h.setHostId("host-a");
      std::string boot(16, fill);
      std::memcpy(boot.data(), &i, sizeof(i));
      h.setBootId(Bytes(boot));
      agent_->Send(m);
    }
  }
  void Batch(TestAgent& a, uint64_t first, uint64_t count, uint64_t checkpoint_size) {
    capnp::MallocMessageBuilder m;
    auto b = m.initRoot<schema::Envelope>().initEventBatch();
    b.setBootId(Bytes(boot_));
    b.setCheckpointSize(checkpoint_size);
    auto rs = b.initRecords(static_cast<unsigned>(count));
    for (unsigned i = 0; i < count; ++i) {
      rs[i].setSequence(first + i);
      rs[i].setKind(schema::RecordKind::EVENT);
      rs[i].setEventTimeNs(1000 + static_cast<int64_t>(first + i));
      rs[i].setPayload(Bytes(Payload(first + i)));
    }
    a.Send(m);
  }
  static std::string Payload(uint64_t seq) { return "event-" + std::to_string(seq) + "-padding!"; }
  // Checks a receipt as an agent does; returns the checkpoint it shows.
  tlog::Checkpoint CheckReceipt(const std::string& bytes, uint64_t expect_through) {
    tlog::Checkpoint cp;
    WithEnvelope(bytes, [&](schema::Envelope::Reader env) {
      auto r = env.getReceipt();
      EXPECT_EQ(r.getThroughSequence(), expect_through);
      tlog::NoteVerifier v;
      ASSERT_TRUE(tlog::NoteVerifier::Parse(ledger_vkey_, &v).ok());
      ASSERT_TRUE(tlog::OpenCheckpoint(Str(r.getCheckpoint()), v, &cp).ok());
      ledger::LedgerRecord rec;
      rec.kind = ledger::RecordKind::kEvent;
      rec.host_id = "host-a";
      rec.agent_boot_id = boot_;
      rec.sequence = r.getThroughSequence();
      rec.event_time_ns = 1000 + static_cast<int64_t>(rec.sequence);
      rec.receive_time_ns = r.getThroughReceiveTimeNs();
      rec.payload = Payload(rec.sequence);
      std::string entry;
      ASSERT_TRUE(ledger::EncodeRecord(rec, &entry).ok());
      std::vector<tlog::Hash> proof;
      for (auto h : r.getInclusionProof()) {
        tlog::Hash x;
        ASSERT_EQ(h.size(), 32u);
        std::memcpy(x.data(), h.begin(), 32);
        proof.push_back(x);
      }
      tlog::Hash leaf =
          tlog::MerkleHasher().Leaf({reinterpret_cast<const uint8_t*>(entry.data()), entry.size()});
      EXPECT_TRUE(tlog::VerifyInclusion(r.getThroughIndex(), cp.size, leaf, proof, cp.root).ok());
    });
    return cp;
  }

  ledger::TempDir dir_;
  CollectorConfig config_;
  std::string endpoint_, server_key_, ledger_vkey_;
  std::string boot_ = std::string(16, '\x42');
  zmq::context_t ctx_;
  std::unique_ptr<TestAgent> agent_;
  std::unique_ptr<CollectorServer> server_;
  std::thread thread_;
  Status run_status_;
};

TEST_F(CollectorTest, BatchIsAcknowledgedWithAVerifiableReceiptAndDuplicatesAreDropped) {
  ledger_vkey_ = server_->ledger_vkey();
  Hello(*agent_, "host-a");
  std::string set;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::GRANT_SET, &set));  // sent on hello
  Batch(*agent_, 1, 10, 0);
  std::string receipt;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &receipt));
  tlog::Checkpoint first = CheckReceipt(receipt, 10);
  WithEnvelope(receipt, [&](schema::Envelope::Reader env) {
    auto r = env.getReceipt();
    EXPECT_EQ(r.getAppendedFirstSequence(), 1u);
    EXPECT_EQ(r.getAppendedCount(), 10u);
    EXPECT_EQ(r.getAppendedFirstIndex() + 9, r.getThroughIndex());
  });
  // A retransmission of 5..10 plus 11..12: only two records are new.
  Batch(*agent_, 5, 8, first.size);
  ASSERT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &receipt));
  tlog::Checkpoint second = CheckReceipt(receipt, 12);
  WithEnvelope(receipt, [&](schema::Envelope::Reader env) {
    auto r = env.getReceipt();
    EXPECT_EQ(r.getConsistencyFrom(), first.size);
    std::vector<tlog::Hash> proof;
    for (auto h : r.getConsistencyProof()) {
      tlog::Hash x;
      std::memcpy(x.data(), h.begin(), 32);
      proof.push_back(x);
    }
    EXPECT_TRUE(
        tlog::VerifyConsistency(first.size, second.size, proof, first.root, second.root).ok());
  });
  EXPECT_EQ(server_->counters().records_appended.load(), 12u);
  EXPECT_EQ(server_->counters().records_duplicate.load(), 6u);
  // An all-duplicate batch still gets a receipt.
  Batch(*agent_, 1, 3, second.size);
  ASSERT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &receipt));
  CheckReceipt(receipt, 12);
  EXPECT_EQ(server_->counters().records_appended.load(), 12u);
}

// Issue 13.5 (a lossy link): a new session's Hello is answered with a receipt
// for what the collector already holds of that boot, so the agent need not
// resend it; every receipt names the session whose Hello its consistency
// proof counts from, so the agent can set aside one that crossed a new Hello.
TEST_F(CollectorTest, AHelloIsAnsweredWithWhatIsHeldAndReceiptsNameTheirSession) {
  ledger_vkey_ = server_->ledger_vkey();
  Hello(*agent_, "host-a", /*session=*/1);
  Batch(*agent_, 1, 10, 0);
  std::string receipt;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &receipt));
  tlog::Checkpoint first = CheckReceipt(receipt, 10);
  WithEnvelope(receipt,
               [&](schema::Envelope::Reader env) { EXPECT_EQ(env.getReceipt().getSession(), 1u); });
  // The agent lost that receipt and starts session 2 having proven only 4.
  Hello(*agent_, "host-a", /*session=*/2, /*last_acknowledged=*/4, first.size);
  ASSERT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &receipt));  // no batch sent
  CheckReceipt(receipt, 10);
  WithEnvelope(receipt, [&](schema::Envelope::Reader env) {
    EXPECT_EQ(env.getReceipt().getSession(), 2u);
    EXPECT_EQ(env.getReceipt().getConsistencyFrom(), first.size);
  });
  // A Hello that already has everything proven gets no receipt.
  Hello(*agent_, "host-a", /*session=*/3, /*last_acknowledged=*/10, first.size);
  EXPECT_FALSE(agent_->Receive(schema::Envelope::RECEIPT, &receipt, 500));
  EXPECT_EQ(server_->counters().records_appended.load(), 10u);
}

// Issue 13.5 (CI saw 8,192 duplicates of 16,000 under load): every Hello is
// answered by a Welcome naming its session and the highest sequence of the
// boot held or being appended, sent after all the agent sent before the
// Hello, so an agent whose session timed out while its batches queued here
// resends none of them.
TEST_F(CollectorTest, EveryHelloIsAnsweredByAWelcomeSayingWhatIsHeld) {
  auto welcome_of = [&](uint64_t session, uint64_t* held) {
    std::string msg;
    if (!agent_->Receive(schema::Envelope::WELCOME, &msg)) return false;
    WithEnvelope(msg, [&](schema::Envelope::Reader env) {
      EXPECT_EQ(env.getWelcome().getSession(), session);
      EXPECT_EQ(Str(env.getWelcome().getBootId()), boot_);
      *held = env.getWelcome().getHeldThroughSequence();
    });
    return true;
  };
  uint64_t held = 99;
  Hello(*agent_, "host-a", /*session=*/1);
  ASSERT_TRUE(welcome_of(1, &held));
  EXPECT_EQ(held, 0u);  // a boot never heard of
  // Batches and then a Hello with nothing acknowledged, without waiting for
  // receipts: the Welcome counts every record sent before it.
  Batch(*agent_, 1, 10, 0);
  Batch(*agent_, 11, 10, 0);
  Hello(*agent_, "host-a", /*session=*/2);
  ASSERT_TRUE(welcome_of(2, &held));
  EXPECT_EQ(held, 20u);
  // Another boot of the same host holds nothing yet.
  boot_ = std::string(16, '\x43');
  Hello(*agent_, "host-a", /*session=*/3);
  ASSERT_TRUE(welcome_of(3, &held));
  EXPECT_EQ(held, 0u);
  for (int i = 0; i < 100 && server_->counters().records_appended.load() < 20; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(server_->counters().records_appended.load(), 20u);  // each once
}

// Issue 13.5: an agent that found a damaged region in its spool sends one
// spoolCorrupt loss record, under the last lost sequence, in place of the
// records it lost; the collector accepts that declared jump and no other.
TEST_F(CollectorTest, ADeclaredSpoolLossIsTheOnlyGapAccepted) {
  ledger_vkey_ = server_->ledger_vkey();
  Hello(*agent_, "host-a");
  std::string msg;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::GRANT_SET, &msg));
  Batch(*agent_, 1, 5, 0);
  ASSERT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &msg));
  tlog::Checkpoint cp = CheckReceipt(msg, 5);
  auto send = [&](std::vector<std::tuple<uint64_t, schema::LossKind, uint64_t>> losses,
                  uint64_t event_seq) {
    capnp::MallocMessageBuilder m;
    auto b = m.initRoot<schema::Envelope>().initEventBatch();
    b.setBootId(Bytes(boot_));
    b.setCheckpointSize(cp.size);
    auto rs = b.initRecords(static_cast<unsigned>(losses.size() + 1));
    unsigned i = 0;
    for (auto [seq, kind, first] : losses) {
      capnp::MallocMessageBuilder lm;
      auto l = lm.initRoot<schema::LossEvent>();
      l.setKind(kind);
      l.setCount(seq - first + 1);
      l.setFirstLostSequence(first);
      rs[i].setSequence(seq);
      rs[i].setKind(schema::RecordKind::LOSS);
      rs[i].setPayload(Bytes(schema::CanonicalBytes(l.asReader())));
      ++i;
    }
    rs[i].setSequence(event_seq);
    rs[i].setKind(schema::RecordKind::EVENT);
    rs[i].setEventTimeNs(1000 + static_cast<int64_t>(event_seq));
    rs[i].setPayload(Bytes(Payload(event_seq)));
    agent_->Send(m);
  };
  // An undeclared gap: nothing appended, the agent is asked for 6 (and told
  // again that 5 is the last record held).
  auto refused_as_gap = [&] {
    ASSERT_TRUE(agent_->Receive(schema::Envelope::RESEND_FROM, &msg));
    WithEnvelope(msg, [](schema::Envelope::Reader env) {
      EXPECT_EQ(env.getResendFrom().getSequence(), 6u);
    });
    ASSERT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &msg));
    CheckReceipt(msg, 5);
  };
  send({}, 10);
  refused_as_gap();
  // A declaration that does not start at 6, or of another kind: still a gap.
  send({{9, schema::LossKind::SPOOL_CORRUPT, 7}}, 10);
  refused_as_gap();
  send({{9, schema::LossKind::SPOOL_FULL, 6}}, 10);
  refused_as_gap();
  // A loss record whose payload is not a LossEvent at all declares nothing.
  {
    capnp::MallocMessageBuilder m;
    auto b = m.initRoot<schema::Envelope>().initEventBatch();
    b.setBootId(Bytes(boot_));
    b.setCheckpointSize(cp.size);
    auto rs = b.initRecords(1);
    rs[0].setSequence(9);
    rs[0].setKind(schema::RecordKind::LOSS);
    rs[0].setPayload(Bytes(std::string("\xff\xff\xff\xff garbage, not words", 30)));
    agent_->Send(m);
    refused_as_gap();
  }
  EXPECT_EQ(server_->counters().records_appended.load(), 5u);
  // Declared from 6 to 9: the loss record and event 10 are appended.
  send({{9, schema::LossKind::SPOOL_CORRUPT, 6}}, 10);
  ASSERT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &msg));
  CheckReceipt(msg, 10);
  EXPECT_EQ(server_->counters().records_appended.load(), 7u);
  EXPECT_EQ(server_->counters().records_declared_lost.load(), 4u);
  // And the sequence goes on from 11 as usual.
  Batch(*agent_, 11, 2, 0);
  ASSERT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &msg));
  CheckReceipt(msg, 12);
}

TEST_F(CollectorTest, UnenrolledKeyIsRefusedAndMalformedInputDoesNotDisturbOthers) {
  ledger_vkey_ = server_->ledger_vkey();
  TestAgent stranger(ctx_, endpoint_, server_key_);
  stranger.Connect();
  Hello(stranger, "host-a");
  std::string any;
  EXPECT_FALSE(stranger.Receive(schema::Envelope::GRANT_SET, &any, 500));
  EXPECT_GE(server_->counters().refused_keys.load(), 1u);

  Hello(*agent_, "host-a");
  agent_->SendRaw("not a capnp message");  // 19 bytes: not whole words
  agent_->SendRaw(std::string(64, '\xff'));
  std::string refused;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::REFUSED, &refused));
  Batch(*agent_, 1, 2, 0);
  std::string receipt;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &receipt));
  CheckReceipt(receipt, 2);
  EXPECT_GE(server_->counters().malformed_messages.load(), 2u);
  // Over max_message_bytes (16 MiB by default, 64 MiB hard cap in libzmq):
  // refused with a reply, and the connection carries on.
  agent_->SendRaw(std::string(config_.max_message_bytes + 8, '\0'));
  ASSERT_TRUE(agent_->Receive(schema::Envelope::REFUSED, &refused, 10000));
  EXPECT_EQ(server_->counters().oversized_messages.load(), 1u);
  Batch(*agent_, 3, 1, 0);
  ASSERT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &receipt));
  CheckReceipt(receipt, 3);
}

TEST_F(CollectorTest, IssuedGrantReachesItsHostSignedAndRevocationRemovesIt) {
  Hello(*agent_, "host-a");
  std::string set;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::GRANT_SET, &set));
  // Through the admin socket, as latch-collector grant does.
  zmq::socket_t admin(ctx_, zmq::socket_type::req);
  admin.connect(server_->admin_endpoint());
  auto ask = [&](const std::string& req) {
    admin.send(zmq::buffer(req), zmq::send_flags::none);
    zmq::message_t reply;
    (void)admin.recv(reply);
    return reply.to_string();
  };
  std::string reply = ask(R"({"op":"issue","principals":[{"uid":6161}],"resources":[1],)"
                          R"("hosts":["host-a"],"duration_s":60})");
  EXPECT_NE(reply.find("\"ok\":true"), std::string::npos) << reply;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::GRANT_SET, &set));
  tlog::NoteVerifier grant_key;
  ASSERT_TRUE(tlog::NoteVerifier::Parse(server_->grant_vkey(), &grant_key).ok());
  uint64_t version1 = 0;
  WithEnvelope(set, [&](schema::Envelope::Reader env) {
    std::string set_bytes;
    ASSERT_TRUE(schema::OpenSignedGrantSet(grant_key, env.getGrantSet(), &set_bytes).ok());
    ASSERT_TRUE(
        schema::ReadCanonical<schema::GrantSet>(set_bytes, "set", [&](schema::GrantSet::Reader s) {
          EXPECT_EQ(std::string(s.getHostId().cStr()), "host-a");
          EXPECT_EQ(s.getGrants().size(), 1u);
          version1 = s.getVersion();
          std::string g;
          EXPECT_TRUE(schema::OpenSignedGrant(grant_key, s.getGrants()[0], &g).ok());
          return Status::Ok();
        }).ok());
  });
  EXPECT_GT(version1, 0u);
  reply =
      ask(R"({"op":"issue","principals":[],"resources":[1],"hosts":["host-a"],"duration_s":60})");
  EXPECT_NE(reply.find("needs a principal"), std::string::npos) << reply;
  reply = ask(R"({"op":"revoke","grant_id":1,"reason":"done"})");
  EXPECT_NE(reply.find("\"ok\":true"), std::string::npos) << reply;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::GRANT_SET, &set));
  WithEnvelope(set, [&](schema::Envelope::Reader env) {
    std::string set_bytes;
    ASSERT_TRUE(schema::OpenSignedGrantSet(grant_key, env.getGrantSet(), &set_bytes).ok());
    ASSERT_TRUE(
        schema::ReadCanonical<schema::GrantSet>(set_bytes, "set", [&](schema::GrantSet::Reader s) {
          EXPECT_EQ(s.getGrants().size(), 0u);
          EXPECT_GT(s.getVersion(), version1);
          return Status::Ok();
        }).ok());
  });
}

// Issue 14: durations are checked, not wrapped: a duration_s whose
// nanoseconds do not fit is refused (it would have made a grant that ended
// before it began, or in the distant past), and the collector goes on.
TEST_F(CollectorTest, AnOperatorGrantOfAHugeDurationIsRefused) {
  std::string reply =
      AdminCall(R"({"op":"issue","principals":[{"uid":1}],"resources":[1],"hosts":["host-a"],)"
                R"("duration_s":9223372036854775807})");
  EXPECT_NE(reply.find("\"ok\":false"), std::string::npos) << reply;
  EXPECT_NE(reply.find("too large"), std::string::npos) << reply;
  reply = AdminCall(
      R"({"op":"issue","principals":[{"uid":1}],"resources":[1],"hosts":["host-a"],"duration_s":60})");
  EXPECT_NE(reply.find("\"ok\":true"), std::string::npos) << reply;
}

// Issue 14: a full disk under the ledger made the collector stop with exit
// status 0 (the unit's Restart=on-failure left it down), and while idle an
// operator's grant failed with ENOSPC, /healthz said ok, and the ledger went
// on refusing writes after space returned. Now the collector stays up: it
// answers reads, says why it is not ready (/healthz 503, a metric), refuses
// writes with the reason, acknowledges nothing it could not write, and
// resumes by itself when the disk takes writes again, with every record of
// the agent in the ledger exactly once. On a 4 MiB tmpfs, filled.
TEST_F(CollectorTest, AFullDiskIsSurvivedAndWritesResumeByThemselves) {
  if (::geteuid() != 0) GTEST_FAIL() << "needs root to mount a small tmpfs";
  server_->Stop();
  thread_.join();
  server_.reset();
  std::string small = dir_ / "small";
  ASSERT_TRUE(std::filesystem::create_directory(small));
  ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=4m"), 0) << strerror(errno);
  config_.data_dir = small + "/data";
  config_.api_enabled = true;
  config_.api_port = 0;
  config_.api_tokens[api::TokenHash("ops-token-0123456789")] = "ops";
  // The same CURVE key, so that the test agent can talk to it.
  ASSERT_TRUE(std::filesystem::create_directory(config_.data_dir));
  std::filesystem::copy_file(dir_ / "data/curve.key", config_.data_dir + "/curve.key");
  ASSERT_TRUE(CollectorServer::Open(config_, &server_).ok());
  std::atomic<bool> ended{false};
  thread_ = std::thread([this, &ended] {
    run_status_ = server_->Run();
    ended = true;
  });
  for (int i = 0; i < 200 && server_->api_port() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_NE(server_->api_port(), 0);
  namespace http = boost::beast::http;
  auto get = [&](const std::string& target) {
    return latch::testing::HttpsCall(server_->api_port(), config_.data_dir + "/api.crt",
                                     http::verb::get, target, "ops-token-0123456789");
  };
  const std::string issue =
      R"({"op":"issue","principals":[{"uid":1}],"resources":[1],"hosts":["host-a"],"duration_s":60})";
  // Serving, and records 1..10 in, before the disk fills.
  ASSERT_NE(AdminCall(R"({"op":"status"})").find("\"ok\":true"), std::string::npos);
  Hello(*agent_, "host-a", /*session=*/1);
  Batch(*agent_, 1, 10, 0);
  std::string msg;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &msg));
  EXPECT_EQ(get("/healthz").status, 200);
  {
    std::ofstream fill(small + "/fill", std::ios::binary);
    std::string block(64 * 1024, 'x');
    while (fill.write(block.data(), block.size())) {
    }
  }
  // Idle on a full disk: the operator's grant is refused with the reason.
  std::string reply = AdminCall(issue);
  EXPECT_EQ(reply.find("\"ok\":true"), std::string::npos) << reply;
  // The agent's next records are not acknowledged...
  Batch(*agent_, 11, 10, 0);
  EXPECT_FALSE(agent_->Receive(schema::Envelope::RECEIPT, &msg, 1500));
  // ...and the collector is up, reads are answered and it says why it is not ready.
  EXPECT_FALSE(ended) << run_status_.ToString();
  auto health = get("/healthz");
  EXPECT_EQ(health.status, 503) << health.body;
  EXPECT_NE(health.body.find("cannot be written"), std::string::npos) << health.body;
  auto metrics = get("/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("latch_collector_ledger_writable 0\n"), std::string::npos)
      << metrics.body;
  EXPECT_EQ(get("/checkpoint").status, 200);
  std::string status = AdminCall(R"({"op":"status"})");
  EXPECT_NE(status.find("\"ledger_writable\":false"), std::string::npos) << status;
  reply = AdminCall(issue);
  EXPECT_NE(reply.find("cannot be written"), std::string::npos) << reply;
  auto post = latch::testing::HttpsCall(server_->api_port(), config_.data_dir + "/api.crt",
                                        http::verb::post, "/v1/grants/1/revoke",
                                        "ops-token-0123456789", "{}");
  EXPECT_EQ(post.status, 503) << post.body;
  EXPECT_NE(post.body.find("nothing was changed"), std::string::npos) << post.body;
  // Room again: within a few seconds it takes writes, with no restart.
  std::filesystem::remove(small + "/fill");
  int healthy_after_ms = -1;
  for (int i = 0; i < 100; ++i) {
    if (get("/healthz").status == 200) {
      healthy_after_ms = i * 100;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_GE(healthy_after_ms, 0) << "still not ready 10 s after the disk had room";
  // The agent's new session: the Welcome says 10 are held; it resends 11..20.
  Hello(*agent_, "host-a", /*session=*/2, /*last_acknowledged=*/10);
  ASSERT_TRUE(agent_->Receive(schema::Envelope::WELCOME, &msg));
  WithEnvelope(msg, [](schema::Envelope::Reader env) {
    EXPECT_EQ(env.getWelcome().getHeldThroughSequence(), 10u);
  });
  Batch(*agent_, 11, 10, 0);
  ASSERT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &msg));
  WithEnvelope(msg, [](schema::Envelope::Reader env) {
    EXPECT_EQ(env.getReceipt().getThroughSequence(), 20u);
  });
  reply = AdminCall(issue);
  EXPECT_NE(reply.find("\"ok\":true"), std::string::npos) << reply;
  metrics = get("/metrics");
  EXPECT_NE(metrics.body.find("latch_collector_ledger_writable 1\n"), std::string::npos);
  EXPECT_NE(metrics.body.find("latch_collector_ledger_outages_total 1\n"), std::string::npos)
      << metrics.body;
  EXPECT_FALSE(ended);
  // An append that fails on the disk (its batch already accepted, as a
  // Welcome may have said): once writes resume the agent is asked for it,
  // so an agent with nothing newer to send does not wait for ever.
  {
    std::ofstream fill(small + "/fill", std::ios::binary);
    std::string block(64 * 1024, 'x');
    while (fill.write(block.data(), block.size())) {
    }
  }
  Batch(*agent_, 21, 10, 0);
  EXPECT_FALSE(agent_->Receive(schema::Envelope::RECEIPT, &msg, 1500));
  EXPECT_EQ(get("/healthz").status, 503);
  // More records of its own than it keeps while it cannot write (each new
  // agent boot is an agentConnected record): the excess is counted, and
  // once writes resume one ownRecordsDropped record says how many.
  HellosOfNewBoots(10'100, '\x77');
  auto dropped_now = [&] {
    const std::string name = "\nlatch_collector_records_unwritten_dropped_total ";
    std::string text = get("/metrics").body;
    size_t at = text.find(name);
    return at == std::string::npos ? uint64_t{0} : std::stoull(text.substr(at + name.size()));
  };
  uint64_t dropped = 0;
  for (int i = 0; i < 200 && (dropped = dropped_now()) < 90; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_GE(dropped, 90u);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  dropped = dropped_now();
  // The agent reads the answers to those Hellos, as a real one does as they
  // come: a queue left full would drop the ResendFrom below (the collector
  // drops replies to an agent that does not read; CI saw it once, under load).
  agent_->Drain(300);
  std::filesystem::remove(small + "/fill");
  ASSERT_TRUE(agent_->Receive(schema::Envelope::RESEND_FROM, &msg, 10000));
  WithEnvelope(
      msg, [](schema::Envelope::Reader env) { EXPECT_EQ(env.getResendFrom().getSequence(), 21u); });
  Batch(*agent_, 21, 10, 0);
  ASSERT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &msg));
  WithEnvelope(msg, [](schema::Envelope::Reader env) {
    EXPECT_EQ(env.getReceipt().getThroughSequence(), 30u);
  });
  server_->Stop();
  thread_.join();
  EXPECT_TRUE(run_status_.ok()) << run_status_.ToString();
  server_.reset();
  // Every record of the agent in the ledger once, in order; the ledger opens clean.
  {
    std::unique_ptr<ledger::Ledger> l;
    Status s = ledger::FileLedger::Open(config_.data_dir + "/ledger",
                                        ledger::FileLedger::Mode::kReadOnly, &l);
    ASSERT_TRUE(s.ok()) << s.ToString();
    std::vector<uint64_t> sequences;
    std::vector<std::string> drops;
    for (uint64_t i = 0; i < l->size(); ++i) {
      std::string entry;
      ASSERT_TRUE(l->ReadEntry(i, &entry).ok());
      ledger::LedgerRecord rec;
      ASSERT_TRUE(ledger::DecodeRecord(entry, &rec).ok());
      if (rec.kind == ledger::RecordKind::kEvent) sequences.push_back(rec.sequence);
      index::RecordView v;
      if (rec.kind != ledger::RecordKind::kWorkflow) continue;
      ASSERT_TRUE(index::ViewRecord(entry, &v).ok());
      if (v.kind == "ownRecordsDropped") {
        drops.push_back(v.detail["record"]["ownRecordsDropped"]["count"].get<std::string>());
      }
    }
    EXPECT_EQ(drops, std::vector<std::string>{std::to_string(dropped)});
    std::vector<uint64_t> want;
    for (uint64_t k = 1; k <= 30; ++k) want.push_back(k);
    EXPECT_EQ(sequences, want);
  }
  ::umount2(small.c_str(), MNT_DETACH);
  // TearDown stops a server: give it one on the ordinary directory.
  config_.data_dir = dir_ / "data";
  config_.api_enabled = false;
  ASSERT_TRUE(CollectorServer::Open(config_, &server_).ok());
  thread_ = std::thread([this] { run_status_ = server_->Run(); });
}

TEST_F(CollectorTest, GrantBookIsRebuiltFromTheLedgerWithTheSameVersions) {
  Hello(*agent_, "host-a");
  std::string set;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::GRANT_SET, &set));
  zmq::socket_t admin(ctx_, zmq::socket_type::req);
  admin.set(zmq::sockopt::linger, 0);
  admin.connect(server_->admin_endpoint());
  for (
      const char* req :
      {R"({"op":"issue","principals":[{"uid":1}],"resources":[1],"hosts":["host-a"],"duration_s":60})",
       R"({"op":"issue","principals":[{"user":"bob"}],"resources":[2],"hosts":["host-a","host-b"],"duration_s":60})",
       R"({"op":"revoke","grant_id":1})"}) {
    admin.send(zmq::buffer(std::string(req)), zmq::send_flags::none);
    zmq::message_t reply;
    (void)admin.recv(reply);
    ASSERT_NE(reply.to_string().find("\"ok\":true"), std::string::npos) << reply.to_string();
  }
  auto version_of = [&](const std::string& bytes, size_t* grants) {
    uint64_t v = 0;
    WithEnvelope(bytes, [&](schema::Envelope::Reader env) {
      auto sset = env.getGrantSet().getSet();
      (void)schema::ReadCanonical<schema::GrantSet>(
          std::string_view(reinterpret_cast<const char*>(sset.begin()), sset.size()), "set",
          [&](schema::GrantSet::Reader g) {
            v = g.getVersion();
            *grants = g.getGrants().size();
            return Status::Ok();
          });
    });
    return v;
  };
  std::string last;
  while (agent_->Receive(schema::Envelope::GRANT_SET, &set, 500)) last = set;
  size_t grants_before = 0;
  uint64_t before = version_of(last, &grants_before);
  EXPECT_EQ(grants_before, 1u);  // grant 2 only

  // A new collector on the same data directory: nothing but the ledger.
  server_->Stop();
  thread_.join();
  server_.reset();
  ASSERT_FALSE(std::filesystem::exists(config_.data_dir + "/grants.json"));
  ASSERT_TRUE(CollectorServer::Open(config_, &server_).ok());
  thread_ = std::thread([this] { run_status_ = server_->Run(); });
  Hello(*agent_, "host-a");
  ASSERT_TRUE(agent_->Receive(schema::Envelope::GRANT_SET, &set, 10000));
  size_t grants_after = 0;
  EXPECT_EQ(version_of(set, &grants_after), before);
  EXPECT_EQ(grants_after, 1u);
  // Ids are not reused after a restart either.
  admin.close();
  zmq::socket_t admin2(ctx_, zmq::socket_type::req);
  admin2.set(zmq::sockopt::linger, 0);
  admin2.connect(server_->admin_endpoint());
  std::string req =
      R"({"op":"issue","principals":[{"uid":3}],"resources":[1],"hosts":["host-a"],"duration_s":60})";
  admin2.send(zmq::buffer(req), zmq::send_flags::none);
  zmq::message_t reply;
  (void)admin2.recv(reply);
  EXPECT_NE(reply.to_string().find("\"grant_id\":3"), std::string::npos) << reply.to_string();
}

// Rotating the grant key: grants the old key signed stay in force (the ledger
// replay accepts them through the retired list), sets and new grants are
// signed by the new key, and the ledger records which key is in use.
TEST_F(CollectorTest, GrantKeyRotationKeepsLiveGrantsAndSignsWithTheNewKey) {
  Hello(*agent_, "host-a");
  std::string set;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::GRANT_SET, &set));
  std::string issue =
      R"({"op":"issue","principals":[{"uid":1}],"resources":[1],"hosts":["host-a"],"duration_s":600})";
  ASSERT_NE(AdminCall(issue).find("\"ok\":true"), std::string::npos);
  tlog::NoteVerifier old_key;
  ASSERT_TRUE(tlog::NoteVerifier::Parse(server_->grant_vkey(), &old_key).ok());

  std::string next_vkey, again, retired, now;
  ASSERT_TRUE(PrepareNextGrantKey(config_.data_dir, config_.origin, &next_vkey).ok());
  ASSERT_TRUE(PrepareNextGrantKey(config_.data_dir, config_.origin, &again).ok());
  EXPECT_EQ(again, next_vkey);  // prepared once, shown again
  server_->Stop();
  thread_.join();
  server_.reset();
  ASSERT_TRUE(PromoteNextGrantKey(config_.data_dir, &retired, &now).ok());
  EXPECT_EQ(retired, old_key.ToString());
  EXPECT_EQ(now, next_vkey);
  EXPECT_EQ(PromoteNextGrantKey(config_.data_dir, &retired, &now).code(),
            Status::Code::kFailedPrecondition);  // nothing prepared any more

  // Without the retired list the ledger's grant no longer verifies: that list
  // is what keeps it.
  std::filesystem::rename(config_.data_dir + "/grant.retired", config_.data_dir + "/keep");
  EXPECT_FALSE(CollectorServer::Open(config_, &server_).ok());
  std::filesystem::rename(config_.data_dir + "/keep", config_.data_dir + "/grant.retired");
  ASSERT_TRUE(CollectorServer::Open(config_, &server_).ok());
  EXPECT_EQ(server_->grant_vkey(), next_vkey);
  thread_ = std::thread([this] { run_status_ = server_->Run(); });
  ASSERT_NE(AdminCall(issue).find("\"grant_id\":2"), std::string::npos);
  Hello(*agent_, "host-a");
  std::string last;
  while (agent_->Receive(schema::Envelope::GRANT_SET, &set, 1000)) last = set;
  ASSERT_FALSE(last.empty());
  tlog::NoteVerifier new_key;
  ASSERT_TRUE(tlog::NoteVerifier::Parse(next_vkey, &new_key).ok());
  WithEnvelope(last, [&](schema::Envelope::Reader env) {
    std::string bytes;
    EXPECT_FALSE(schema::OpenSignedGrantSet(old_key, env.getGrantSet(), &bytes).ok());
    ASSERT_TRUE(schema::OpenSignedGrantSet(new_key, env.getGrantSet(), &bytes).ok());
    (void)schema::ReadCanonical<schema::GrantSet>(bytes, "set", [&](schema::GrantSet::Reader g) {
      EXPECT_EQ(g.getGrants().size(), 2u);  // the old grant is still in force
      std::string grant;
      for (auto sg : g.getGrants()) {
        bool by_old = schema::OpenSignedGrant(old_key, sg, &grant).ok();
        bool by_new = schema::OpenSignedGrant(new_key, sg, &grant).ok();
        EXPECT_NE(by_old, by_new);
        EXPECT_TRUE(
            schema::OpenSignedGrant(schema::GrantKeys({old_key, new_key}), sg, &grant).ok());
      }
      return Status::Ok();
    });
  });
  // The ledger says which key was in use from when, and which it replaced.
  std::unique_ptr<ledger::Ledger> l;
  ASSERT_TRUE(ledger::FileLedger::Open(config_.data_dir + "/ledger",
                                       ledger::FileLedger::Mode::kReadOnly, &l)
                  .ok());
  std::vector<std::string> in_use;
  std::string entry;
  for (uint64_t i = 0; i < l->size(); ++i) {
    ASSERT_TRUE(l->ReadEntry(i, &entry).ok());
    index::RecordView v;
    ASSERT_TRUE(index::ViewRecord(entry, &v, /*with_detail=*/true).ok());
    if (v.kind == "grantKeyInUse") in_use.push_back(v.detail.dump());
  }
  ASSERT_GE(in_use.size(), 2u);
  EXPECT_NE(in_use.front().find(old_key.ToString()), std::string::npos) << in_use.front();
  EXPECT_NE(in_use.back().find(next_vkey), std::string::npos) << in_use.back();
  EXPECT_NE(in_use.back().find(old_key.ToString()), std::string::npos)
      << "the retired key is named: " << in_use.back();
}

// An agent that falls silent goes on the record once, with when it was last
// heard; heard again and silent again, once more.
// Issue 16: a new [[agent]] took a restart (after SIGHUP it was still
// refused as unenrolled_key every few seconds). SIGHUP reads the config
// file again: an added agent is admitted and a removed one refused, once a
// configReloaded record is durable.
TEST_F(CollectorTest, ASighupEnrolsAddedAgentsAndRefusesRemovedOnes) {
  server_->Stop();
  thread_.join();
  server_.reset();
  TestAgent newcomer(ctx_, endpoint_, server_key_);
  const std::string path = config_.data_dir + "/../collector.toml";
  auto write_config = [&](const std::vector<std::pair<std::string, std::string>>& agents) {
    std::ofstream f(path, std::ios::trunc);
    f << "data_dir = \"" << config_.data_dir << "\"\norigin = \"" << config_.origin
      << "\"\nendpoints = [\"" << endpoint_ << "\"]\nbatch_max_age_ms = 1\n";
    for (const auto& [host, key] : agents) {
      f << "[[agent]]\nhost_id = \"" << host << "\"\ncurve_public_key = \"" << key << "\"\n";
    }
  };
  write_config({{"host-a", agent_->public_key}});
  CollectorConfig from_file;
  ASSERT_TRUE(LoadCollectorConfig(path, &from_file).ok());
  ASSERT_TRUE(CollectorServer::Open(from_file, &server_).ok());
  thread_ = std::thread([this] { run_status_ = server_->Run(); });
  std::string any;
  Hello(*agent_, "host-a");  // reconnected to the new collector, and admitted
  ASSERT_TRUE(agent_->Receive(schema::Envelope::GRANT_SET, &any));
  newcomer.Connect();
  Hello(newcomer, "host-b");
  EXPECT_FALSE(newcomer.Receive(schema::Envelope::GRANT_SET, &any, 500));  // not enrolled yet
  write_config({{"host-b", newcomer.public_key}});  // host-a removed, host-b added
  server_->RequestPolicyReload();
  bool admitted = false;
  for (int i = 0; i < 40 && !admitted; ++i) {
    newcomer.Reconnect();
    Hello(newcomer, "host-b");
    admitted = newcomer.Receive(schema::Envelope::GRANT_SET, &any, 250);
  }
  EXPECT_TRUE(admitted) << "the added agent was not admitted after SIGHUP";
  Hello(*agent_, "host-a");  // its connection was admitted before the reload
  std::string refused;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::REFUSED, &refused));
  EXPECT_NE(refused.find("not enrolled"), std::string::npos) << refused;
  // A broken file on the next SIGHUP changes nothing: what runs stays.
  {
    std::ofstream f(path, std::ios::trunc);
    f << "data_dir = [\n[[agent]]\nhost_id = 7\n\x01\xff";
  }
  server_->RequestPolicyReload();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  Hello(newcomer, "host-b");
  EXPECT_TRUE(newcomer.Receive(schema::Envelope::GRANT_SET, &any)) << "a bad file unenrolled";
  std::unique_ptr<ledger::Ledger> l;
  ASSERT_TRUE(ledger::FileLedger::Open(config_.data_dir + "/ledger",
                                       ledger::FileLedger::Mode::kReadOnly, &l)
                  .ok());
  int reloads = 0;
  std::string entry;
  for (uint64_t i = 0; i < l->size(); ++i) {
    index::RecordView v;
    if (l->ReadEntry(i, &entry).ok() && index::ViewRecord(entry, &v).ok() &&
        v.kind == "configReloaded") {
      ++reloads;
      EXPECT_NE(v.detail.dump().find("host-b"), std::string::npos) << v.detail;
    }
  }
  EXPECT_EQ(reloads, 1);
}

// Issue 16: enrolment by join token. A token is on record before it is
// shown; a key that spends it is admitted from then on (on record before
// the agent is told), across a restart; a token works once, for its host;
// refusals are recorded; a removal takes the key out.
TEST_F(CollectorTest, AJoinTokenEnrolsANewKeyOnceOnRecordAndAcrossARestart) {
  std::string any;
  // No token open: an unknown key does not get past the handshake.
  TestAgent early(ctx_, endpoint_, server_key_);
  early.Connect();
  Hello(early, "host-b");
  EXPECT_FALSE(early.Receive(schema::Envelope::REFUSED, &any, 500));
  EXPECT_GE(server_->counters().refused_keys.load(), 1u);

  auto reply = nlohmann::json::parse(
      AdminCall(R"({"op":"token_create","host":"host-b","ttl":"10m","actor":"ops"})"));
  ASSERT_TRUE(reply.value("ok", false)) << reply;
  schema::JoinToken token;
  ASSERT_TRUE(schema::DecodeJoinToken(reply.at("token").get<std::string>(), &token).ok());
  EXPECT_EQ(schema::CurveKeyZ85(token.collector_key), server_key_);
  EXPECT_EQ(reply.at("ca_pin").get<std::string>(), schema::CurveKeyPin(server_key_));
  auto enrol = [&](TestAgent& a, const std::string& host, const std::array<uint8_t, 32>& secret) {
    capnp::MallocMessageBuilder m;
    auto e = m.initRoot<schema::Envelope>().initEnrol();
    e.setHostId(host);
    e.setSecret(capnp::Data::Reader(secret.data(), secret.size()));
    a.Send(m);
  };
  TestAgent newcomer(ctx_, endpoint_, server_key_);
  newcomer.Connect();
  // Admitted to enrol, and to nothing else.
  Hello(newcomer, "host-b");
  ASSERT_TRUE(newcomer.Receive(schema::Envelope::REFUSED, &any));
  EXPECT_NE(any.find("not enrolled"), std::string::npos);
  std::array<uint8_t, 32> wrong = token.secret;
  wrong[0] ^= 1;
  enrol(newcomer, "host-b", wrong);
  ASSERT_TRUE(newcomer.Receive(schema::Envelope::REFUSED, &any));
  EXPECT_NE(any.find("unknown join token"), std::string::npos) << any;
  enrol(newcomer, "host-c", token.secret);
  ASSERT_TRUE(newcomer.Receive(schema::Envelope::REFUSED, &any));
  EXPECT_NE(any.find("for another host"), std::string::npos) << any;
  enrol(newcomer, "host b\n", token.secret);  // hostile host id
  ASSERT_TRUE(newcomer.Receive(schema::Envelope::REFUSED, &any));
  EXPECT_NE(any.find("host id is not valid"), std::string::npos) << any;
  enrol(newcomer, "host-b", token.secret);
  std::string enrolled;
  ASSERT_TRUE(newcomer.Receive(schema::Envelope::ENROLLED, &enrolled));
  WithEnvelope(enrolled, [&](schema::Envelope::Reader env) {
    auto e = env.getEnrolled();
    EXPECT_EQ(std::string(e.getHostId().cStr()), "host-b");
    EXPECT_EQ(std::string(e.getCurvePublicKey().cStr()), newcomer.public_key);
    ASSERT_EQ(e.getGrantKeys().size(), 1u);
    EXPECT_EQ(std::string(e.getGrantKeys()[0].cStr()), server_->grant_vkey());
    EXPECT_EQ(std::string(e.getLedgerKey().cStr()), server_->ledger_vkey());
  });
  // As the agent then does: a new connection, admitted as host-b.
  newcomer.Reconnect();
  Hello(newcomer, "host-b");
  EXPECT_TRUE(newcomer.Receive(schema::Envelope::GRANT_SET, &any)) << "not admitted";
  // The token is spent: another key cannot use it. (With no token open it
  // would not get past the handshake; with host-c's open, it is told.)
  ASSERT_TRUE(nlohmann::json::parse(AdminCall(R"({"op":"token_create","host":"host-c"})"))
                  .value("ok", false));
  TestAgent thief(ctx_, endpoint_, server_key_);
  thief.Connect();
  enrol(thief, "host-b", token.secret);
  ASSERT_TRUE(thief.Receive(schema::Envelope::REFUSED, &any));
  EXPECT_NE(any.find("already used"), std::string::npos) << any;
  // A second token for host-b, spent by another key, would replace the key.
  // Instead: a restart keeps host-b enrolled (replay, then snapshot).
  for (int round = 0; round < 2; ++round) {
    server_->Stop();
    thread_.join();
    server_.reset();
    // First from the ledger alone, then from the snapshot the stop wrote.
    const std::string snapshot = config_.data_dir + "/state.snapshot";
    if (round == 0) {
      std::filesystem::remove(snapshot);
    } else {
      ASSERT_TRUE(std::filesystem::exists(snapshot));
    }
    ASSERT_TRUE(CollectorServer::Open(config_, &server_).ok());
    thread_ = std::thread([this] { run_status_ = server_->Run(); });
    bool admitted = false;
    for (int i = 0; i < 40 && !admitted; ++i) {
      newcomer.Reconnect();
      Hello(newcomer, "host-b");
      admitted = newcomer.Receive(schema::Envelope::GRANT_SET, &any, 250);
    }
    EXPECT_TRUE(admitted) << "enrolment lost at restart " << round;
  }
  auto agents = nlohmann::json::parse(AdminCall(R"({"op":"agents"})"));
  ASSERT_TRUE(agents.value("ok", false)) << agents;
  bool listed = false;
  for (const auto& a : agents.at("agents")) {
    if (a.at("host") == "host-b") {
      listed = true;
      EXPECT_EQ(a.at("source"), "enrolment");
      EXPECT_EQ(a.at("curve_public_key"), newcomer.public_key);
    }
  }
  EXPECT_TRUE(listed) << agents;
  // host-a is the configuration's: removing it here is refused, with how.
  auto refused = nlohmann::json::parse(AdminCall(R"({"op":"agent_remove","host":"host-a"})"));
  EXPECT_FALSE(refused.value("ok", true));
  EXPECT_NE(refused.dump().find("SIGHUP"), std::string::npos) << refused;
  auto removed = nlohmann::json::parse(AdminCall(R"({"op":"agent_remove","host":"host-b"})"));
  ASSERT_TRUE(removed.value("ok", false)) << removed;
  Hello(newcomer, "host-b");
  ASSERT_TRUE(newcomer.Receive(schema::Envelope::REFUSED, &any));
  EXPECT_NE(any.find("not enrolled"), std::string::npos);
  server_->Stop();
  thread_.join();
  // The record: the token (its hash, never the secret), the enrolment, the
  // refusals, the removal.
  std::unique_ptr<ledger::Ledger> l;
  ASSERT_TRUE(ledger::FileLedger::Open(config_.data_dir + "/ledger",
                                       ledger::FileLedger::Mode::kReadOnly, &l)
                  .ok());
  std::map<std::string, int> kinds;
  std::string refusals, entry;
  const std::string secret(reinterpret_cast<const char*>(token.secret.data()), 32);
  for (uint64_t i = 0; i < l->size(); ++i) {
    index::RecordView v;
    ASSERT_TRUE(l->ReadEntry(i, &entry).ok());
    EXPECT_EQ(entry.find(secret), std::string::npos) << "the secret is in the ledger";
    if (!index::ViewRecord(entry, &v).ok()) continue;
    kinds[v.kind]++;
    if (v.kind == "refusal") refusals += v.detail.dump();
    if (v.kind == "joinTokenCreated" &&
        v.detail.dump().find(schema::JoinSecretHash(token.secret)) != std::string::npos) {
      EXPECT_EQ(v.identity, "ops");  // who made it
      ++kinds["the token's own record"];
    }
  }
  EXPECT_EQ(kinds["joinTokenCreated"], 2);
  EXPECT_EQ(kinds["the token's own record"], 1);
  EXPECT_EQ(kinds["agentEnrolled"], 1);
  EXPECT_EQ(kinds["agentRemoved"], 1);
  EXPECT_NE(refusals.find("join_token_refused"), std::string::npos) << refusals;
  EXPECT_NE(refusals.find("already used"), std::string::npos) << refusals;
  EXPECT_NE(refusals.find("for another host"), std::string::npos) << refusals;
  server_.reset();
  ASSERT_TRUE(CollectorServer::Open(config_, &server_).ok());
  thread_ = std::thread([this] { run_status_ = server_->Run(); });
}

// A vanished agent machine is found by the kernel's TCP keepalives on the
// collector's side of its connection (ZeroMQ heartbeats from the collector
// would cost each of its I/O thread's timers a walk over all of them: see
// AgentChannel::Bind). The collector runs in this process, so its accepted
// sockets are ours to look at.
TEST_F(CollectorTest, AgentConnectionsAreWatchedByTcpKeepalives) {
  Hello(*agent_, "host-a");
  std::string welcome;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::WELCOME, &welcome));
  const int port = std::stoi(endpoint_.substr(endpoint_.rfind(':') + 1));
  int accepted = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) {
    const int fd = std::stoi(e.path().filename().string());
    sockaddr_in local{}, peer{};
    socklen_t len = sizeof(local), plen = sizeof(peer);
    int type = 0;
    socklen_t tlen = sizeof(type);
    if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || type != SOCK_STREAM) continue;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0 ||
        local.sin_family != AF_INET || ntohs(local.sin_port) != port ||
        ::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &plen) != 0) {
      continue;  // not a connection the collector accepted
    }
    ++accepted;
    int on = 0, idle = 0, interval = 0, probes = 0;
    socklen_t n = sizeof(int);
    ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, &n), 0);
    ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, &n), 0);
    ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, &n), 0);
    ASSERT_EQ(::getsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, &n), 0);
    EXPECT_EQ(on, 1);
    EXPECT_LE(idle + interval * probes, 20)
        << "idle " << idle << " s, " << probes << " probes every " << interval << " s";
  }
  EXPECT_EQ(accepted, 1);
}

TEST_F(CollectorTest, ASilentAgentIsRecorded) {
  server_->Stop();
  thread_.join();
  server_.reset();
  config_.agent_silent_after_ms = 2000;
  ASSERT_TRUE(CollectorServer::Open(config_, &server_).ok());
  thread_ = std::thread([this] { run_status_ = server_->Run(); });
  auto silent_records = [&] {
    std::unique_ptr<ledger::Ledger> l;
    EXPECT_TRUE(ledger::FileLedger::Open(config_.data_dir + "/ledger",
                                         ledger::FileLedger::Mode::kReadOnly, &l)
                    .ok());
    std::vector<index::RecordView> found;
    std::string entry;
    for (uint64_t i = 0; l && i < l->size(); ++i) {
      index::RecordView v;
      if (l->ReadEntry(i, &entry).ok() && index::ViewRecord(entry, &v).ok() &&
          v.kind == "agentSilent") {
        found.push_back(v);
      }
    }
    return found;
  };
  Hello(*agent_, "host-a");
  std::string set;
  ASSERT_TRUE(agent_->Receive(schema::Envelope::GRANT_SET, &set));
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_TRUE(silent_records().empty()) << "recorded before the silence was long enough";
  std::this_thread::sleep_for(std::chrono::milliseconds(2000));
  std::vector<index::RecordView> once = silent_records();
  ASSERT_EQ(once.size(), 1u);
  EXPECT_EQ(once[0].identity, "host-a");
  EXPECT_NE(once[0].detail.dump().find("lastHeardNs"), std::string::npos) << once[0].detail;
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  EXPECT_EQ(silent_records().size(), 1u) << "one record per silence";
  Hello(*agent_, "host-a");  // heard again, then silent again
  ASSERT_TRUE(agent_->Receive(schema::Envelope::GRANT_SET, &set));
  std::this_thread::sleep_for(std::chrono::milliseconds(3000));
  EXPECT_EQ(silent_records().size(), 2u);
}

TEST_F(CollectorTest, WorkflowStateIsRebuiltFromTheLedger) {
  // A policy, then a restart so the collector loads it.
  latch::testing::WriteTestPolicy(dir_ / "policy.toml");
  auto restart = [&] {
    server_->Stop();
    thread_.join();
    server_.reset();
    config_.policy = dir_ / "policy.toml";
    Status s = CollectorServer::Open(config_, &server_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    thread_ = std::thread([this] { run_status_ = server_->Run(); });
  };
  restart();
  auto ask = [&](const std::string& req) { return AdminCall(req); };
  std::string r =
      ask(R"({"op":"request","identity":"tess","resource":"db","duration":"30m","reason":"x"})");
  ASSERT_NE(r.find("\"pending\""), std::string::npos) << r;
  r = ask(R"({"op":"request","identity":"tess","resource":"db","duration":"2h","reason":"x"})");
  EXPECT_NE(r.find("at most 1h"), std::string::npos) << r;
  restart();
  r = ask(R"({"op":"requests"})");
  EXPECT_NE(r.find("\"requester\":\"tess\""), std::string::npos) << r;
  EXPECT_NE(r.find("\"pending\""), std::string::npos) << r;
  r = ask(R"({"op":"review","identity":"ann","request_id":1,"approve":true})");
  EXPECT_NE(r.find("\"approved\""), std::string::npos) << r;
  EXPECT_NE(r.find("\"grant_id\":1"), std::string::npos) << r;
  restart();
  r = ask(R"({"op":"requests"})");
  EXPECT_NE(r.find("\"approved\""), std::string::npos) << r;
  // A broken policy on reload leaves the running one in place.
  std::ofstream(dir_ / "policy.toml", std::ios::app) << "[[nonsense]]\n";
  server_->RequestPolicyReload();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  r = ask(R"({"op":"request","identity":"tess","resource":"db","duration":"10m","reason":"y"})");
  EXPECT_NE(r.find("\"pending\""), std::string::npos) << r;
}

// An agent that sends and never reads fills its reply queue; the collector
// drops what does not fit instead of waiting for it (a blocking send stopped
// its loop, and with it every agent, the admin socket and the API).
TEST_F(CollectorTest, AnAgentThatNeverReadsCannotStopTheCollector) {
  HellosOfNewBoots(40'000, '\x55');
  // Each Hello is answered (a Welcome, a grant set). Once the agent stops
  // reading, the answers fill its queue, the collector's and both kernels'
  // socket buffers (on loopback, megabytes: how many answers that takes
  // depends on how far the collector had got), and then are dropped. More
  // Hellos until then, without reading (it flaked when 40,000 were all
  // answered into the buffers on a fast run); the collector goes on
  // answering others.
  for (int round = 0; round < 40 && server_->counters().replies_dropped.load() == 0; ++round) {
    for (int i = 0; i < 10 && server_->counters().replies_dropped.load() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (server_->counters().replies_dropped.load() == 0) {
      HellosOfNewBoots(10'000, static_cast<char>(0x60 + round), /*drain=*/false);
    }
  }
  EXPECT_GT(server_->counters().replies_dropped.load(), 0u);
  EXPECT_NE(AdminCall(R"({"op":"status"})").find("\"ok\":true"), std::string::npos);
}

// Start-up from a state snapshot: only the entries after it are replayed, and
// the state reached is the one a replay of the whole ledger reaches. A
// snapshot that is damaged, of another size's tree, or beyond the ledger is
// ignored and the whole ledger replayed (issue 14: start-up replayed every
// entry, 16 s at 1M entries).
TEST_F(CollectorTest, AStartFromASnapshotReachesTheStateOfAFullReplay) {
  latch::testing::WriteTestPolicy(dir_ / "policy.toml");
  nlohmann::json stopped_with;  // DerivedState() of the collector last stopped
  uint64_t stopped_size = 0;    // and its ledger's size
  auto stop = [&] {
    server_->Stop();
    thread_.join();
    stopped_with = server_->DerivedState();
    server_.reset();
    std::unique_ptr<ledger::Ledger> l;
    ASSERT_TRUE(ledger::FileLedger::Open(config_.data_dir + "/ledger",
                                         ledger::FileLedger::Mode::kReadOnly, &l)
                    .ok());
    stopped_size = l->size();
  };
  auto start = [&] {
    config_.policy = dir_ / "policy.toml";
    Status s = CollectorServer::Open(config_, &server_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    thread_ = std::thread([this] { run_status_ = server_->Run(); });
  };
  auto ok = [&](const std::string& req) {
    std::string r = AdminCall(req);
    EXPECT_NE(r.find("\"ok\":true"), std::string::npos) << req << " -> " << r;
  };
  auto records = [&](uint64_t first, uint64_t count) {
    std::string receipt;
    Batch(*agent_, first, count, 0);
    EXPECT_TRUE(agent_->Receive(schema::Envelope::RECEIPT, &receipt, 10000));
  };
  stop();
  start();
  // Everything the state holds: sequence marks, grants live and ended,
  // requests reviewed and pending.
  Hello(*agent_, "host-a");
  records(1, 50);
  ok(R"({"op":"request","identity":"tess","resource":"db","duration":"30m","reason":"OPS-1 a"})");
  ok(R"({"op":"review","identity":"ann","request_id":1,"approve":true,"comment":"fine"})");
  ok(R"({"op":"request","identity":"rob","resource":"db","duration":"10m","reason":"OPS-2 b"})");
  ok(R"({"op":"issue","principals":[{"uid":7}],"resources":[1],"hosts":["host-a"],"duration_s":60})");
  ok(R"({"op":"revoke","grant_id":2,"reason":"done"})");
  stop();  // a clean stop leaves a snapshot at the ledger's size
  const nlohmann::json first = stopped_with;
  const uint64_t first_size = stopped_size;
  EXPECT_FALSE(first["grants"]["grants"].empty());
  EXPECT_FALSE(first["past_grants"].empty());
  EXPECT_EQ(first["requests"]["requests"].size(), 2u);
  const std::string path = config_.data_dir + "/" + CollectorServer::kSnapshotName;
  ASSERT_TRUE(std::filesystem::exists(path));
  std::filesystem::copy_file(path, dir_ / "older.snapshot");

  start();
  EXPECT_EQ(server_->counters().start_replayed_entries.load(), 0u);
  EXPECT_EQ(server_->DerivedState(), first);
  records(51, 30);  // more after the older snapshot
  ok(R"({"op":"review","identity":"ann","request_id":2,"approve":false,"comment":"no"})");
  stop();
  const nlohmann::json second = stopped_with;
  EXPECT_NE(second, first);

  // From the older snapshot: its tail is replayed.
  std::filesystem::copy_file(dir_ / "older.snapshot", path,
                             std::filesystem::copy_options::overwrite_existing);
  const uint64_t older_size = first_size;
  start();
  const uint64_t tail = server_->counters().start_replayed_entries.load();
  EXPECT_EQ(tail, stopped_size - older_size);
  EXPECT_GE(tail, 31u);
  EXPECT_EQ(server_->counters().snapshot_failures.load(), 0u);
  EXPECT_EQ(server_->DerivedState(), second);
  stop();

  // Without one, everything is replayed, to the same state.
  std::filesystem::remove(path);
  start();
  EXPECT_EQ(server_->counters().start_replayed_entries.load(), stopped_size);
  EXPECT_EQ(server_->DerivedState(), second);
  stop();

  // A damaged one (a byte flipped) is ignored.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x7f');
  }
  start();
  EXPECT_EQ(server_->counters().snapshot_failures.load(), 1u);
  EXPECT_EQ(server_->counters().start_replayed_entries.load(), stopped_size);
  EXPECT_EQ(server_->DerivedState(), second);
  stop();

  // One intact but not of this ledger's tree (another root at its size), and
  // one beyond the ledger (a ledger restored from an older backup): ignored.
  for (int variant = 0; variant < 2; ++variant) {
    StateSnapshot forged;
    ASSERT_TRUE(ReadStateSnapshot(path, &forged).ok());
    if (variant == 0) forged.root[0] ^= 1;
    if (variant == 1) forged.size += 1000;
    forged.state["requests"]["requests"] = nlohmann::json::array();  // would lose the requests
    ASSERT_TRUE(WriteStateSnapshot(config_.data_dir, CollectorServer::kSnapshotName, forged).ok());
    const uint64_t size = stopped_size;
    start();
    EXPECT_EQ(server_->counters().snapshot_failures.load(), 1u) << variant;
    EXPECT_EQ(server_->counters().start_replayed_entries.load(), size) << variant;
    EXPECT_EQ(server_->DerivedState(), second) << variant;
    stop();
  }
  start();  // for TearDown
}

}  // namespace
}  // namespace latch::collector
