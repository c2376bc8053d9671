#include "agent/record_sink.h"

#include "agent/event_json.h"

namespace latch::agent {

const char* LossKindName(LossKind kind) {
  switch (kind) {
    case LossKind::kRingBufferFull:
      return "ring_buffer_full";
    case LossKind::kSpoolFull:
      return "spool_full";
    case LossKind::kDecodeFailure:
      return "decode_failure";
  }
  return "unknown";
}

JsonLinesSink::JsonLinesSink(std::ostream& out, const std::string& host_id)
    : out_(out), host_id_(host_id), host_id_json_(nlohmann::json(host_id).dump()) {}

void JsonLinesSink::AddEvent(const latch_decision_event& e) {
  line_.clear();
  AppendDecisionJsonLine(e, host_id_json_, &line_);
  out_ << line_;
}

Status JsonLinesSink::AddLoss(LossKind kind, uint64_t count, uint64_t total) {
  out_ << LossToJson(LossKindName(kind), count, total, host_id_).dump() << "\n";
  return Status::Ok();
}

Status JsonLinesSink::Flush() {
  out_.flush();
  return out_ ? Status::Ok() : Status::IoError("writing records to the output stream");
}

}  // namespace latch::agent
