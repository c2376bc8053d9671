// The GrantService (collector/grants/grant_service.h) on its own: a grant
// reaches hosts only once its action is durable, an undone action leaves the
// book (versions included) as a replay of the ledger gives it, and revoke
// and expiry are recorded before they act.
#include "collector/grants/grant_service.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "collector/ledger/entry_range.h"
#include "schemas/canonical.h"
#include "schemas/record_codec.h"
#include "temp_dir.h"

namespace latch::collector {
namespace {

constexpr int64_t kMinute = 60'000'000'000;

class GrantServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ledger::Ledger::Create(tmp_ / "ledger", "test.example/log").ok());
    ASSERT_TRUE(
        ledger::Ledger::Open(tmp_ / "ledger", ledger::Ledger::Mode::kReadWrite, &ledger_).ok());
    ledger::BatcherOptions options;
    options.max_batch_age = std::chrono::milliseconds(1);
    recorder_ = std::make_unique<Recorder>(*ledger_, options, tmp_.path(), loop_);
    ASSERT_TRUE(tlog::NoteSigner::Generate("test.example/grants", &key_).ok());
    grants_ = NewService();
  }
  std::unique_ptr<GrantService> NewService() {
    return std::make_unique<GrantService>(
        key_, std::vector<tlog::NoteVerifier>{}, *recorder_,
        [this](const std::string& host) { pushed_.push_back(host); });
  }
  static GrantSpec Spec(int64_t not_after) {
    GrantSpec spec;
    GrantPrincipal p;
    p.uid = 4000;
    spec.principals = {p};
    spec.resource_ids = {9};
    spec.host_ids = {"h1", "h2"};
    spec.not_before_unix_ns = WallClockNs() - kMinute;
    spec.not_after_unix_ns = not_after;
    return spec;
  }
  // Runs `action` as the collector runs one: records gathered, committed,
  // then Durable or Undo by the outcome. The outcome of the action itself.
  Status Act(const std::function<Status()>& action) {
    Status result;
    bool settled = false;
    loop_.Post([&] {
      recorder_->Open();
      grants_->BeginAction();
      result = action();
      ledger::EntryBatch batch = recorder_->Close();
      if (!result.ok() || batch.empty()) {
        if (result.ok()) {
          grants_->Durable();
        } else {
          grants_->Undo();
        }
        settled = true;
        return loop_.Exit();
      }
      recorder_->Commit(std::move(batch), [&](const Status& s) {
        if (s.ok()) {
          grants_->Durable();
        } else {
          grants_->Undo();
          result = s;
        }
        settled = true;
        loop_.Exit();
      });
    });
    loop_.Run();
    EXPECT_TRUE(settled);
    return result;
  }
  // The book a start from this ledger rebuilds.
  std::unique_ptr<GrantService> Replayed() {
    auto replayed = NewService();
    ledger::LedgerRecord rec;
    EXPECT_TRUE(
        ledger::ForEachEntry(*ledger_, 0, ledger_->size(), [&](uint64_t i, std::string_view e) {
          LATCH_RETURN_IF_ERROR(ledger::DecodeRecord(e, &rec));
          return schema::ReadCanonical<schema::WorkflowAction>(
              rec.payload, "entry", [&](schema::WorkflowAction::Reader a) {
                return replayed->Replay(a, rec.host_id, rec.receive_time_ns, std::to_string(i));
              });
        }).ok());
    return replayed;
  }

  ledger::TempDir tmp_;
  std::unique_ptr<ledger::Ledger> ledger_;
  Dispatcher loop_;
  std::unique_ptr<Recorder> recorder_;
  tlog::NoteSigner key_;
  std::unique_ptr<GrantService> grants_;
  std::vector<std::string> pushed_;
};

// Inside an action nothing is pushed; once its record is durable, each host
// the grant names is sent its new set, once.
TEST_F(GrantServiceTest, AGrantReachesItsHostsOnlyOnceItsRecordIsDurable) {
  uint64_t id = 0;
  std::vector<std::string> pushed_before_durable;
  ASSERT_TRUE(Act([&] {
                Status s = grants_->Issue(Spec(WallClockNs() + 10 * kMinute), "ann", &id);
                pushed_before_durable = pushed_;
                EXPECT_TRUE(grants_->acting());
                return s;
              }).ok());
  EXPECT_TRUE(pushed_before_durable.empty());
  EXPECT_EQ(pushed_, (std::vector<std::string>{"h1", "h2"}));
  EXPECT_FALSE(grants_->acting());
  EXPECT_EQ(ledger_->size(), 1u);
  EXPECT_TRUE(grants_->book().Has(id));
}

// A grant issued in an action that is not recorded (the ledger refuses
// writes when it commits) is undone: not in the book, never pushed, and
// every host's version is the one a replay of the ledger gives, so that the
// next set sent is one an agent that restarts with a replayed collector
// would also be sent. (Undoing by revoking in the book, as before, left the
// live versions two ahead of the replay's.)
TEST_F(GrantServiceTest, AnUndoneActionLeavesTheBookAsAReplayGivesIt) {
  uint64_t first = 0;
  ASSERT_TRUE(
      Act([&] { return grants_->Issue(Spec(WallClockNs() + 10 * kMinute), "ann", &first); }).ok());
  pushed_.clear();
  const uint64_t version = grants_->book().version("h1");
  uint64_t second = 0;
  Status s = Act([&] {
    Status issued = grants_->Issue(Spec(WallClockNs() + 10 * kMinute), "ann", &second);
    if (!issued.ok()) return issued;
    return Status::FailedPrecondition("the action's next step is refused (test)");
  });
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition);
  EXPECT_TRUE(pushed_.empty());
  EXPECT_FALSE(grants_->book().Has(second));
  EXPECT_EQ(grants_->book().version("h1"), version);
  auto replayed = Replayed();
  EXPECT_EQ(replayed->book().version("h1"), version);
  EXPECT_EQ(replayed->book().version("h2"), grants_->book().version("h2"));
  EXPECT_EQ(replayed->ToSnapshot(), grants_->ToSnapshot());
}

// Revoking what is not live is NotFound and records nothing; a revoke and an
// expiry are recorded, end the grant among the past ones, and push.
TEST_F(GrantServiceTest, RevokeAndExpiryAreRecordedBeforeTheyAct) {
  EXPECT_EQ(Act([&] { return grants_->Revoke(42, "ann", "no such"); }).code(),
            Status::Code::kNotFound);
  EXPECT_EQ(ledger_->size(), 0u);
  uint64_t kept = 0, ending = 0;
  const int64_t soon = WallClockNs() + kMinute;
  ASSERT_TRUE(Act([&] {
                LATCH_RETURN_IF_ERROR(
                    grants_->Issue(Spec(WallClockNs() + 10 * kMinute), "ann", &kept));
                return grants_->Issue(Spec(soon), "ann", &ending);
              }).ok());
  pushed_.clear();
  ASSERT_TRUE(Act([&] { return grants_->Revoke(kept, "sam", "done"); }).ok());
  EXPECT_EQ(pushed_, (std::vector<std::string>{"h1", "h2"}));
  ASSERT_TRUE(Act([&] { return grants_->ExpireEnded(soon + 1); }).ok());
  EXPECT_EQ(grants_->book().grant_count(), 0u);
  EXPECT_EQ(ledger_->size(), 4u);  // two issued, one revoked, one expired
  nlohmann::json all = grants_->Describe(true, [](const nlohmann::json&) { return true; });
  ASSERT_EQ(all["past"].size(), 2u) << all.dump();
  EXPECT_EQ(all["past"][0]["ended"], "expired");
  EXPECT_EQ(all["past"][1]["ended"], "revoked");
  EXPECT_EQ(Replayed()->ToSnapshot(), grants_->ToSnapshot());
}

}  // namespace
}  // namespace latch::collector
