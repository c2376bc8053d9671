// SpoolSink: records into the spool as the collector will put them in the
// ledger (canonical DecisionEvent / LossEvent payloads). A full spool turns
// events into counted spool_full losses; their loss record goes into the
// spool's reserve at the next Flush(), so a flood is never silent, and at
// most one per `loss_interval`: a flood of refusals folds into a record per
// interval instead of filling the reserve with records of one loss each.
#pragma once

#include <chrono>
#include <cstdint>

#include "agent/record_sink.h"
#include "agent/spool.h"

namespace latch::agent {

class SpoolSink : public RecordSink {
 public:
  using Clock = std::chrono::steady_clock;
  explicit SpoolSink(Spool& spool, Clock::duration loss_interval = std::chrono::seconds(1))
      : spool_(spool), loss_interval_(loss_interval) {}
  void AddEvent(const latch_decision_event& e) override;
  bool AddActivity(std::string_view raw) override;
  Status AddLoss(LossKind kind, uint64_t count, uint64_t total,
                 const std::string& activity_kind = "", const std::string& reason = "") override;
  Status AddGuardEvent(const std::vector<std::string>& missing, bool reattached,
                       const std::string& error) override;
  Status Flush() override;

  // Adds the spool_full loss record still pending, interval or not (at exit).
  Status FlushPendingLosses();

  uint64_t spool_full_total() const { return spool_full_total_; }
  uint64_t events_spooled() const { return events_spooled_; }

 private:
  int64_t WallTimeOf(uint64_t ktime_boot_ns);
  void Spooled(const Status& s);  // counts an Add's outcome
  // Adds the spool_full loss record for what is pending, when its interval
  // has passed (or whatever the interval).
  void RecordSpoolFull(bool whatever_the_interval);

  Spool& spool_;
  Clock::duration loss_interval_;
  Clock::time_point last_loss_record_{};  // of kind spool_full; epoch: none yet
  uint64_t spool_full_total_ = 0;         // events refused by a full spool
  uint64_t spool_full_recorded_ = 0;      // of them, already in a loss record
  uint64_t events_spooled_ = 0;
  int64_t wall_minus_boot_ns_ = 0;  // read again after each Flush
  bool wall_offset_known_ = false;
  Status error_;      // first failure of an Add, returned by Flush
  uint64_t seq_ = 0;  // the last Add's sequence (unused)
};

}  // namespace latch::agent
