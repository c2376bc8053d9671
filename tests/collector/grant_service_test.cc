// The GrantService (collector/grants/grant_service.h) on its own: a grant
// reaches hosts only once its action is durable, an undone action leaves the
// book (versions included) as a replay of the ledger gives it, and revoke
// and expiry are recorded before they act.
#include "collector/grants/grant_service.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "collector/ledger/entry_range.h"
#include "collector/ledger/file_ledger.h"
#include "schemas/canonical.h"
#include "schemas/host_policy.h"
#include "schemas/record_codec.h"
#include "schemas/wire.capnp.h"
#include "temp_dir.h"

namespace latch::collector {
namespace {

constexpr int64_t kMinute = 60'000'000'000;

class GrantServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ledger::FileLedger::Create(tmp_ / "ledger", "test.example/log").ok());
    ASSERT_TRUE(
        ledger::FileLedger::Open(tmp_ / "ledger", ledger::FileLedger::Mode::kReadWrite, &ledger_)
            .ok());
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

// Issue 16: a policy gives each host it names its resources, in its signed
// set under a new version; the same policy again changes nothing; a host it
// stops naming is sent an empty one; and the time a host's kernel first
// held it is kept, through a snapshot too.
TEST_F(GrantServiceTest, APolicyGivesEachHostItsResourcesInItsSet) {
  auto policy_record = [](const std::vector<std::pair<std::string, uint16_t>>& hosts) {
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor("collector");
    auto list = a.initPolicyLoaded().initHosts(static_cast<unsigned>(hosts.size()));
    for (unsigned i = 0; i < hosts.size(); ++i) {
      list[i].setHostId(hosts[i].first);
      resource::Resource r;
      r.id = 9;
      r.name = "db";
      EXPECT_TRUE(resource::ParseDestination("10.1.2.3", &r).ok());
      r.port_lo = r.port_hi = hosts[i].second;
      resource::ResourceToSchema(r, list[i].initPolicy().initResources(1)[0]);
    }
    return schema::CanonicalBytes(a.asReader());
  };
  auto apply = [&](GrantService& g, const std::string& record, int64_t at) {
    ASSERT_TRUE(schema::ReadCanonical<schema::WorkflowAction>(record, "record", [&](auto a) {
                  g.ApplyPolicy(a.getPolicyLoaded(), at);
                  return Status::Ok();
                }).ok());
  };
  const std::string first = policy_record({{"h1", 5432}});
  apply(*grants_, first, 100);
  EXPECT_EQ(pushed_, std::vector<std::string>{"h1"});
  const uint64_t v1 = grants_->book().version("h1");
  EXPECT_GT(v1, 0u);
  nlohmann::json hosts = grants_->DescribeHosts();
  ASSERT_EQ(hosts.size(), 1u) << hosts;
  EXPECT_EQ(hosts[0]["host"], "h1");
  EXPECT_EQ(hosts[0]["resources"][0]["ports"], "5432") << hosts;
  EXPECT_EQ(hosts[0]["resources"][0]["destinations"][0], "10.1.2.3/32") << hosts;
  EXPECT_EQ(hosts[0]["policy_since_ns"], 100);
  EXPECT_TRUE(hosts[0]["in_force_since_ns"].is_null());

  std::string signed_set;
  ASSERT_TRUE(grants_->SignedSet("h1", 1, &signed_set).ok());
  ASSERT_TRUE(
      schema::ReadCanonical<schema::SignedGrantSet>(signed_set, "set", [&](auto ss) {
        return schema::ReadCanonical<schema::GrantSet>(
            std::string(reinterpret_cast<const char*>(ss.getSet().begin()), ss.getSet().size()),
            "set", [&](schema::GrantSet::Reader set) {
              EXPECT_TRUE(set.hasHostPolicy());
              EXPECT_EQ(set.getHostPolicy().getSinceNs(), 100);
              EXPECT_EQ(set.getHostPolicy().getResources()[0].getPortLow(), 5432);
              return Status::Ok();
            });
      }).ok());

  pushed_.clear();
  apply(*grants_, first, 150);  // the same policy again: nothing changes
  EXPECT_TRUE(pushed_.empty());
  EXPECT_EQ(grants_->book().version("h1"), v1);

  capnp::MallocMessageBuilder none;
  auto no_grants = none.initRoot<schema::GrantSetApplied>().initGrantIds(0).asReader();
  grants_->NoteApplied("h1", v1 - 1, no_grants, 150);  // an older set: not yet
  EXPECT_TRUE(grants_->DescribeHosts()[0]["in_force_since_ns"].is_null());
  grants_->NoteApplied("h1", v1, no_grants, 200);
  grants_->NoteApplied("h1", v1 + 5, no_grants, 300);  // a later set keeps the first time
  EXPECT_EQ(grants_->DescribeHosts()[0]["in_force_since_ns"], 200);

  auto restored = NewService();
  ASSERT_TRUE(restored->FromSnapshot(grants_->ToSnapshot()).ok());
  EXPECT_EQ(restored->DescribeHosts(), grants_->DescribeHosts());

  // Moved to h2 with another port: h1 keeps an empty policy, both change.
  apply(*grants_, policy_record({{"h2", 6432}}), 400);
  EXPECT_EQ(pushed_, (std::vector<std::string>{"h1", "h2"}));
  hosts = grants_->DescribeHosts();
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_TRUE(hosts[0]["resources"].empty()) << hosts;
  EXPECT_EQ(hosts[0]["policy_since_ns"], 400);
  EXPECT_TRUE(hosts[0]["in_force_since_ns"].is_null());
  EXPECT_EQ(hosts[1]["resources"][0]["ports"], "6432");
}

}  // namespace
}  // namespace latch::collector
