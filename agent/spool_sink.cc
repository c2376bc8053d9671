#include "agent/spool_sink.h"

#include <capnp/message.h>

#include <cstring>

#include "agent/boot_clock.h"
#include "schemas/activity_record.h"
#include "schemas/canonical.h"
#include "schemas/event.capnp.h"
#include "schemas/event_record.h"
#include "schemas/ledger.capnp.h"

namespace latch::agent {
namespace {

constexpr uint32_t kEventKind = static_cast<uint32_t>(schema::RecordKind::EVENT);
constexpr uint32_t kLossKind = static_cast<uint32_t>(schema::RecordKind::LOSS);
constexpr uint32_t kActivityKind = static_cast<uint32_t>(schema::RecordKind::ACTIVITY);

schema::LossKind ToSchema(LossKind k) {
  switch (k) {
    case LossKind::kRingBufferFull:
      return schema::LossKind::RING_BUFFER_FULL;
    case LossKind::kSpoolFull:
      return schema::LossKind::SPOOL_FULL;
    case LossKind::kDecodeFailure:
      return schema::LossKind::DECODE_FAILURE;
    case LossKind::kActivityRingBufferFull:
      return schema::LossKind::ACTIVITY_RING_BUFFER_FULL;
    case LossKind::kActivityCaptureUnavailable:
      return schema::LossKind::ACTIVITY_CAPTURE_UNAVAILABLE;
  }
  return schema::LossKind::UNSPECIFIED;
}

}  // namespace

void SpoolSink::AddEvent(const latch_decision_event& e) {
  Spooled(spool_.Add(kEventKind, WallTimeOf(e.ktime_boot_ns),
                     record::EncodeDecisionEvent(e, IdentityOf(e)), false, &seq_));
}

bool SpoolSink::AddActivity(std::string_view raw) {
  std::string encoded;
  if (!EncodeActivity(raw, &encoded).ok()) return false;
  latch_activity_header h;
  std::memcpy(&h, raw.data(), sizeof(h));  // EncodeActivityEvent checked the size
  Spooled(spool_.Add(kActivityKind, WallTimeOf(h.ktime_boot_ns), encoded, false, &seq_));
  return true;
}

// The record's own time, on the wall clock: the kernel stamped it on the boot
// clock. The offset between the two clocks is read once per flush, not per
// record (two clock reads per record were a tenth of the agent's cost).
int64_t SpoolSink::WallTimeOf(uint64_t ktime_boot_ns) {
  if (!wall_offset_known_) {
    wall_minus_boot_ns_ = NowUnixNs() - static_cast<int64_t>(NowBootNs());
    wall_offset_known_ = true;
  }
  return wall_minus_boot_ns_ + static_cast<int64_t>(ktime_boot_ns);
}

void SpoolSink::Spooled(const Status& s) {
  if (s.ok()) {
    ++events_spooled_;
  } else if (s.code() == Status::Code::kResourceExhausted) {
    ++spool_full_total_;
  } else if (error_.ok()) {
    error_ = s;
  }
}

Status SpoolSink::AddLoss(LossKind kind, uint64_t count, uint64_t total,
                          const std::string& activity_kind, const std::string& reason) {
  capnp::MallocMessageBuilder m;
  auto loss = m.initRoot<schema::LossEvent>();
  loss.setKind(ToSchema(kind));
  loss.setCount(count);
  loss.setTotal(total);
  if (!activity_kind.empty()) loss.setActivityKind(activity_kind);
  if (!reason.empty()) loss.setReason(reason);
  uint64_t seq;
  return spool_.Add(kLossKind, NowUnixNs(), schema::CanonicalBytes(loss.asReader()), true, &seq)
      .WithContext("spooling a loss record");
}

Status SpoolSink::AddGuardEvent(const std::vector<std::string>& missing, bool reattached,
                                const std::string& error) {
  capnp::MallocMessageBuilder m;
  auto g = m.initRoot<schema::GuardEvent>();
  auto list = g.initMissing(static_cast<unsigned>(missing.size()));
  for (unsigned i = 0; i < missing.size(); ++i) list.set(i, missing[i]);
  g.setReattached(reattached);
  if (!error.empty()) g.setError(error);
  uint64_t seq;
  // The reserve takes it when the spool is full: like a loss, it must not be
  // crowded out by the events of a flood.
  return spool_
      .Add(static_cast<uint32_t>(schema::RecordKind::GUARD), NowUnixNs(),
           schema::CanonicalBytes(g.asReader()), true, &seq)
      .WithContext("spooling a guard record");
}

void SpoolSink::RecordSpoolFull(bool whatever_the_interval) {
  if (spool_full_total_ == spool_full_recorded_) return;
  auto now = Clock::now();
  bool due = whatever_the_interval || last_loss_record_ == Clock::time_point{} ||
             now - last_loss_record_ >= loss_interval_;
  // Even the reserve full: the count stays pending and goes into a later record.
  if (due &&
      AddLoss(LossKind::kSpoolFull, spool_full_total_ - spool_full_recorded_, spool_full_total_)
          .ok()) {
    spool_full_recorded_ = spool_full_total_;
    last_loss_record_ = now;
  }
}

Status SpoolSink::FlushPendingLosses() {
  RecordSpoolFull(/*whatever_the_interval=*/true);
  return Flush();
}

Status SpoolSink::Flush() {
  RecordSpoolFull(/*whatever_the_interval=*/false);
  wall_offset_known_ = false;  // the wall clock may have been set since
  Status s = error_;
  error_ = Status::Ok();
  LATCH_RETURN_IF_ERROR(s);
  return spool_.Flush();
}

}  // namespace latch::agent
