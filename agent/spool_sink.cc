#include "agent/spool_sink.h"

#include <capnp/message.h>

#include "agent/boot_clock.h"
#include "agent/event_record.h"
#include "schemas/canonical.h"
#include "schemas/event.capnp.h"
#include "schemas/ledger.capnp.h"

namespace latch::agent {
namespace {

constexpr uint32_t kEventKind = static_cast<uint32_t>(schema::RecordKind::EVENT);
constexpr uint32_t kLossKind = static_cast<uint32_t>(schema::RecordKind::LOSS);

schema::LossKind ToSchema(LossKind k) {
  switch (k) {
    case LossKind::kRingBufferFull:
      return schema::LossKind::RING_BUFFER_FULL;
    case LossKind::kSpoolFull:
      return schema::LossKind::SPOOL_FULL;
    case LossKind::kDecodeFailure:
      return schema::LossKind::DECODE_FAILURE;
  }
  return schema::LossKind::UNSPECIFIED;
}

}  // namespace

void SpoolSink::AddEvent(const latch_decision_event& e) {
  uint64_t seq;
  // The event's own time, on the wall clock: the kernel stamped it on the boot clock.
  int64_t when = NowUnixNs() - static_cast<int64_t>(NowBootNs() - e.ktime_boot_ns);
  Status s = spool_.Add(kEventKind, when, EncodeDecisionEvent(e), false, &seq);
  if (s.ok()) {
    ++events_spooled_;
  } else if (s.code() == Status::Code::kResourceExhausted) {
    ++spool_full_total_;
  } else if (error_.ok()) {
    error_ = s;
  }
}

Status SpoolSink::AddLoss(LossKind kind, uint64_t count, uint64_t total) {
  capnp::MallocMessageBuilder m;
  auto loss = m.initRoot<schema::LossEvent>();
  loss.setKind(ToSchema(kind));
  loss.setCount(count);
  loss.setTotal(total);
  uint64_t seq;
  return spool_.Add(kLossKind, NowUnixNs(), schema::CanonicalBytes(loss.asReader()), true, &seq)
      .WithContext("spooling a loss record");
}

Status SpoolSink::Flush() {
  // Even the reserve full: the count stays pending and goes into a later record.
  if (spool_full_total_ > spool_full_recorded_ &&
      AddLoss(LossKind::kSpoolFull, spool_full_total_ - spool_full_recorded_, spool_full_total_)
          .ok()) {
    spool_full_recorded_ = spool_full_total_;
  }
  Status s = error_;
  error_ = Status::Ok();
  LATCH_RETURN_IF_ERROR(s);
  return spool_.Flush();
}

}  // namespace latch::agent
