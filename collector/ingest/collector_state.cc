// CollectorServer's start-up state: the state snapshot (state_snapshot.h)
// bound to this ledger, the entries after it replayed, and what a snapshot
// holds (DerivedState).

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "collector/grants/grant_keys.h"
#include "collector/ingest/collector_server.h"
#include "collector/ingest/state_snapshot.h"
#include "collector/ledger/entry_range.h"
#include "collector/workflow/duration.h"
#include "lib/logging/logger.h"
#include "lib/storage/append_file.h"
#include "lib/text/utf8.h"
#include "lib/tlog/checkpoint.h"
#include "schemas/canonical.h"
#include "schemas/event.capnp.h"
#include "schemas/record_codec.h"
#include "schemas/wire.capnp.h"
#include "schemas/wire_frame.h"
#include "schemas/workflow.capnp.h"

namespace latch::collector {

Status CollectorServer::RestoreState() {
  const auto started = std::chrono::steady_clock::now();
  uint64_t from = 0;
  StateSnapshot snapshot;
  Status s = ReadStateSnapshot(snapshot_path(), &snapshot);
  if (s.ok()) {
    s = CheckSnapshotBinding(snapshot);
    if (s.ok()) s = ApplyDerivedState(snapshot.state);
    if (s.ok()) {
      from = snapshot.size;
      snapshot_size_ = snapshot.size;
    } else {
      counters_.snapshot_failures++;
      logging::Default().Warn(
          "the state snapshot does not match this ledger; replaying the whole ledger",
          {{"snapshot", snapshot_path()}, {"error", s.ToString()}});
      // Whatever the snapshot put in place goes: the replay starts from nothing.
      channel_->sequences() = SequenceIndex();
      grants_->Reset();
      enrolment_ = EnrolmentBook();
      credentials_ = CredentialBook();
      workflow_->RestoreRequests(workflow::RequestBook());
    }
  } else if (s.code() != Status::Code::kNotFound) {
    counters_.snapshot_failures++;
    logging::Default().Warn("the state snapshot cannot be used; replaying the whole ledger",
                            {{"snapshot", snapshot_path()}, {"error", s.ToString()}});
  }
  uint64_t next = from;
  LATCH_RETURN_IF_ERROR(ReplayLedger(&next));
  channel_->EnrolmentChanged();
  counters_.start_replayed_entries = ledger_->size() - from;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  logging::Default().Info("state restored", {{"ledger_size", ledger_->size()},
                                             {"from_snapshot_at", from},
                                             {"replayed", ledger_->size() - from},
                                             {"seconds", seconds}});
  if (ledger_->size() != snapshot_size_ || from == 0) SaveSnapshot("start");
  return Status::Ok();
}

// Whether `snapshot` was taken of this ledger: its origin, a size the ledger
// has, and the ledger's root at that size.
Status CollectorServer::CheckSnapshotBinding(const StateSnapshot& snapshot) {
  if (snapshot.origin != config_.origin) {
    return Status::Corruption("it is of ledger " + snapshot.origin);
  }
  if (snapshot.size > ledger_->size()) {
    return Status::Corruption("it is at size " + std::to_string(snapshot.size) +
                              ", beyond the ledger's " + std::to_string(ledger_->size()));
  }
  tlog::Hash root{};
  LATCH_RETURN_IF_ERROR(ledger_->RootAt(snapshot.size, &root));
  if (root != snapshot.root) {
    return Status::Corruption("the ledger's root at its size " + std::to_string(snapshot.size) +
                              " is another");
  }
  return Status::Ok();
}

nlohmann::json CollectorServer::DerivedState() const {
  nlohmann::json state = grants_->ToSnapshot();  // grants, past_grants, effective
  state["sequences"] = channel_->sequences().ToSnapshot();
  state["requests"] = workflow_->requests().ToSnapshot();
  state["enrolment"] = enrolment_.ToSnapshot();
  state["api_credentials"] = credentials_.ToSnapshot();
  return state;
}

Status CollectorServer::ApplyDerivedState(const nlohmann::json& state) {
  try {
    channel_->sequences().FromSnapshot(state.at("sequences"));
    LATCH_RETURN_IF_ERROR(grants_->FromSnapshot(state));
    LATCH_RETURN_IF_ERROR(enrolment_.FromSnapshot(state));
    LATCH_RETURN_IF_ERROR(credentials_.FromSnapshot(state));
    workflow::RequestBook requests;
    requests.FromSnapshot(state.at("requests"));
    workflow_->RestoreRequests(std::move(requests));
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("malformed state: ") + e.what());
  }
  return Status::Ok();
}

void CollectorServer::SaveSnapshot(const char* why) {
  if (recorder_->pending() != 0 || acting_) return;  // taken at a later turn
  StateSnapshot snapshot;
  snapshot.origin = config_.origin;
  // A standby's ledger view may be ahead of what it took in.
  snapshot.size = standby_ ? applied_ : ledger_->size();
  snapshot.state = DerivedState();
  Status s = ledger_->RootAt(snapshot.size, &snapshot.root);
  if (s.ok()) s = WriteStateSnapshot(config_.data_dir, kSnapshotName, snapshot);
  // Also after a failure: the next attempt comes after as many entries again
  // (or at the stop), not at every turn of the loop.
  snapshot_size_ = snapshot.size;
  if (!s.ok()) {
    counters_.snapshot_failures++;
    logging::Default().Error("the state snapshot was not written; the next start replays more",
                             {{"why", why}, {"error", s.ToString()}});
    return;
  }
  counters_.snapshots_written++;
  logging::Default().Debug("state snapshot written",
                           {{"why", why}, {"ledger_size", snapshot.size}});
}

// Everything the collector keeps besides the ledger is derived from it: the
// sequence marks of every agent boot, the grant book, ended grants, where
// grants took effect, and the requests. Entries are read a bundle at a time.
Status CollectorServer::ReplayLedger(uint64_t* next) {
  ledger::LedgerRecord record;
  auto take = [&](uint64_t i, std::string_view entry) {
    Status decoded = ledger::DecodeRecord(entry, &record);
    if (!decoded.ok()) return decoded.WithContext("ledger entry " + std::to_string(i));
    if (!record.agent_boot_id.empty()) {
      channel_->sequences().Advance(record.host_id, record.agent_boot_id,
                                    {record.sequence, i, record.receive_time_ns});
      return Status::Ok();
    }
    if (record.kind != ledger::RecordKind::kWorkflow) return Status::Ok();
    const std::string where = "ledger entry " + std::to_string(i);
    return schema::ReadCanonical<schema::WorkflowAction>(
        record.payload, where, [&](schema::WorkflowAction::Reader a) {
          LATCH_RETURN_IF_ERROR(grants_->Replay(a, record.host_id, record.receive_time_ns, where));
          workflow_->Replay(a, record.receive_time_ns);
          enrolment_.Apply(a);
          credentials_.Apply(a);
          return Status::Ok();
        });
  };
  return ledger::ForEachEntry(*ledger_, *next, ledger_->size(),
                              [&](uint64_t i, std::string_view entry) {
                                LATCH_RETURN_IF_ERROR(take(i, entry));
                                *next = i + 1;
                                return Status::Ok();
                              });
}
}  // namespace latch::collector
