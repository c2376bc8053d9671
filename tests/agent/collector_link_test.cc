// The agent's CollectorLink without a socket, a collector process or root
// (agent/link_transport.h): the test is the collector. It reads what the link
// sends from a transport of its own and answers with frames built here,
// receipts proven by a real ledger in a temporary directory.
#include "agent/collector_link.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "collector/ledger/entry_batch.h"
#include "collector/ledger/file_ledger.h"
#include "schemas/canonical.h"
#include "schemas/record_codec.h"
#include "schemas/wire_frame.h"
#include "temp_dir.h"

namespace latch::agent {
namespace {

// Frames the link sends, kept; frames for it, handed over by Deliver.
class TestTransport : public LinkTransport {
 public:
  struct Shared {
    std::vector<std::string> sent;                               // on the connection
    std::vector<std::pair<std::string, std::string>> sent_once;  // (endpoint, frame)
    std::vector<std::string> connects;
    OnFrame deliver;
  };
  explicit TestTransport(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
  void SetReceiver(OnFrame on_frame) override { shared_->deliver = std::move(on_frame); }
  Status Connect(const std::string& endpoint) override {
    shared_->connects.push_back(endpoint);
    return Status::Ok();
  }
  bool Send(const std::string& frame) override {
    shared_->sent.push_back(frame);
    return true;
  }
  void SendOnce(const std::string& endpoint, const std::string& frame) override {
    shared_->sent_once.emplace_back(endpoint, frame);
  }

 private:
  std::shared_ptr<Shared> shared_;
};

const std::string kBoot(16, 'b');

class CollectorLinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ledger::FileLedger::Create(dir_ / "ledger", "link.example/log").ok());
    ASSERT_TRUE(
        ledger::FileLedger::Open(dir_ / "ledger", ledger::FileLedger::Mode::kReadWrite, &ledger_)
            .ok());
    ASSERT_TRUE(CheckpointWitness::Open(dir_ / "held", ledger_->verifier(), &witness_).ok());
    SpoolOptions so;
    so.dir = dir_ / "spool";
    ASSERT_TRUE(Spool::Open(so, kBoot, &spool_).ok());
    for (int i = 1; i <= 5; ++i) {
      uint64_t seq = 0;
      ASSERT_TRUE(spool_->Add(2, 1000 + i, "event " + std::to_string(i), false, &seq).ok());
    }
    ASSERT_TRUE(spool_->Flush().ok());
    CollectorLinkOptions o;
    o.endpoints = {"test://a", "test://b"};
    o.host_id = "host-a";
    o.tick = std::chrono::milliseconds(20);
    o.receipt_timeout = std::chrono::milliseconds(200);
    o.failover_after = std::chrono::seconds(60);
    link_ = std::make_unique<CollectorLink>(
        io_, o, *spool_, *witness_, [] { return uint64_t{0}; },
        [](schema::SignedGrantSet::Reader) {}, logging::Default(),
        std::make_unique<TestTransport>(net_));
    ASSERT_TRUE(link_->Start().ok());
    io_.poll();
  }
  // The kind of message a frame holds.
  schema::Envelope::Which KindOf(const std::string& frame) {
    schema::Envelope::Which which = schema::Envelope::HEARTBEAT;
    EXPECT_TRUE(
        schema::ReadFrame(frame, [&](schema::Envelope::Reader e) { which = e.which(); }).ok());
    return which;
  }
  std::vector<schema::Envelope::Which> Sent() {
    std::vector<schema::Envelope::Which> out;
    for (const std::string& f : net_->sent) out.push_back(KindOf(f));
    return out;
  }
  void Deliver(capnp::MessageBuilder& m) {
    net_->deliver(schema::EncodeFrame(m));
    io_.poll();
  }
  void Welcome(uint64_t session, uint64_t held) {
    capnp::MallocMessageBuilder m;
    auto w = m.initRoot<schema::Envelope>().initWelcome();
    w.setSession(session);
    w.setBootId(schema::AsData(kBoot));
    w.setHeldThroughSequence(held);
    Deliver(m);
  }
  // Appends the batch the link sent last to the ledger, as the collector
  // would, and returns its receipt (proven from what the agent holds).
  std::string AppendAndReceipt(const std::string& batch_frame, uint64_t session,
                               ledger::Ledger& into) {
    const uint64_t held = witness_->size();
    ledger::EntryBatch entries;
    uint64_t last = 0;
    int64_t received = 5000;
    EXPECT_TRUE(schema::ReadFrame(batch_frame, [&](schema::Envelope::Reader e) {
                  for (auto r : e.getEventBatch().getRecords()) {
                    ledger::LedgerRecord rec{static_cast<ledger::RecordKind>(r.getKind()),
                                             "host-a",
                                             kBoot,
                                             r.getSequence(),
                                             r.getEventTimeNs(),
                                             received,
                                             schema::AsString(r.getPayload())};
                    std::string bytes;
                    EXPECT_TRUE(ledger::EncodeRecord(rec, &bytes).ok());
                    EXPECT_TRUE(entries.Add(bytes).ok());
                    last = r.getSequence();
                  }
                }).ok());
    const ledger::EntryBatch* batches[] = {&entries};
    uint64_t first_index = 0;
    EXPECT_TRUE(into.Commit(batches, &first_index).ok());
    const uint64_t size = into.size();
    std::vector<tlog::Hash> inclusion, consistency;
    EXPECT_TRUE(into.InclusionProof(size - 1, size, &inclusion).ok());
    if (held > 0) {
      EXPECT_TRUE(into.ConsistencyProof(held, size, &consistency).ok());
    }
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<schema::Envelope>().initReceipt();
    r.setBootId(schema::AsData(kBoot));
    r.setThroughSequence(last);
    r.setThroughIndex(size - 1);
    r.setThroughReceiveTimeNs(received);
    r.setCheckpoint(schema::AsData(into.checkpoint_note()));
    auto inc = r.initInclusionProof(static_cast<unsigned>(inclusion.size()));
    for (unsigned i = 0; i < inclusion.size(); ++i) inc.set(i, {inclusion[i].data(), 32});
    r.setConsistencyFrom(held);
    auto con = r.initConsistencyProof(static_cast<unsigned>(consistency.size()));
    for (unsigned i = 0; i < consistency.size(); ++i) con.set(i, {consistency[i].data(), 32});
    r.setSession(session);
    return schema::EncodeFrame(m);
  }

  ledger::TempDir dir_;
  std::unique_ptr<ledger::Ledger> ledger_;
  std::unique_ptr<CheckpointWitness> witness_;
  std::unique_ptr<Spool> spool_;
  boost::asio::io_context io_;
  std::shared_ptr<TestTransport::Shared> net_ = std::make_shared<TestTransport::Shared>();
  std::unique_ptr<CollectorLink> link_;
};

// A session opens with a Hello and sends nothing more until the collector's
// Welcome says what it holds; then the spooled records go out from there.
TEST_F(CollectorLinkTest, AHelloThenBatchesFromWhatTheWelcomeSaysIsHeld) {
  ASSERT_EQ(net_->connects, (std::vector<std::string>{"test://a"}));
  ASSERT_FALSE(net_->sent.empty());
  ASSERT_EQ(Sent()[0], schema::Envelope::HELLO);
  for (auto kind : Sent()) EXPECT_NE(kind, schema::Envelope::EVENT_BATCH);
  ASSERT_TRUE(schema::ReadFrame(net_->sent[0], [](schema::Envelope::Reader e) {
                auto h = e.getHello();
                EXPECT_EQ(h.getSession(), 1u);
                EXPECT_EQ(std::string(h.getHostId().cStr()), "host-a");
                EXPECT_EQ(schema::AsString(h.getBootId()), kBoot);
                EXPECT_EQ(h.getCheckpointSize(), 0u);
              }).ok());
  Welcome(1, 2);  // the collector already holds sequences 1 and 2
  ASSERT_EQ(Sent().back(), schema::Envelope::EVENT_BATCH);
  std::vector<uint64_t> sequences;
  ASSERT_TRUE(schema::ReadFrame(net_->sent.back(), [&](schema::Envelope::Reader e) {
                for (auto r : e.getEventBatch().getRecords()) sequences.push_back(r.getSequence());
              }).ok());
  EXPECT_EQ(sequences, (std::vector<uint64_t>{3, 4, 5}));
}

// A receipt that proves the batch (a signed checkpoint, the last record's
// inclusion rebuilt from the agent's own copy) lets the spool forget it,
// and the witness holds the checkpoint.
// Issue 16: while a join token is open, the collector lets unknown keys in
// to enrol and answers anything else "not enrolled": the agent counts it as
// a refused key (logged with what to do), not as a stray message.
TEST_F(CollectorLinkTest, NotEnrolledIsCountedAsARefusedKey) {
  for (int i = 0; i < 3; ++i) {
    capnp::MallocMessageBuilder m;
    m.initRoot<schema::Envelope>().setRefused("not enrolled");
    Deliver(m);
  }
  EXPECT_EQ(link_->counters().refused, 3u);
  capnp::MallocMessageBuilder other;
  other.initRoot<schema::Envelope>().setRefused("malformed message");
  Deliver(other);
  EXPECT_EQ(link_->counters().refused, 3u);
}

TEST_F(CollectorLinkTest, AProvenReceiptIsTheOnlyWayRecordsAreForgotten) {
  Welcome(1, 0);
  ASSERT_EQ(Sent().back(), schema::Envelope::EVENT_BATCH);
  net_->deliver(AppendAndReceipt(net_->sent.back(), 1, *ledger_));
  io_.poll();
  EXPECT_EQ(spool_->acknowledged(kBoot), 5u);
  EXPECT_EQ(spool_->unacknowledged(), 0u);
  EXPECT_EQ(witness_->size(), 5u);
  EXPECT_EQ(link_->counters().records_acknowledged, 5u);
  EXPECT_EQ(link_->counters().alarms, 0u);
}

// A receipt from a ledger signed by another key (a collector that is not the
// one the agent trusts, or a forged answer): nothing is forgotten, and an
// alarm goes to the collector and to every other endpoint.
TEST_F(CollectorLinkTest, AReceiptFromAnotherLedgerRaisesAnAlarmAndForgetsNothing) {
  Welcome(1, 0);
  ASSERT_TRUE(ledger::FileLedger::Create(dir_ / "stranger", "link.example/log").ok());
  std::unique_ptr<ledger::Ledger> stranger;
  ASSERT_TRUE(
      ledger::FileLedger::Open(dir_ / "stranger", ledger::FileLedger::Mode::kReadWrite, &stranger)
          .ok());
  net_->deliver(AppendAndReceipt(net_->sent.back(), 1, *stranger));
  io_.poll();
  EXPECT_EQ(spool_->acknowledged(kBoot), 0u);
  EXPECT_EQ(spool_->unacknowledged(), 5u);
  EXPECT_EQ(witness_->size(), 0u);
  EXPECT_EQ(link_->counters().receipts_rejected, 1u);
  // The last alarm sent (a heartbeat whose tick came meanwhile may follow it).
  std::vector<schema::Envelope::Which> sent = Sent();
  auto alarm = std::find(sent.rbegin(), sent.rend(), schema::Envelope::ALARM);
  ASSERT_NE(alarm, sent.rend());
  const std::string& frame = net_->sent[static_cast<size_t>(sent.rend() - alarm) - 1];
  ASSERT_TRUE(schema::ReadFrame(frame, [](schema::Envelope::Reader e) {
                EXPECT_EQ(std::string(e.getAlarm().getKind().cStr()), "bad_checkpoint_signature");
              }).ok());
  ASSERT_EQ(net_->sent_once.size(), 1u);
  EXPECT_EQ(net_->sent_once[0].first, "test://b");
}

// No receipt within the receipt timeout: a new session, whose Hello tells
// the collector what the agent holds, and the records go out again.
TEST_F(CollectorLinkTest, NoReceiptInTimeStartsANewSessionThatResends) {
  Welcome(1, 0);
  net_->sent.clear();
  io_.run_for(std::chrono::milliseconds(400));
  auto hello = std::find_if(net_->sent.begin(), net_->sent.end(), [&](const std::string& f) {
    return KindOf(f) == schema::Envelope::HELLO;
  });
  ASSERT_NE(hello, net_->sent.end());
  ASSERT_TRUE(schema::ReadFrame(*hello, [](schema::Envelope::Reader e) {
                EXPECT_EQ(e.getHello().getSession(), 2u);
              }).ok());
  Welcome(2, 0);
  EXPECT_EQ(Sent().back(), schema::Envelope::EVENT_BATCH);
  EXPECT_EQ(spool_->unacknowledged(), 5u);
}

}  // namespace
}  // namespace latch::agent
