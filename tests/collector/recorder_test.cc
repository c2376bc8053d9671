// The Recorder (collector/record/recorder.h) on its own: an action's records
// as one batch whose outcome comes back on the loop, records nobody waits
// for kept while the ledger refuses writes, and the count of those dropped
// past the limit put on the record.
#include "collector/record/recorder.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "collector/ledger/entry_range.h"
#include "collector/ledger/file_ledger.h"
#include "schemas/canonical.h"
#include "schemas/record_codec.h"
#include "schemas/workflow.capnp.h"
#include "temp_dir.h"

namespace latch::collector {
namespace {

std::string Action(const std::string& actor) {
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(actor);
  a.initGrantExpired().setGrantId(7);
  return schema::CanonicalBytes(a.asReader());
}

class RecorderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ledger::FileLedger::Create(tmp_ / "ledger", "test.example/log").ok());
    ASSERT_TRUE(
        ledger::FileLedger::Open(tmp_ / "ledger", ledger::FileLedger::Mode::kReadWrite, &ledger_)
            .ok());
    ledger::BatcherOptions options;
    options.max_batch_age = std::chrono::milliseconds(1);
    recorder_ = std::make_unique<Recorder>(*ledger_, options, tmp_.path(), loop_);
  }
  // Runs `fn` on the loop, then the loop until `done` says so (or 5 s).
  void OnLoop(std::function<void()> fn, const std::function<bool()>& done) {
    loop_.Post(std::move(fn));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    std::function<void()> check = [&] {
      if (done() || std::chrono::steady_clock::now() > deadline) return loop_.Exit();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      loop_.Post(check);
    };
    loop_.Post(check);
    loop_.Run();
  }
  std::vector<std::string> Actors() {
    std::vector<std::string> out;
    ledger::LedgerRecord rec;
    EXPECT_TRUE(
        ledger::ForEachEntry(*ledger_, 0, ledger_->size(), [&](uint64_t, std::string_view e) {
          LATCH_RETURN_IF_ERROR(ledger::DecodeRecord(e, &rec));
          return schema::ReadCanonical<schema::WorkflowAction>(
              rec.payload, "entry", [&](schema::WorkflowAction::Reader a) {
                out.push_back(a.getActor());
                return Status::Ok();
              });
        }).ok());
    return out;
  }
  ledger::TempDir tmp_;
  std::unique_ptr<ledger::Ledger> ledger_;
  Dispatcher loop_;
  std::unique_ptr<Recorder> recorder_;
};

// An action's three records are one commit; its outcome is told on the loop
// thread, once they are durable, and it is counted pending until then.
TEST_F(RecorderTest, AnActionIsOneCommitAnsweredOnTheLoop) {
  const uint64_t commits = ledger_->commits();
  bool answered = false, on_loop = false, durable = false;
  int pending_while_in_flight = -1;
  Status outcome = Status::IoError("not answered");
  OnLoop(
      [&] {
        recorder_->Open();
        for (const char* who : {"a", "b", "c"}) {
          ASSERT_TRUE(recorder_->Record(Action(who), "", WallClockNs()).ok());
        }
        ledger::EntryBatch batch = recorder_->Close();
        EXPECT_FALSE(recorder_->open());
        recorder_->Commit(std::move(batch), [&](const Status& s) {
          outcome = s;
          on_loop = loop_.IsLoopThread();
          durable = ledger_->size() == 3;
          answered = true;
        });
        pending_while_in_flight = recorder_->pending();
      },
      [&] { return answered; });
  ASSERT_TRUE(answered);
  EXPECT_TRUE(outcome.ok()) << outcome.ToString();
  EXPECT_TRUE(on_loop);
  EXPECT_TRUE(durable);
  EXPECT_EQ(pending_while_in_flight, 1);
  EXPECT_EQ(recorder_->pending(), 0);
  EXPECT_EQ(ledger_->commits(), commits + 1);
  EXPECT_EQ(Actors(), (std::vector<std::string>{"a", "b", "c"}));
}

// A record outside an action is refused, not written on its own: an
// action's records land together or not at all.
TEST_F(RecorderTest, ARecordOutsideAnActionIsRefused) {
  Status s;
  OnLoop([&] { s = recorder_->Record(Action("x"), "", WallClockNs()); }, [] { return true; });
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(ledger_->size(), 0u);
}

// While the ledger refuses writes, an action's record is refused with the
// reason, records nobody waits for are kept, and once the ledger is taken
// back they are written in order.
TEST_F(RecorderTest, RecordsWaitWhileTheLedgerRefusesWritesAndLandOnceItTakesThem) {
  recorder_->NoteFailure(Status::IoError("disk full (test)"));
  Status refused;
  OnLoop(
      [&] {
        recorder_->RecordLater(Action("first"), "");
        recorder_->RecordLater(Action("second"), "");
        recorder_->Open();
        refused = recorder_->Record(Action("action"), "", WallClockNs());
        (void)recorder_->Close();
      },
      [] { return true; });
  EXPECT_EQ(refused.code(), Status::Code::kIoError);
  EXPECT_NE(refused.message().find("disk full (test)"), std::string::npos) << refused.ToString();
  EXPECT_EQ(recorder_->unwritten(), 2u);
  EXPECT_EQ(ledger_->size(), 0u);
  // Recovery is tried about once a second.
  bool recovered = false;
  OnLoop([] {},
         [&] {
           recovered = recovered || recorder_->Maintain();
           return recovered && ledger_->size() == 2;
         });
  ASSERT_TRUE(recovered);
  EXPECT_TRUE(recorder_->writable());
  EXPECT_EQ(recorder_->unwritten(), 0u);
  EXPECT_EQ(Actors(), (std::vector<std::string>{"first", "second"}));
}

// Past kMaxUnwritten, records are dropped and counted, and the count goes on
// the record (an ownRecordsDropped record) once writes resume.
TEST_F(RecorderTest, RecordsDroppedPastTheLimitAreCountedOnTheRecord) {
  recorder_->NoteFailure(Status::IoError("disk full (test)"));
  const size_t extra = 5;
  OnLoop(
      [&] {
        for (size_t i = 0; i < Recorder::kMaxUnwritten + extra; ++i) {
          recorder_->RecordLater(Action("r"), "");
        }
      },
      [] { return true; });
  EXPECT_EQ(recorder_->unwritten(), Recorder::kMaxUnwritten);
  EXPECT_EQ(recorder_->unwritten_dropped(), extra);
  OnLoop([] {},
         [&] {
           recorder_->Maintain();
           return ledger_->size() == Recorder::kMaxUnwritten + 1;
         });
  ASSERT_EQ(ledger_->size(), Recorder::kMaxUnwritten + 1);
  ledger::LedgerRecord rec;
  uint64_t counted = 0;
  ASSERT_TRUE(ledger::ForEachEntry(*ledger_, ledger_->size() - 1, ledger_->size(),
                                   [&](uint64_t, std::string_view e) {
                                     LATCH_RETURN_IF_ERROR(ledger::DecodeRecord(e, &rec));
                                     return schema::ReadCanonical<schema::WorkflowAction>(
                                         rec.payload, "entry",
                                         [&](schema::WorkflowAction::Reader a) {
                                           if (a.isOwnRecordsDropped()) {
                                             counted = a.getOwnRecordsDropped().getCount();
                                           }
                                           return Status::Ok();
                                         });
                                   })
                  .ok());
  EXPECT_EQ(counted, extra);
}

}  // namespace
}  // namespace latch::collector
