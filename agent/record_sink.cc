#include "agent/record_sink.h"

#include "schemas/activity_record.h"
#include "schemas/event_json.h"

namespace latch::agent {

const char* LossKindName(LossKind kind) {
  switch (kind) {
    case LossKind::kRingBufferFull:
      return "ring_buffer_full";
    case LossKind::kSpoolFull:
      return "spool_full";
    case LossKind::kDecodeFailure:
      return "decode_failure";
    case LossKind::kActivityRingBufferFull:
      return "activity_ring_buffer_full";
    case LossKind::kActivityCaptureUnavailable:
      return "activity_capture_unavailable";
  }
  return "unknown";
}

JsonLinesSink::JsonLinesSink(std::ostream& out, const std::string& host_id)
    : out_(out), host_id_(host_id), host_id_json_(nlohmann::json(host_id).dump()) {}

void JsonLinesSink::AddEvent(const latch_decision_event& e) {
  line_.clear();
  record::AppendDecisionJsonLine(e, host_id_json_, &line_);
  out_ << line_;
}

Status RecordSink::EncodeActivity(std::string_view raw, std::string* out) {
  bool redacted = false;
  LATCH_RETURN_IF_ERROR(record::EncodeActivityEvent(raw, out, redactor_, &redacted));
  if (redacted) ++args_redacted_;
  return Status::Ok();
}

bool JsonLinesSink::AddActivity(std::string_view raw) {
  std::string encoded;
  record::ActivitySummary summary;
  nlohmann::json j;
  if (!EncodeActivity(raw, &encoded).ok() ||
      !record::ViewActivityEvent(encoded, &summary, &j).ok()) {
    return false;
  }
  j["type"] = "activity";
  j["host_id"] = host_id_;
  out_ << j.dump() << "\n";
  return true;
}

Status JsonLinesSink::AddLoss(LossKind kind, uint64_t count, uint64_t total,
                              const std::string& activity_kind, const std::string& reason) {
  nlohmann::json j = record::LossToJson(LossKindName(kind), count, total, host_id_);
  if (!activity_kind.empty()) j["activity_kind"] = activity_kind;
  if (!reason.empty()) j["reason"] = reason;
  out_ << j.dump() << "\n";
  return Status::Ok();
}

Status JsonLinesSink::AddGuardEvent(const std::vector<std::string>& missing, bool reattached,
                                    const std::string& error) {
  nlohmann::json j = {{"type", "guard_detached"},
                      {"host_id", host_id_},
                      {"missing", missing},
                      {"reattached", reattached}};
  if (!error.empty()) j["error"] = error;
  out_ << j.dump() << "\n";
  return Status::Ok();
}

Status JsonLinesSink::Flush() {
  out_.flush();
  return out_ ? Status::Ok() : Status::IoError("writing records to the output stream");
}

}  // namespace latch::agent
