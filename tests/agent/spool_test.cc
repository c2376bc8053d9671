#include "agent/spool.h"

#include <gtest/gtest.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "agent/spool_sink.h"
#include "schemas/canonical.h"
#include "schemas/event.capnp.h"
#include "schemas/ledger.capnp.h"

namespace latch::agent {
namespace {

namespace fs = std::filesystem;

class SpoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("latch-spool-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  SpoolOptions Options() {
    SpoolOptions o;
    o.dir = dir_.string();
    o.segment_bytes = 1000;
    o.max_bytes = 100000;
    o.reserve_bytes = 200;
    return o;
  }
  static std::string Boot(char c) { return std::string(16, c); }
  // Reads everything left to send; checks one boot per batch and order.
  static std::vector<std::pair<std::string, uint64_t>> DrainAll(Spool* s) {
    std::vector<std::pair<std::string, uint64_t>> out;
    for (;;) {
      SpoolBatch b;
      EXPECT_TRUE(s->NextBatch(7, &b).ok());
      if (b.records.empty()) return out;
      EXPECT_LE(b.records.size(), 7u);
      for (size_t i = 1; i < b.records.size(); ++i) {
        EXPECT_EQ(b.records[i].sequence, b.records[i - 1].sequence + 1);
      }
      for (auto& r : b.records) out.emplace_back(b.boot_id, r.sequence);
    }
  }
  fs::path dir_;
};

TEST_F(SpoolTest, SequencesSendAndAcknowledge) {
  std::unique_ptr<Spool> s;
  ASSERT_TRUE(Spool::Open(Options(), Boot('a'), &s).ok());
  for (int i = 0; i < 100; ++i) {
    uint64_t seq = 0;
    ASSERT_TRUE(s->Add(2, 1000 + i, "payload-" + std::to_string(i), false, &seq).ok());
    EXPECT_EQ(seq, static_cast<uint64_t>(i + 1));
    if (i % 10 == 9) {
      ASSERT_TRUE(s->Flush().ok());
    }
  }
  EXPECT_GT(s->segment_count(), 1u);  // 1000-byte segments roll over
  SpoolBatch first;
  ASSERT_TRUE(s->NextBatch(3, &first).ok());
  ASSERT_EQ(first.records.size(), 3u);
  EXPECT_EQ(first.boot_id, Boot('a'));
  EXPECT_EQ(first.records[2].payload, "payload-2");
  EXPECT_EQ(first.records[2].event_time_ns, 1002);
  EXPECT_EQ(first.records[2].kind, 2u);
  auto rest = DrainAll(s.get());
  ASSERT_EQ(rest.size(), 97u);
  EXPECT_EQ(rest.front().second, 4u);
  EXPECT_EQ(rest.back().second, 100u);

  // Records flushed after the cursor reached the end are still sent.
  for (int i = 0; i < 3; ++i) {
    uint64_t seq = 0;
    ASSERT_TRUE(s->Add(2, 0, "late", false, &seq).ok());
  }
  ASSERT_TRUE(s->Flush().ok());
  auto late = DrainAll(s.get());
  ASSERT_EQ(late.size(), 3u);
  EXPECT_EQ(late.front().second, 101u);

  uint64_t before = s->segment_count();
  ASSERT_TRUE(s->Acknowledge(Boot('a'), 60).ok());
  EXPECT_LT(s->segment_count(), before);
  EXPECT_EQ(s->unacknowledged(), 43u);
  s->Rewind();
  auto resend = DrainAll(s.get());
  ASSERT_EQ(resend.size(), 43u);  // acknowledged records are never resent
  EXPECT_EQ(resend.front().second, 61u);
}

TEST_F(SpoolTest, ReopenKeepsUnacknowledgedRecordsAndCutsATornTail) {
  {
    std::unique_ptr<Spool> s;
    ASSERT_TRUE(Spool::Open(Options(), Boot('a'), &s).ok());
    uint64_t seq;
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(s->Add(2, i, "x", false, &seq).ok());
    ASSERT_TRUE(s->Flush().ok());
    ASSERT_TRUE(s->Acknowledge(Boot('a'), 2).ok());  // in the live segment: kept on disk
    ASSERT_TRUE(s->Add(2, 9, "buffered, never flushed", false, &seq).ok());
  }
  // A torn frame at the end, as a killed writer could leave.
  fs::path seg;
  for (auto& e : fs::directory_iterator(dir_)) seg = e.path();
  {
    std::ofstream f(seg, std::ios::app | std::ios::binary);
    f.write("\x05\x00\x00\x00\x02\x00", 6);
  }
  std::unique_ptr<Spool> s;
  ASSERT_TRUE(Spool::Open(Options(), Boot('b'), &s).ok());
  EXPECT_EQ(s->next_sequence(), 1u);  // a new boot numbers from 1
  uint64_t seq;
  ASSERT_TRUE(s->Add(2, 10, "new boot", false, &seq).ok());
  ASSERT_TRUE(s->Flush().ok());
  auto all = DrainAll(s.get());
  // The old boot's five records come first (the spool does not persist
  // acknowledgements: the collector drops duplicates), then the new boot's.
  ASSERT_EQ(all.size(), 6u);
  EXPECT_EQ(all[0], std::make_pair(Boot('a'), uint64_t{1}));
  EXPECT_EQ(all[4], std::make_pair(Boot('a'), uint64_t{5}));
  EXPECT_EQ(all[5], std::make_pair(Boot('b'), uint64_t{1}));
}

// The writer's mark rides with the records it was set for, is recovered on
// reopening (the last one), and is never sent as a record.
TEST_F(SpoolTest, MarksAreKeptWithTheirRecordsAndNotSent) {
  {
    std::unique_ptr<Spool> s;
    ASSERT_TRUE(Spool::Open(Options(), Boot('a'), &s).ok());
    EXPECT_EQ(s->recovered_mark(), "");
    uint64_t seq = 0;
    s->SetMark("no records: not written");
    ASSERT_TRUE(s->Flush().ok());
    for (int round = 1; round <= 3; ++round) {
      ASSERT_TRUE(s->Add(2, round, "event", false, &seq).ok());
      s->SetMark("read through " + std::to_string(round));
      ASSERT_TRUE(s->Flush().ok());
    }
    ASSERT_TRUE(s->Add(2, 4, "event", false, &seq).ok());
    ASSERT_TRUE(s->Flush().ok());  // no mark set since the last one
    auto sent = DrainAll(s.get());
    ASSERT_EQ(sent.size(), 4u);  // records only
    EXPECT_EQ(sent.back().second, 4u);
  }
  {
    std::unique_ptr<Spool> s;
    ASSERT_TRUE(Spool::Open(Options(), Boot('b'), &s).ok());
    EXPECT_EQ(s->recovered_mark(), "read through 3");
    EXPECT_EQ(s->unacknowledged(), 4u);
    EXPECT_EQ(DrainAll(s.get()).size(), 4u);
  }
  // A torn write that cut the mark keeps the records and the mark before.
  fs::path seg;
  for (auto& e : fs::directory_iterator(dir_)) seg = e.path();
  {
    std::unique_ptr<Spool> s;
    ASSERT_TRUE(Spool::Open(Options(), Boot('c'), &s).ok());
    uint64_t seq = 0;
    ASSERT_TRUE(s->Add(2, 5, "event", false, &seq).ok());
    s->SetMark("read through 5");
    ASSERT_TRUE(s->Flush().ok());
  }
  fs::path newest;
  for (auto& e : fs::directory_iterator(dir_)) {
    if (e.path() != seg) newest = e.path();
  }
  ASSERT_FALSE(newest.empty());
  fs::resize_file(newest, fs::file_size(newest) - 3);
  std::unique_ptr<Spool> s;
  ASSERT_TRUE(Spool::Open(Options(), Boot('d'), &s).ok());
  EXPECT_EQ(s->recovered_mark(), "read through 3");
  EXPECT_EQ(s->unacknowledged(), 5u);
}

TEST_F(SpoolTest, FullSpoolRefusesEventsButKeepsRoomForLossRecords) {
  SpoolOptions o = Options();
  o.max_bytes = 300;
  std::unique_ptr<Spool> s;
  ASSERT_TRUE(Spool::Open(o, Boot('a'), &s).ok());
  uint64_t seq = 0;
  int accepted = 0;
  Status st;
  while ((st = s->Add(2, 0, std::string(40, 'e'), false, &seq)).ok()) ++accepted;
  EXPECT_EQ(st.code(), Status::Code::kResourceExhausted);
  EXPECT_EQ(accepted, 4);             // 64-byte frames under 300 bytes
  EXPECT_EQ(s->next_sequence(), 5u);  // a refused record takes no sequence
  ASSERT_TRUE(s->Add(3, 0, "loss", true, &seq).ok());
  EXPECT_EQ(seq, 5u);
  ASSERT_TRUE(s->Flush().ok());
  ASSERT_TRUE(s->Acknowledge(Boot('a'), 5).ok());
}

TEST_F(SpoolTest, FullSpoolBecomesACountedLossRecord) {
  SpoolOptions o = Options();
  o.max_bytes = 2000;
  std::unique_ptr<Spool> s;
  ASSERT_TRUE(Spool::Open(o, Boot('a'), &s).ok());
  SpoolSink sink(*s);
  latch_decision_event e{};
  e.verdict = LATCH_VERDICT_DENY;
  for (int i = 0; i < 100; ++i) sink.AddEvent(e);
  ASSERT_TRUE(sink.Flush().ok());
  uint64_t spooled = sink.events_spooled();
  EXPECT_GT(spooled, 0u);
  EXPECT_EQ(sink.spool_full_total(), 100 - spooled);
  auto all = DrainAll(s.get());
  ASSERT_EQ(all.size(), spooled + 1);  // the events that fit, then one loss record
  s->Rewind();
  SpoolBatch b;
  ASSERT_TRUE(s->NextBatch(1000, &b).ok());
  const SpooledRecord& loss = b.records.back();
  EXPECT_EQ(loss.kind, static_cast<uint32_t>(schema::RecordKind::LOSS));
  ASSERT_TRUE(schema::ReadCanonical<schema::LossEvent>(loss.payload, "loss", [&](auto l) {
                EXPECT_EQ(l.getKind(), schema::LossKind::SPOOL_FULL);
                EXPECT_EQ(l.getCount(), 100 - spooled);
                EXPECT_EQ(l.getTotal(), 100 - spooled);
                return Status::Ok();
              }).ok());
  // Nothing more refused: no further loss record.
  ASSERT_TRUE(sink.Flush().ok());
  EXPECT_EQ(DrainAll(s.get()).size(), 0u);
}

// Issue 13.5: a flood of refusals folds into one spool_full record per
// interval (138,532 losses once became 8,006 records, most of one loss each,
// and filled the reserve); what is pending at exit is still written.
TEST_F(SpoolTest, SpoolFullLossesFoldIntoOneRecordPerInterval) {
  SpoolOptions o = Options();
  o.max_bytes = 2000;
  std::unique_ptr<Spool> s;
  ASSERT_TRUE(Spool::Open(o, Boot('a'), &s).ok());
  SpoolSink sink(*s, std::chrono::hours(1));
  latch_decision_event e{};
  e.verdict = LATCH_VERDICT_DENY;
  for (int round = 0; round < 500; ++round) {
    for (int i = 0; i < 20; ++i) sink.AddEvent(e);
    ASSERT_TRUE(sink.Flush().ok());
  }
  ASSERT_TRUE(sink.FlushPendingLosses().ok());
  uint64_t records = 0, counted = 0;
  s->Rewind();
  for (;;) {
    SpoolBatch b;
    ASSERT_TRUE(s->NextBatch(1000, &b).ok());
    if (b.records.empty()) break;
    for (const SpooledRecord& r : b.records) {
      if (r.kind != static_cast<uint32_t>(schema::RecordKind::LOSS)) continue;
      ++records;
      ASSERT_TRUE(schema::ReadCanonical<schema::LossEvent>(r.payload, "loss", [&](auto l) {
                    counted += l.getCount();
                    EXPECT_EQ(l.getTotal(), counted);
                    return Status::Ok();
                  }).ok());
    }
  }
  EXPECT_EQ(records, 2u);  // the first at once, the rest folded until the exit flush
  EXPECT_EQ(counted, sink.spool_full_total());
  EXPECT_EQ(counted + sink.events_spooled(), 10000u);
}

// Activity capture that cannot start is on the record as a loss record with
// its reason (promise 3: what is not captured is never silent).
TEST_F(SpoolTest, CaptureUnavailableIsALossRecordWithItsReason) {
  std::unique_ptr<Spool> s;
  ASSERT_TRUE(Spool::Open(Options(), Boot('a'), &s).ok());
  SpoolSink sink(*s);
  ASSERT_TRUE(sink.AddLoss(LossKind::kActivityCaptureUnavailable, 0, 0, "", "kernel too old").ok());
  ASSERT_TRUE(sink.Flush().ok());
  SpoolBatch b;
  ASSERT_TRUE(s->NextBatch(10, &b).ok());
  ASSERT_EQ(b.records.size(), 1u);
  EXPECT_EQ(b.records[0].kind, static_cast<uint32_t>(schema::RecordKind::LOSS));
  ASSERT_TRUE(schema::ReadCanonical<schema::LossEvent>(b.records[0].payload, "loss", [&](auto l) {
                EXPECT_EQ(l.getKind(), schema::LossKind::ACTIVITY_CAPTURE_UNAVAILABLE);
                EXPECT_EQ(std::string(l.getReason().cStr()), "kernel too old");
                return Status::Ok();
              }).ok());
}

// Issue 13.4: what receipts acknowledged survives a restart, so the next run
// sends only what the ledger does not have.
TEST_F(SpoolTest, AcknowledgementsSurviveARestart) {
  SpoolOptions o = Options();
  o.segment_bytes = 1 << 20;  // everything in one (the current) segment
  {
    std::unique_ptr<Spool> s;
    ASSERT_TRUE(Spool::Open(o, Boot('a'), &s).ok());
    for (int i = 0; i < 50; ++i) {
      uint64_t seq = 0;
      ASSERT_TRUE(s->Add(2, i, "p" + std::to_string(i), false, &seq).ok());
    }
    ASSERT_TRUE(s->Flush().ok());
    ASSERT_TRUE(s->Acknowledge(Boot('a'), 40).ok());
    EXPECT_EQ(s->segment_count(), 1u);  // being written: kept
    ASSERT_TRUE(s->SaveAcknowledged().ok());
  }
  std::unique_ptr<Spool> s;
  ASSERT_TRUE(Spool::Open(o, Boot('b'), &s).ok());
  EXPECT_EQ(s->unacknowledged(), 10u);
  EXPECT_EQ(s->acknowledged(Boot('a')), 40u);
  auto sent = DrainAll(s.get());
  ASSERT_EQ(sent.size(), 10u);
  EXPECT_EQ(sent.front().second, 41u);
  // All of the old boot acknowledged: its segment goes at the next open, and
  // its line with it.
  ASSERT_TRUE(s->Acknowledge(Boot('a'), 50).ok());
  EXPECT_EQ(s->segment_count(), 0u);
  ASSERT_TRUE(s->SaveAcknowledged().ok());
  s.reset();
  ASSERT_TRUE(Spool::Open(o, Boot('c'), &s).ok());
  EXPECT_EQ(s->unacknowledged(), 0u);
  EXPECT_TRUE(DrainAll(s.get()).empty());
}

// A damaged acknowledgement file costs a resend, never a record.
TEST_F(SpoolTest, DamagedAcknowledgementFileResendsEverything) {
  SpoolOptions o = Options();
  o.segment_bytes = 1 << 20;
  {
    std::unique_ptr<Spool> s;
    ASSERT_TRUE(Spool::Open(o, Boot('a'), &s).ok());
    for (int i = 0; i < 20; ++i) {
      uint64_t seq = 0;
      ASSERT_TRUE(s->Add(2, i, "p", false, &seq).ok());
    }
    ASSERT_TRUE(s->Flush().ok());
    ASSERT_TRUE(s->Acknowledge(Boot('a'), 15).ok());
    ASSERT_TRUE(s->SaveAcknowledged().ok());
  }
  for (const char* damage :
       {"6161zz 15\n", "61616161616161616161616161616161 1x\n",
        "61616161616161616161616161616161 15",
        // more than the spool ever held (a damaged digit): would skip records unsent
        "61616161616161616161616161616161 95\n",
        "61616161616161616161616161616161 99999999999999999999999\n"}) {
    std::ofstream(dir_ / "acknowledged", std::ios::trunc) << damage;
    std::unique_ptr<Spool> s;
    ASSERT_TRUE(Spool::Open(o, Boot('b'), &s).ok());
    EXPECT_EQ(s->unacknowledged(), 20u) << damage;
  }
  // Oversized (over the 1 MiB a file of one line per boot can need): unread.
  std::ofstream(dir_ / "acknowledged", std::ios::trunc) << std::string(2 << 20, '1');
  std::unique_ptr<Spool> s;
  ASSERT_TRUE(Spool::Open(o, Boot('b'), &s).ok());
  EXPECT_EQ(s->unacknowledged(), 20u);
}

// A receipt may name any record the spool holds: Find reads it back.
TEST_F(SpoolTest, FindsAnyHeldRecord) {
  std::unique_ptr<Spool> s;
  ASSERT_TRUE(Spool::Open(Options(), Boot('a'), &s).ok());
  for (int i = 0; i < 60; ++i) {
    uint64_t seq = 0;
    ASSERT_TRUE(s->Add(2, 500 + i, "payload-" + std::to_string(i), false, &seq).ok());
    if (i % 5 == 4) {
      ASSERT_TRUE(s->Flush().ok());
    }
  }
  ASSERT_GE(s->segment_count(), 2u);
  SpooledRecord r;
  ASSERT_TRUE(s->Find(Boot('a'), 37, &r).ok());
  EXPECT_EQ(r.sequence, 37u);
  EXPECT_EQ(r.payload, "payload-36");
  EXPECT_EQ(r.event_time_ns, 536);
  EXPECT_EQ(s->Find(Boot('a'), 61, &r).code(), Status::Code::kNotFound);
  EXPECT_EQ(s->Find(Boot('z'), 3, &r).code(), Status::Code::kNotFound);
}

// Issue 13.5: the spool's disk fills up (a 64 KiB tmpfs). Flush says
// ResourceExhausted and keeps the records; the file still ends on a whole
// frame; Add refuses past the memory bound; once there is space again the
// same records are written, once, in order, with no gap.
TEST_F(SpoolTest, DiskFullKeepsRecordsAndResumesWhenSpaceReturns) {
  if (::geteuid() != 0) {
    if (std::getenv("CI") && std::string(std::getenv("CI")) == "true") FAIL() << "needs root";
    GTEST_SKIP() << "needs root to mount a tmpfs";
  }
  fs::create_directories(dir_);
  ASSERT_EQ(::mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=64k"), 0) << strerror(errno);
  struct Unmount {
    std::string dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{dir_.string()};
  SpoolOptions o = Options();
  o.dir = (dir_ / "spool").string();
  o.segment_bytes = 1 << 20;
  o.max_bytes = 100 << 20;
  o.max_buffered_bytes = 200 << 10;
  o.reserve_bytes = 4096;
  std::unique_ptr<Spool> s;
  ASSERT_TRUE(Spool::Open(o, Boot('a'), &s).ok());
  std::string payload(1000, 'x');
  uint64_t added = 0, refused = 0;
  Status flushed;
  for (int i = 0; i < 400; ++i) {
    uint64_t seq = 0;
    Status a = s->Add(2, i, payload, false, &seq);
    if (a.ok()) {
      ++added;
      EXPECT_EQ(seq, added);
    } else {
      EXPECT_EQ(a.code(), Status::Code::kResourceExhausted);
      ++refused;
    }
    flushed = s->Flush();
    if (!flushed.ok()) {
      EXPECT_EQ(flushed.code(), Status::Code::kResourceExhausted);
    }
  }
  EXPECT_FALSE(flushed.ok()) << "the 64 KiB disk should be full";
  EXPECT_GT(refused, 0u) << "the memory bound should have refused records";
  // A loss record still fits in the reserve above the bound.
  uint64_t loss_seq = 0;
  ASSERT_TRUE(s->Add(3, 0, "loss", true, &loss_seq).ok());
  EXPECT_EQ(loss_seq, added + 1);
  ASSERT_EQ(::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT, "size=4m"), 0) << strerror(errno);
  ASSERT_TRUE(s->Flush().ok());
  s.reset();
  ASSERT_TRUE(Spool::Open(o, Boot('b'), &s).ok());
  auto sent = DrainAll(s.get());
  ASSERT_EQ(sent.size(), added + 1);
  for (uint64_t i = 0; i < sent.size(); ++i) EXPECT_EQ(sent[i].second, i + 1);
}

// Issue 13.5: 24 bytes overwritten in the middle of a segment were taken for
// a torn tail (816,300 bytes cut, 5,890 of 10,000 records gone, nothing
// counted). Frames carry a checksum: the damage is skipped to the next good
// frame, and one spoolCorrupt loss record, under the last lost sequence,
// says how many records were lost and which.
class SpoolDamageTest : public SpoolTest {
 protected:
  // 10,000 records of boot 'a' in one segment; returns its path.
  std::string Write(int records) {
    SpoolOptions o = Options();
    o.segment_bytes = 64 << 20;
    o.max_bytes = 256 << 20;
    std::unique_ptr<Spool> s;
    EXPECT_TRUE(Spool::Open(o, Boot('a'), &s).ok());
    for (int i = 0; i < records; ++i) {
      uint64_t seq = 0;
      EXPECT_TRUE(
          s->Add(2, i, "record-" + std::to_string(i) + std::string(60, '.'), false, &seq).ok());
      if (i % 100 == 99) {
        EXPECT_TRUE(s->Flush().ok());
      }
    }
    EXPECT_TRUE(s->Flush().ok());
    for (const auto& e : fs::directory_iterator(dir_)) {
      if (e.path().extension() == ".seg") return e.path();
    }
    return "";
  }
  static void Damage(const std::string& path, size_t at, size_t n) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(at));
    f << std::string(n, '\xa5');
  }
  // Everything the reopened spool sends: (sequence, kind, payload).
  std::vector<SpooledRecord> Reopen(std::unique_ptr<Spool>* s) {
    SpoolOptions o = Options();
    o.segment_bytes = 64 << 20;
    o.max_bytes = 256 << 20;
    EXPECT_TRUE(Spool::Open(o, Boot('b'), s).ok());
    std::vector<SpooledRecord> out;
    for (;;) {
      SpoolBatch b;
      EXPECT_TRUE((*s)->NextBatch(1000, &b).ok());
      if (b.records.empty()) return out;
      out.insert(out.end(), b.records.begin(), b.records.end());
    }
  }
  static uint64_t DeclaredFirst(const SpooledRecord& r, uint64_t* count) {
    uint64_t first = 0;
    EXPECT_TRUE(schema::ReadCanonical<schema::LossEvent>(r.payload, "loss", [&](auto l) {
                  EXPECT_EQ(l.getKind(), schema::LossKind::SPOOL_CORRUPT);
                  first = l.getFirstLostSequence();
                  *count = l.getCount();
                  return Status::Ok();
                }).ok());
    return first;
  }
};

TEST_F(SpoolDamageTest, DamageInTheMiddleIsSkippedAndRecordedAsALoss) {
  std::string path = Write(10000);
  size_t size = fs::file_size(path);
  Damage(path, size / 2, 24);
  std::unique_ptr<Spool> s;
  auto sent = Reopen(&s);
  ASSERT_GT(sent.size(), 9990u) << "the damage should cost a record or two, not half the file";
  // Sequences run 1..10000 with one declared jump: the loss record.
  uint64_t expect = 1, losses = 0, lost = 0;
  for (const SpooledRecord& r : sent) {
    if (r.kind == static_cast<uint32_t>(schema::RecordKind::LOSS)) {
      ++losses;
      uint64_t count = 0;
      EXPECT_EQ(DeclaredFirst(r, &count), expect);
      EXPECT_EQ(count, r.sequence - expect + 1);
      lost += count;
    } else {
      EXPECT_EQ(r.sequence, expect);
      EXPECT_EQ(r.payload.substr(0, 7), "record-");
    }
    expect = r.sequence + 1;
  }
  EXPECT_EQ(expect, 10001u);
  EXPECT_EQ(losses, 1u);
  EXPECT_GE(lost, 1u);
  EXPECT_LE(lost, 2u);
  EXPECT_EQ(s->corrupt_records_lost(), lost);
  // The repair is on disk: a second open finds the same, without new damage.
  s.reset();
  auto again = Reopen(&s);
  EXPECT_EQ(again.size(), sent.size());
  EXPECT_EQ(s->corrupt_records_lost(), 0u);
}

TEST_F(SpoolDamageTest, DamageAtTheStartOfASegment) {
  std::string path = Write(500);
  Damage(path, 8, 200);  // the first frames, right after the magic
  std::unique_ptr<Spool> s;
  auto sent = Reopen(&s);
  ASSERT_FALSE(sent.empty());
  EXPECT_EQ(sent.front().kind, static_cast<uint32_t>(schema::RecordKind::LOSS));
  uint64_t count = 0;
  EXPECT_EQ(DeclaredFirst(sent.front(), &count), 1u);
  EXPECT_EQ(sent.back().sequence, 500u);
  EXPECT_EQ(sent.size(), 500 - count + 1);
}

TEST_F(SpoolDamageTest, ATornTailIsStillCutWithoutALoss) {
  std::string path = Write(300);
  fs::resize_file(path, fs::file_size(path) - 10);  // the last write cut short
  std::unique_ptr<Spool> s;
  auto sent = Reopen(&s);
  ASSERT_EQ(sent.size(), 299u);
  for (const auto& r : sent) EXPECT_NE(r.kind, static_cast<uint32_t>(schema::RecordKind::LOSS));
  EXPECT_EQ(s->corrupt_records_lost(), 0u);
}

// Segments written before checksums (version 1) are still read and sent.
TEST_F(SpoolDamageTest, VersionOneSegmentsAreStillRead) {
  fs::create_directories(dir_);
  std::string boot_hex(32, '6');  // Boot('f') is 16 bytes of 'f' (0x66)
  std::ofstream f(dir_ / (boot_hex + "-00000000000000000001.seg"), std::ios::binary);
  for (uint64_t seq = 1; seq <= 3; ++seq) {
    std::string payload = "old-" + std::to_string(seq);
    uint32_t len = static_cast<uint32_t>(payload.size()), kind = 2;
    int64_t t = 0;
    f.write(reinterpret_cast<const char*>(&len), 4);
    f.write(reinterpret_cast<const char*>(&kind), 4);
    f.write(reinterpret_cast<const char*>(&seq), 8);
    f.write(reinterpret_cast<const char*>(&t), 8);
    f << payload;
  }
  f.close();
  std::unique_ptr<Spool> s;
  auto sent = Reopen(&s);
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[2].payload, "old-3");
}

}  // namespace
}  // namespace latch::agent
