// CollectorServer as a standby (issue 17): with the ledger shared in
// PostgreSQL, a collector that is not the sequencer runs its loop and API
// all the same, but binds no agent endpoint and records nothing. At every
// sequencer_wait_ms a worker tries for the sequencer's lock and follows the
// ledger; on the loop, each new entry is taken in exactly as a start-up
// replay would (ReplayLedger), so the grant book, requests, sequence marks,
// enrolment, snapshots and events index stay hot and reads are answered
// from them. When the lock comes free this collector takes over, replaying
// only what landed since its last follow.

#include <chrono>
#include <string>

#include "collector/ingest/api_answer.h"
#include "collector/ingest/collector_server.h"
#include "lib/logging/logger.h"

namespace latch::collector {

namespace {
using Clock = std::chrono::steady_clock;

int64_t MillisSince(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}
}  // namespace

Status CollectorServer::ChooseRole() {
  standby_since_ = Clock::now();
  applied_ = ledger_->size();  // RestoreState took in everything before
  bool became = false;
  Status s = shared_->TryBecomeSequencer(&became);
  if (became) {
    // The tree as the database has it now, which may be past RestoreState's.
    const uint64_t from = applied_;
    LATCH_RETURN_IF_ERROR(ReplayLedger(&applied_).WithContext("taking over the ledger"));
    channel_->EnrolmentChanged();
    counters_.takeover_replayed_entries = applied_ - from;
    logging::Default().Info("this collector is the sequencer",
                            {{"storage", ledger_->Describe()},
                             {"ledger_size", applied_},
                             {"followed", 0},
                             {"replayed_at_takeover", applied_ - from},
                             {"waited_ms", MillisSince(standby_since_)}});
    return Status::Ok();
  }
  if (!s.ok()) {
    follow_error_ = s.ToString();
    logging::Default().Warn("standby: cannot reach the database for the sequencer's lock",
                            {{"storage", ledger_->Describe()}, {"error", follow_error_}});
  } else {
    logging::Default().Info("standby: another collector is the sequencer; following its ledger",
                            {{"storage", ledger_->Describe()}, {"ledger_size", applied_}});
  }
  standby_ = true;
  return Status::Ok();
}

void CollectorServer::MaintainStandby() {
  FollowLedger();
  WakeTails();
  if (applied_ != index_notified_size_) {
    index_notified_size_ = applied_;
    index_->Notify();
  }
  if (applied_ - snapshot_size_ >= config_.snapshot_every_entries) SaveSnapshot("standby");
}

void CollectorServer::FollowLedger() {
  LATCH_ASSERT_ON_LOOP(*loop_);
  if (follow_in_flight_ || stopping_ || Clock::now() < next_follow_) return;
  follow_in_flight_ = true;
  // Database round trips, off the loop: a slow or lost database holds up
  // neither the API nor the stop.
  PostToWorker([this] {
    bool became = false, grew = false;
    std::string sequencer;
    Status s = shared_->TryBecomeSequencer(&became);
    if (s.ok() && !became) s = shared_->Follow(&grew);
    // Only a hint for clients that a change was refused here.
    if (s.ok() && !became && !shared_->SequencerAddress(&sequencer).ok()) sequencer.clear();
    loop_->Post([this, s, became, grew, sequencer] {
      sequencer_address_ = sequencer;
      Followed(s, became, grew);
    });
  });
}

void CollectorServer::Followed(const Status& s, bool became, bool grew) {
  LATCH_ASSERT_ON_LOOP(*loop_);
  follow_in_flight_ = false;
  next_follow_ = Clock::now() + std::chrono::milliseconds(config_.sequencer_wait_ms);
  if (stopping_) return;
  if (became) return TakeOver();
  // The next follow on its own timer, not the loop's slower tick: what a
  // takeover has left to replay is what landed since the last follow.
  FollowAt(next_follow_);
  Status r = s;
  if (r.ok() && grew) {
    const uint64_t from = applied_;
    r = ReplayLedger(&applied_);
    followed_ += applied_ - from;
    counters_.standby_followed_entries += applied_ - from;
  }
  // A fork, a tree that went back, an entry that does not decode: the
  // faults that stop a start stop a standby too (exit non-zero, logged).
  if (r.code() == Status::Code::kCorruption || r.code() == Status::Code::kVerifyFailed) {
    loop_status_ = r.WithContext("following the sequencer's ledger");
    stopping_ = true;
    return loop_->Exit();
  }
  if (!r.ok()) {
    if (r.ToString() != follow_error_) {
      logging::Default().Warn("standby: cannot follow the ledger in the database",
                              {{"storage", ledger_->Describe()}, {"error", r.ToString()}});
      follow_error_ = r.ToString();
    }
  } else if (!follow_error_.empty()) {
    logging::Default().Info("standby: following the ledger again",
                            {{"storage", ledger_->Describe()}, {"ledger_size", applied_}});
    follow_error_.clear();
  }
}

void CollectorServer::TakeOver() {
  const uint64_t from = applied_;
  Status s = ReplayLedger(&applied_).WithContext("taking over the ledger");
  if (s.ok()) s = BindAgentSockets();
  if (!s.ok()) {
    loop_status_ = s;
    stopping_ = true;
    return loop_->Exit();
  }
  standby_ = false;
  channel_->EnrolmentChanged();
  counters_.takeover_replayed_entries = applied_ - from;
  WatchAgentSockets();
  logging::Default().Info("this collector is the sequencer",
                          {{"storage", ledger_->Describe()},
                           {"ledger_size", applied_},
                           {"followed", followed_},
                           {"replayed_at_takeover", applied_ - from},
                           {"waited_ms", MillisSince(standby_since_)}});
  // On record first, as at a start: the grant key in use; then (Maintain)
  // the policy this collector runs by, loaded as a standby.
  Act([this] { return Record(GrantKeyInUseRecord(), "", NowNs()); },
      [this](const Status& recorded) {
        if (recorded.ok()) return;
        // As when a start cannot record it: exit non-zero, and the service
        // manager starts this collector again (as a standby, or the sequencer).
        loop_status_ = recorded.WithContext("recording the grant key in use at the takeover");
        stopping_ = true;
        loop_->Exit();
      });
  reload_policy_ = !config_.policy.empty();
  PostTurn();
}

api::ApiResponse CollectorServer::StandbyRefusal() const {
  // Where the sequencer said its API is ([api] advertise), if it did.
  const std::string where = sequencer_address_.empty() ? "(another collector on the same ledger)"
                                                       : "at " + sequencer_address_;
  nlohmann::json j = {{"error", "this collector is a standby: changes go to the sequencer " +
                                    where + "; nothing was changed"},
                      {"standby", true}};
  if (!sequencer_address_.empty()) j["sequencer"] = sequencer_address_;
  return Json(503, j);
}

}  // namespace latch::collector
