// AgentChannel: the collector's channel to its agents. A CURVE ROUTER
// socket, and the ZAP handler that admits only enrolled agent keys (each
// key's host id becomes its messages' User-Id). A batch is decoded and
// validated, records already in the ledger (by host, boot and sequence) are
// dropped, the rest are appended, and the agent gets a receipt only once
// they are durable: the signed checkpoint, the indexes, an inclusion proof
// and a consistency proof from the checkpoint the agent holds (promises 1
// and 2). Sessions (Hello, Welcome saying what is held), grant sets pushed,
// Applied reports, alarms, agents gone silent. Bad input is refused,
// counted and recorded (RefusalLog); the connection and the process carry
// on.
//
// Owned by the loop thread: every method runs there. The ledger's committer
// hands a batch's outcome back with Dispatcher::Post.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "collector/enrolment/enrolment_book.h"
#include "collector/grants/grant_service.h"
#include "collector/ingest/collector_config.h"
#include "collector/ingest/collector_counters.h"
#include "collector/ingest/sequence_index.h"
#include "collector/ledger/ledger.h"
#include "collector/loop/dispatcher.h"
#include "collector/record/recorder.h"
#include "collector/record/refusal_log.h"
#include "lib/status/status.h"
#include "schemas/curve_key.h"
#include "schemas/wire.capnp.h"

namespace latch::collector {

class AgentChannel {
 public:
  // A join token that the book accepts, to be recorded (agentEnrolled)
  // before the agent at `route` is told (SendEnrolled).
  struct EnrolAsk {
    std::string route, host, curve_key, secret_hash, address;
  };
  using EnrolHandler = std::function<void(const EnrolAsk&)>;

  AgentChannel(const CollectorConfig& config, const EnrolmentBook& enrolment,
               ledger::Ledger& ledger, Recorder& recorder, GrantService& grants,
               RefusalLog& refusals, Dispatcher& loop, CollectorCounters& counters);
  void set_enrol_handler(EnrolHandler handler) { on_enrol_ = std::move(handler); }

  // Binds the ZAP handler and the ROUTER socket (config's endpoints).
  Status Bind(zmq::context_t& context, const schema::CurveKeyPair& curve);
  // Their descriptors, for the loop to wait on (ZMQ_FD: edge-triggered).
  int router_fd() const;
  int zap_fd() const;

  // What the sockets hold, bounded (256 agent messages); true when more is
  // waiting for the next turn.
  bool Turn();
  // Each tick: agents gone silent go on the record.
  void RecordSilentAgents();
  // Once the ledger takes writes again: agents whose appends failed are
  // asked to resend.
  void AskForFailedAppends();
  // Sends `host` its grant set if it is connected; while an action is in
  // flight (its set could hold a grant not yet on record), once it settles.
  void PushGrantSet(const std::string& host);
  // An action settled: the sets asked for meanwhile go out.
  void PushDeferred();
  // The witnessed checkpoint (issue 18), with a consistency proof from the
  // size each agent holds: to every connected agent when one is published
  // (SendWitnessed), and to an agent after its Hello (from `latest`, which
  // gives the current one, "" while there is none).
  void SendWitnessed(const std::string& note);
  void set_witnessed_source(std::function<std::string()> latest) { witnessed_ = std::move(latest); }
  // The config's enrolled agents, or the enrolment book, changed: a host no
  // longer enrolled has its messages refused from now on (its connection
  // was admitted before).
  void EnrolmentChanged();
  // The answer to an Enrol once its record is durable: Enrolled, or why not.
  void SendEnrolled(const EnrolAsk& ask);
  void RefuseEnrolment(const EnrolAsk& ask, const std::string& why);

  // Connected hosts, and when each host was last heard from (Unix ns).
  std::vector<std::string> connected() const;
  const std::map<std::string, int64_t>& last_heard_ns() const { return last_heard_ns_; }
  // Every agent boot's highest sequence in the ledger: rebuilt at start.
  SequenceIndex& sequences() { return sequences_; }
  const SequenceIndex& sequences() const { return sequences_; }

 private:
  // A durable batch waiting for its receipt.
  struct Completion {
    Status status;
    std::string host, boot;
    uint64_t first_sequence = 0, last_sequence = 0, count = 0, first_index = 0;
    int64_t receive_time_ns = 0;
    uint64_t checkpoint_from = 0;
  };
  void HandleZap();
  void HandleAgentMessage();
  void OnEnvelope(const std::string& route, const std::string& host, schema::Envelope::Reader env);
  // A message from a key admitted only to enrol (ZAP's "enrol:<key>").
  void OnEnrolling(const std::string& route, const std::string& curve_key,
                   schema::Envelope::Reader env);
  void OnBatch(const std::string& route, const std::string& host, schema::EventBatch::Reader batch);
  bool DeclaresLostFrom(schema::SpooledRecord::Reader r, uint64_t next) const;
  void OnCompletion(const Completion& c);
  void OnApplied(const std::string& host, schema::Applied::Reader applied);
  void OnAlarm(const std::string& host, schema::Alarm::Reader alarm);
  // `appended`: the records this submission added (none for a batch of
  // retransmissions), reported in the receipt with their indexes.
  void SendReceipt(const std::string& host, const std::string& boot, uint64_t checkpoint_from,
                   const Completion* appended = nullptr);
  // Counts a refusal; the agent at `route` (if any) is told `reply`; `peer`
  // defaults to the address of the message at hand.
  void Refuse(const std::string& what, const std::string& detail, const std::string& route,
              const std::string& reply, const std::string& peer = "");
  void Send(const std::string& route, const std::string& payload);
  void SendWitnessedTo(const std::string& host, const std::string& note);
  std::function<std::string()> witnessed_;

  const CollectorConfig& config_;
  const EnrolmentBook& enrolment_;
  EnrolHandler on_enrol_;
  std::set<std::string> enrolling_;  // secret hashes whose enrolment is being recorded
  ledger::Ledger& ledger_;
  Recorder& recorder_;
  GrantService& grants_;
  RefusalLog& refusals_;
  Dispatcher& loop_;
  CollectorCounters& counters_;
  std::unique_ptr<zmq::socket_t> router_, zap_;

  SequenceIndex sequences_;
  // (host, boot) -> highest sequence submitted and not yet durable.
  std::map<std::pair<std::string, std::string>, uint64_t> in_flight_;
  std::map<std::string, std::string> routes_;  // host -> routing id of its live connection
  std::set<std::string> push_deferred_;        // hosts whose sets wait for an action
  std::set<std::string> enrolled_hosts_;  // host ids config_.agents or the enrolment book names
  // Silence is counted from a host's last message, or from the end of this
  // collector's own last pause if that is later (RecordSilentAgents).
  std::chrono::steady_clock::time_point last_turn_;
  int64_t silence_counts_from_ns_ = 0;
  std::map<std::string, int64_t> last_heard_ns_;  // host -> its last message (unix ns), in /metrics
  std::set<std::string> silent_;                  // hosts recorded as silent, until heard again
  // What the ledger last heard of each host this run, so that a session reset
  // (same agent boot, same applied set) adds no record: a link resetting in a
  // loop once filled the ledger with agentConnected and grantSetApplied.
  std::map<std::string, std::string> connected_boot_;  // host -> boot of its last agentConnected
  std::map<std::string, std::string> applied_set_;  // host -> its last grantSetApplied, canonical
  // (host, boot)s whose appends failed in this outage: asked to resend once
  // writes resume. While the ledger refuses writes, batches are dropped
  // unacknowledged (agents keep them and resend; issue 14).
  std::set<std::pair<std::string, std::string>> failed_appends_;
  // host -> the checkpoint size the agent holds, as far as we know: what its
  // Hello said, then the size of each receipt sent to it (it adopts receipts
  // in order). Consistency proofs start there.
  std::map<std::string, uint64_t> proof_base_;
  // The session number of each host's latest Hello: receipts carry it, so the
  // agent can tell a receipt built on that Hello's size from one of an
  // earlier session still on its way.
  std::map<std::string, uint64_t> session_;
  // The address of the agent message being handled (refusals name it).
  std::string current_peer_;
};

}  // namespace latch::collector
