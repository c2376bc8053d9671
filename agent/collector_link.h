// CollectorLink: the agent's side of the channel to the collector, on the
// agent's Asio loop (the ZeroMQ socket's notification fd is waited on by
// Asio). It ships spooled records in batches, a few in flight at a time, and
// forgets them only on a receipt it has verified: the checkpoint's signature
// and its consistency with the checkpoint the agent holds (CheckpointWitness),
// and the inclusion of the batch's last record, rebuilt from the agent's own
// copy. A receipt that fails raises an alarm (log, counter, and an Alarm
// message to every collector endpoint) and forgets nothing.
//
// Sessions: Hello on every (re)connection, numbered; a batch without a
// receipt within the receipt timeout, or a silent collector, starts a new
// session that resends what the collector has not said it holds (the
// collector drops what it already has, and answers a Hello with a receipt for
// what it holds). The receipt timeout is learnt from the link's round trips
// (RoundTripEstimator), receipt_timeout being its floor. A receipt of an
// earlier session (on its way when the new Hello left) is not used for the
// checkpoint, since the collector proves the next from the Hello's size, but
// what it says the collector holds still spares a resend. A collector silent
// for failover_after is left for the next endpoint.
//
// Witnesses (issue 18): with witness keys configured, the collector's
// witnessed checkpoints are checked (WitnessedCoverage) and every
// acknowledged record must be covered by one within the bound; otherwise,
// or on one inconsistent with the held checkpoint, an alarm.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "lib/logging/logger.h"
// Boost 1.74's Asio needs <utility> first (see agent_daemon.h).
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on

#include "agent/checkpoint_witness.h"
#include "agent/grant_set_applier.h"
#include "agent/link_transport.h"
#include "agent/round_trip.h"
#include "agent/spool.h"
#include "agent/witnessed_coverage.h"
#include "schemas/curve_key.h"
#include "schemas/wire.capnp.h"

namespace latch::agent {

struct CollectorLinkOptions {
  std::vector<std::string> endpoints;
  std::string server_public_key;  // Z85
  schema::CurveKeyPair key;       // this agent's
  std::string host_id;
  size_t batch_records = 4096;
  size_t window_batches = 4;
  std::chrono::milliseconds tick{500};
  std::chrono::milliseconds receipt_timeout{3000};       // the floor of the learnt timeout
  std::chrono::milliseconds receipt_timeout_max{60000};  // its ceiling
  std::chrono::milliseconds failover_after{6000};
  // Sessions in a row ended by a missing receipt before the link raises a
  // "stalled" alarm.
  int stalled_after_sessions = 5;
  // Witnesses this agent demands (issue 18): records acknowledged must be
  // covered by a checkpoint a quorum of them cosigned within the bound.
  WitnessingOptions witnessing;
};

struct CollectorLinkCounters {
  uint64_t batches_sent = 0;
  uint64_t records_acknowledged = 0;
  uint64_t receipts = 0;
  uint64_t receipts_rejected = 0;
  uint64_t receipts_stale = 0;  // of an earlier session: not used for the checkpoint
  uint64_t records_sent = 0;    // in batches, resends included
  uint64_t sessions = 0;
  uint64_t failovers = 0;
  uint64_t grant_sets = 0;
  uint64_t alarms = 0;
  uint64_t welcomes_missed = 0;     // sessions that sent without the Hello's answer
  uint64_t refused = 0;             // handshakes the collector refused (key not enrolled)
  uint64_t witnessed_accepted = 0;  // witnessed checkpoints that met this agent's quorum
  uint64_t witnessed_ignored = 0;   // too few of its witnesses, or a proof from another size
};

class CollectorLink {
 public:
  using GrantSetHandler = std::function<void(schema::SignedGrantSet::Reader)>;
  // Reaches the collectors over ZeroMQ (options' keys).
  CollectorLink(boost::asio::io_context& io, CollectorLinkOptions options, Spool& spool,
                CheckpointWitness& witness, std::function<uint64_t()> grant_version,
                GrantSetHandler on_grant_set, logging::Logger& log);
  // Over `transport` (a test's).
  CollectorLink(boost::asio::io_context& io, CollectorLinkOptions options, Spool& spool,
                CheckpointWitness& witness, std::function<uint64_t()> grant_version,
                GrantSetHandler on_grant_set, logging::Logger& log,
                std::unique_ptr<LinkTransport> transport);
  ~CollectorLink();

  Status Start();
  // Sends what the window allows; call when the spool has new records.
  void Pump();
  void SendApplied(const AppliedReport& report);
  // Tells the collector something its ledger must hold (the caller logs it):
  // e.g. "resource_mismatch", the local resource list against the signed one.
  void SendAlarm(const std::string& kind, const std::string& detail);
  const CollectorLinkCounters& counters() const { return counters_; }
  const std::string& endpoint() const { return options_.endpoints[endpoint_index_]; }
  // The receipt timeout now in force (learnt from the link).
  std::chrono::milliseconds receipt_timeout() const {
    return std::chrono::duration_cast<std::chrono::milliseconds>(round_trip_.timeout());
  }

 private:
  // The collector does not admit this agent's key (refused handshake, or
  // "not enrolled"): counted, and logged once a minute with what to do.
  void NoteNotEnrolled(const std::string& why);
  struct InFlight {
    SpoolBatch batch;
    std::chrono::steady_clock::time_point sent;
  };
  Status Connect();
  void NewSession(const char* why);
  // Ends the wait for a Welcome: the spool is read again from after what the
  // collector holds, and the window filled.
  void StartSending();
  void OnMessage(std::string_view frame);
  void OnEnvelope(schema::Envelope::Reader env);
  void OnReceipt(schema::Receipt::Reader r);
  void OnWitnessed(schema::Witnessed::Reader w);
  void NoteCollectorHolds(const std::string& boot, uint64_t through);
  void RaiseAlarm(const std::string& kind, const std::string& detail, const std::string& shown);
  bool Send(capnp::MessageBuilder& m);
  void Tick();
  const SpooledRecord* FindInFlight(const std::string& boot, uint64_t sequence) const;

  boost::asio::io_context& io_;
  CollectorLinkOptions options_;
  Spool& spool_;
  CheckpointWitness& witness_;
  std::function<uint64_t()> grant_version_;
  GrantSetHandler on_grant_set_;
  logging::Logger& log_;

  std::unique_ptr<LinkTransport> transport_;
  size_t endpoint_index_ = 0;
  std::deque<InFlight> in_flight_;
  boost::asio::steady_timer timer_;
  std::chrono::steady_clock::time_point last_heard_;
  std::chrono::steady_clock::time_point session_started_;
  RoundTripEstimator round_trip_;
  uint64_t session_ = 0;  // the number of the latest Hello
  // boot -> the highest sequence this endpoint said it holds, in any receipt
  // (proven or not) or ResendFrom: where a resend starts.
  std::map<std::string, uint64_t> collector_holds_;
  int unprovable_receipts_ = 0;      // in a row: proofs from a size not held
  int fruitless_sessions_ = 0;       // in a row: ended without a usable receipt
  bool heard_this_session_ = false;  // any message from the collector since NewSession
  // A new session sends nothing until the collector's Welcome says what it
  // holds (or a receipt timeout passes without one: an older collector).
  bool awaiting_welcome_ = false;
  std::map<std::string, std::chrono::steady_clock::time_point> last_alarm_;
  std::chrono::steady_clock::time_point last_refusal_logged_{};
  CollectorLinkCounters counters_;
  WitnessedCoverage coverage_;
  std::chrono::steady_clock::time_point overdue_raised_{};
};

}  // namespace latch::agent
