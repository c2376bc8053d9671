// RecordSink: where the agent's records go. The run loop hands each decision
// event and loss to a sink, then calls Flush(), and only after Flush()
// returns OK releases the events in the kernel's ring buffer. Two sinks:
// JSON lines on a stream (no collector configured) and the spool that the
// collector link ships (spool_sink.h).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "agent/identity_namer.h"
#include "guard_abi.h"
#include "lib/status/status.h"
#include "schemas/activity_record.h"

namespace latch::agent {

enum class LossKind {
  kRingBufferFull,
  kSpoolFull,
  kDecodeFailure,
  kActivityRingBufferFull,
  kActivityCaptureUnavailable,  // capture could not start: all activity is lost from here on
};
const char* LossKindName(LossKind kind);

class RecordSink {
 public:
  virtual ~RecordSink() = default;
  virtual void AddEvent(const latch_decision_event& e) = 0;
  // An activity record as the kernel wrote it (bpf/activity_abi.h); false if
  // it is malformed (the caller counts it as a decode failure).
  virtual bool AddActivity(std::string_view raw) = 0;
  // `count` losses since the previous loss record of this kind; `total` all.
  // `activity_kind` names the activity for kActivityRingBufferFull; `reason`
  // says why for kActivityCaptureUnavailable.
  // Not OK: the record was not taken (the caller keeps the losses pending).
  virtual Status AddLoss(LossKind kind, uint64_t count, uint64_t total,
                         const std::string& activity_kind = "", const std::string& reason = "") = 0;
  // The guard was found detached or replaced (`missing` says what), and
  // whether it was put back. Not OK: not taken (the caller tries again).
  virtual Status AddGuardEvent(const std::vector<std::string>& missing, bool reattached,
                               const std::string& error) = 0;
  // Makes everything added so far survive the agent's death (or at least
  // leave the process): the ring buffer is released after this.
  virtual Status Flush() = 0;

  // Exec records' arguments pass through `redactor` (not owned; null: none)
  // before they are written anywhere.
  void set_redactor(const record::ArgsRedactor* redactor) { redactor_ = redactor; }
  // Decision events name who holds their uid or cgroup through `namer` (not
  // owned; null: nobody is named).
  void set_namer(const IdentityNamer* namer) { namer_ = namer; }

  // Activity records whose arguments had secrets taken out.
  uint64_t args_redacted() const { return args_redacted_; }

 protected:
  // Who holds the event's uid or cgroup ("": nobody known).
  std::string_view IdentityOf(const latch_decision_event& e) const {
    return namer_ != nullptr ? namer_->NameOf(e.uid, e.cgroup_id) : std::string_view();
  }
  // Encodes an activity record, redacted and counted.
  Status EncodeActivity(std::string_view raw, std::string* out);

 private:
  const IdentityNamer* namer_ = nullptr;
  const record::ArgsRedactor* redactor_ = nullptr;
  uint64_t args_redacted_ = 0;
};

// One JSON object per line (event_json.h).
class JsonLinesSink : public RecordSink {
 public:
  JsonLinesSink(std::ostream& out, const std::string& host_id);
  void AddEvent(const latch_decision_event& e) override;
  bool AddActivity(std::string_view raw) override;
  Status AddLoss(LossKind kind, uint64_t count, uint64_t total,
                 const std::string& activity_kind = "", const std::string& reason = "") override;
  Status AddGuardEvent(const std::vector<std::string>& missing, bool reattached,
                       const std::string& error) override;
  Status Flush() override;

 private:
  std::ostream& out_;
  std::string host_id_;
  std::string host_id_json_;  // encoded once
  std::string line_;          // reused for every record
};

}  // namespace latch::agent
