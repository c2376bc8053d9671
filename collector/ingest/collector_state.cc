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

#include "collector/ingest/collector_server.h"
#include "collector/ingest/grant_keys.h"
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
      sequences_ = SequenceIndex();
      grants_ = std::make_unique<GrantBook>(grant_key_, retired_grant_keys_);
      workflow_->RestoreRequests(workflow::RequestBook());
      past_grants_.clear();
      effective_.clear();
    }
  } else if (s.code() != Status::Code::kNotFound) {
    counters_.snapshot_failures++;
    logging::Default().Warn("the state snapshot cannot be used; replaying the whole ledger",
                            {{"snapshot", snapshot_path()}, {"error", s.ToString()}});
  }
  LATCH_RETURN_IF_ERROR(ReplayLedger(from));
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
  nlohmann::json past = nlohmann::json::array();
  for (const auto& [id, p] : past_grants_) past.push_back({id, p.grant, p.ended, p.ended_at_ns});
  nlohmann::json effective = nlohmann::json::array();
  for (const auto& [id, hosts] : effective_) {
    nlohmann::json by_host = nlohmann::json::array();
    for (const auto& [host, at] : hosts) {
      by_host.push_back({nlohmann::json::binary({host.begin(), host.end()}), at});
    }
    effective.push_back({id, by_host});
  }
  return {{"sequences", sequences_.ToSnapshot()},
          {"grants", grants_->ToSnapshot()},
          {"past_grants", past},
          {"effective", effective},
          {"requests", workflow_->requests().ToSnapshot()}};
}

Status CollectorServer::ApplyDerivedState(const nlohmann::json& state) {
  try {
    sequences_.FromSnapshot(state.at("sequences"));
    LATCH_RETURN_IF_ERROR(grants_->FromSnapshot(state.at("grants")));
    past_grants_.clear();
    for (const auto& p : state.at("past_grants")) {
      past_grants_[p.at(0).get<uint64_t>()] = {p.at(1), p.at(2).get<std::string>(),
                                               p.at(3).get<int64_t>()};
    }
    effective_.clear();
    for (const auto& e : state.at("effective")) {
      auto& hosts = effective_[e.at(0).get<uint64_t>()];
      for (const auto& h : e.at(1)) {
        const auto& host = h.at(0).get_binary();
        hosts[std::string(host.begin(), host.end())] = h.at(1).get<int64_t>();
      }
    }
    workflow::RequestBook requests;
    requests.FromSnapshot(state.at("requests"));
    workflow_->RestoreRequests(std::move(requests));
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("malformed state: ") + e.what());
  }
  return Status::Ok();
}

void CollectorServer::SaveSnapshot(const char* why) {
  if (pending_commits_.load() != 0) return;  // taken at a later turn
  StateSnapshot snapshot;
  snapshot.origin = config_.origin;
  snapshot.size = ledger_->size();
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
Status CollectorServer::ReplayLedger(uint64_t from) {
  ledger::LedgerRecord record;
  std::vector<std::string> changed;
  return ledger::ForEachEntry(
      *ledger_, from, ledger_->size(), [&](uint64_t i, std::string_view entry) {
        Status decoded = ledger::DecodeRecord(entry, &record);
        if (!decoded.ok()) return decoded.WithContext("ledger entry " + std::to_string(i));
        if (!record.agent_boot_id.empty()) {
          sequences_.Advance(record.host_id, record.agent_boot_id,
                             {record.sequence, i, record.receive_time_ns});
          return Status::Ok();
        }
        if (record.kind != ledger::RecordKind::kWorkflow) return Status::Ok();
        const std::string where = "ledger entry " + std::to_string(i);
        return schema::ReadCanonical<schema::WorkflowAction>(
            record.payload, where, [&](schema::WorkflowAction::Reader a) {
              if (a.isGrantIssued()) {
                uint64_t id = 0;
                return grants_
                    ->ApplyIssued(schema::CanonicalBytes(a.getGrantIssued().getGrant()), &id,
                                  &changed)
                    .WithContext(where);
              }
              if (a.isGrantRevoked()) {
                EndGrant(a.getGrantRevoked().getGrantId(), "revoked", record.receive_time_ns,
                         &changed);
              }
              if (a.isGrantExpired()) {
                EndGrant(a.getGrantExpired().getGrantId(), "expired", record.receive_time_ns,
                         &changed);
              }
              if (a.isGrantSetApplied()) {
                NoteApplied(record.host_id, a.getGrantSetApplied().getGrantIds(),
                            a.getGrantSetApplied().getAppliedAtNs());
              }
              workflow_->Replay(a, record.receive_time_ns);
              return Status::Ok();
            });
      });
}
}  // namespace latch::collector
