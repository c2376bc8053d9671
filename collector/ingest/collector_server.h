// CollectorServer: the collector's channel to its agents. One thread runs
// the loop (loop/dispatcher.h): a CURVE ROUTER socket (agents), the ZAP
// handler that admits only enrolled agent keys, an admin socket (issue and
// revoke grants), the HTTPS API's connections, and an eventfd the ledger's
// committer (and Stop, from a signal handler) signals. The ZeroMQ sockets
// are waited on by Asio through their ZMQ_FD, like the agent's.
//
// Ingest: a batch is decoded and validated, records already in the ledger
// (by host, boot and sequence) are dropped, the rest are appended; the agent
// gets a receipt only once they are durable: the signed checkpoint, the
// indexes, an inclusion proof and a consistency proof from the checkpoint
// the agent holds. Bad input is refused, counted and recorded (refusals are
// folded into at most one ledger record per kind per second); the connection
// and the process carry on.
//
// The services it runs own their state: the Recorder (record/: the
// collector's own records, the ledger's write side), the GrantService
// (grants/: the grant book, issue, revoke, expire), the WorkflowService
// (workflow/: requests and reviews under the policy), the RefusalLog. This
// class opens, replays and runs them, and keeps the agent channel's state:
// the loop and start (collector_server.cc), start-up state and snapshots
// (collector_state.cc), the agent channel (agent_channel.cc), actions
// (collector_actions.cc), the admin socket (admin_socket.cc), the HTTPS
// API's routes (collector_api.cc; events_api.cc for the events query, live
// tail and proofs).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "collector/api/api_server.h"
#include "collector/grants/grant_service.h"
#include "collector/index/event_query.h"
#include "collector/index/index_follower.h"
#include "collector/ingest/collector_config.h"
#include "collector/ingest/sequence_index.h"
#include "collector/ingest/state_snapshot.h"
#include "collector/ledger/ledger.h"
#include "collector/loop/dispatcher.h"
#include "collector/notify/webhook_sender.h"
#include "collector/record/recorder.h"
#include "collector/record/refusal_log.h"
#include "collector/workflow/workflow_service.h"
#include "lib/status/status.h"
#include "lib/sync/mutex.h"
#include "lib/tlog/signed_note.h"
#include "schemas/curve_key.h"
#include "schemas/wire.capnp.h"

namespace latch::collector {

struct CollectorCounters {
  std::atomic<uint64_t> batches{0};
  std::atomic<uint64_t> records_appended{0};
  std::atomic<uint64_t> records_duplicate{0};
  std::atomic<uint64_t> records_declared_lost{0};  // agents' records lost in damaged spools
  std::atomic<uint64_t> records_out_of_order{0};   // past a gap: left for the resend
  std::atomic<uint64_t> receipts{0};
  std::atomic<uint64_t> refused_keys{0};
  std::atomic<uint64_t> malformed_messages{0};
  std::atomic<uint64_t> oversized_messages{0};
  std::atomic<uint64_t> grant_sets_sent{0};
  std::atomic<uint64_t> applied_reports{0};
  std::atomic<uint64_t> alarms{0};
  std::atomic<uint64_t> batches_unwritable{0};  // dropped unacknowledged: the ledger refused writes
  std::atomic<uint64_t> replies_dropped{0};     // an agent's queue was full (it does not read)
  std::atomic<uint64_t> snapshots_written{0};   // state snapshots (state_snapshot.h)
  std::atomic<uint64_t> snapshot_failures{0};   // not written, or found not to match at start
  std::atomic<uint64_t> start_replayed_entries{0};  // entries replayed at start (after a snapshot)
};

class CollectorServer : private workflow::WorkflowSink {
 public:
  // Creates keys and the ledger in the data directory on first start.
  static Status Open(const CollectorConfig& config, std::unique_ptr<CollectorServer>* out);
  ~CollectorServer();

  // Binds and serves until Stop(); returns why it stopped.
  Status Run();
  // Safe from any thread or a signal handler.
  void Stop();
  // The wall clock, Unix ns: the time records and requests carry.
  static int64_t NowNs() { return WallClockNs(); }
  // Reload the policy file at the next turn of the loop (SIGHUP); safe from
  // a signal handler. A bad policy is logged and the running one stays.
  void RequestPolicyReload();

  const CollectorCounters& counters() const { return counters_; }
  const std::string& curve_public_key() const { return curve_.public_z85; }
  std::string grant_vkey() const { return grants_->key().verifier().ToString(); }
  std::string ledger_vkey() const { return ledger_->verifier().ToString(); }
  std::string admin_endpoint() const { return "ipc://" + config_.data_dir + "/admin.sock"; }
  // The HTTPS API's port once Run() has started it (0: no API).
  uint16_t api_port() const { return api_ ? api_->port() : 0; }

  // Everything derived from the ledger (what a state snapshot holds): a
  // start from a snapshot must reach the same as a replay from nothing.
  nlohmann::json DerivedState() const;
  // Where state snapshots are kept.
  std::string snapshot_path() const { return config_.data_dir + "/" + kSnapshotName; }
  static constexpr const char* kSnapshotName = "state.snapshot";

 private:
  // A durable batch waiting for its receipt.
  struct Completion {
    Status status;
    std::string host, boot;
    uint64_t first_sequence = 0, last_sequence = 0, count = 0, first_index = 0;
    int64_t receive_time_ns = 0;
    uint64_t checkpoint_from = 0;
  };
  bool DeclaresLostFrom(schema::SpooledRecord::Reader r, uint64_t next) const;
  CollectorServer() = default;
  // Start-up: the state snapshot, if one matches this ledger, then the
  // entries after it (all of them without one).
  Status RestoreState();
  Status CheckSnapshotBinding(const StateSnapshot& snapshot);
  Status ApplyDerivedState(const nlohmann::json& state);
  Status ReplayLedger(uint64_t from);
  // Writes a snapshot at the ledger's size when every commit's effect has
  // been taken in (none pending); a failure is logged and counted.
  void SaveSnapshot(const char* why);
  uint64_t snapshot_size_ = 0;  // the ledger size the last snapshot was taken at

  // Actions (collector_actions.cc): whatever changes the requests or the
  // grants (a request, a review with its grant and decision, a revoke, an
  // expiry, a policy load). `action` runs on the loop with its records
  // gathered; they are appended as one batch with one sync off the loop,
  // and `done` gets the outcome once they are durable, when their effects
  // (grant sets pushed, webhooks) follow. If the action fails or its batch
  // is not written, the request and grant books are as they were before it.
  // One action is in flight at a time; the next, and reads of what it
  // changes (WhenSettled), wait for it, so nobody sees a change that is not
  // on record and each action starts from recorded state.
  void Act(std::function<Status()> action, std::function<void(const Status&)> done);
  void WhenSettled(std::function<void()> fn);
  void Settle(const Status& s, const std::function<void(const Status&)>& done);
  bool acting_ = false;
  std::deque<std::function<void()>> waiting_;  // calls and actions behind the one in flight
  std::vector<std::string> action_webhooks_;   // the action's records to announce when durable
  // Expiry of requests and grants, as actions, when any is due.
  void ExpireDue();

  // workflow::WorkflowSink: records go into the action under way.
  Status Record(const std::string& action, const std::string& actor, int64_t at_ns) override;
  Status IssueGrant(const workflow::ApprovedGrant& grant, const std::string& actor,
                    uint64_t* grant_id) override;
  // The admin socket (admin_socket.cc): answers one request at a time; an
  // action's answer waits for its batch (admin_busy_: no recv meanwhile).
  void HandleAdmin();
  void AdminRequest(const nlohmann::json& j, std::function<void(nlohmann::json)> reply);
  void HandleWorkflowAdmin(const std::string& op, const nlohmann::json& j,
                           std::function<void(nlohmann::json)> reply);
  bool admin_busy_ = false;
  // The HTTPS API (collector_api.cc): its connections are served on the
  // loop; routes that read the ledger or the index run on a worker.
  Status StartApi();
  void RouteApi(api::ApiRequest req, api::ApiServer::Respond respond);
  void CallOnLoop(const api::ApiRequest& req, const api::ApiServer::Respond& respond);
  void RunQueuedCalls();
  // Runs blocking reads (ledger, index) off the loop.
  void PostToWorker(std::function<void()> work);
  // The routes on the loop: the answer, or none when a change answers
  // through `respond` once its action is on record.
  std::optional<api::ApiResponse> HandleApi(const api::ApiRequest& req,
                                            const api::ApiServer::Respond& respond);
  // GET /v1/events: answered on the API thread (ledger reads and the index's
  // own read connection), so queries never hold up the loop.
  api::ApiResponse HandleEventsQuery(const api::ApiRequest& req);
  // GET /v1/events/stream: the live tail as server-sent events, each message
  // a page of new entries in ledger order with its proofs (same JSON).
  api::ApiResponse HandleEventsStream(const api::ApiRequest& req);
  // GET /v1/proof/inclusion?index=I&size=N: entry I and its inclusion proof
  // in the tree of N entries (default: the current checkpoint's).
  api::ApiResponse HandleInclusionProof(const api::ApiRequest& req);
  // Parses and authorizes an events query; a response if it is refused.
  std::optional<api::ApiResponse> PrepareEventQuery(const api::ApiRequest& req,
                                                    index::EventQuery* query);
  // Under the same rule, whether `identity` may see ledger entry `index`; a
  // response if not (or if the index has not reached it yet).
  std::optional<api::ApiResponse> CheckEntryVisible(const std::string& identity, uint64_t index);
  // The answer to a failed read of the events index; a damaged index is
  // reported to the follower, which rebuilds it.
  api::ApiResponse IndexReadFailed(const Status& s);
  // One turn of the loop: what the sockets and the eventfd hold, bounded,
  // then the periodic duties (Maintain). Run after any of them signals, and
  // at least every 200 ms.
  void Turn();
  // A turn as soon as the loop gets to it (at most one queued).
  void PostTurn();
  void Maintain();
  void WatchSockets();
  void Watch(size_t which);
  void Tick();
  void HandleZap();
  void HandleAgentMessage();
  void OnEnvelope(const std::string& route, const std::string& host, schema::Envelope::Reader env);
  void HandleCompletions();
  // Counts a refusal (RefusalLog); the agent at `route` (if any) is told
  // `reply`; `peer` defaults to the address of the agent message at hand.
  void Refuse(const std::string& what, const std::string& detail, const std::string& route,
              const std::string& reply, const std::string& peer = "");
  void OnBatch(const std::string& route, const std::string& host, schema::EventBatch::Reader batch);
  void OnApplied(const std::string& host, schema::Applied::Reader applied);
  void OnAlarm(const std::string& host, schema::Alarm::Reader alarm);
  // `appended`: the records this submission added (none for a batch of
  // retransmissions), reported in the receipt with their indexes.
  void SendReceipt(const std::string& host, const std::string& boot, uint64_t checkpoint_from,
                   const Completion* appended = nullptr);
  // Sends `host` its grant set, unless an action is in flight (its set
  // could hold a grant not yet on record): then once the action settles.
  void PushGrantSet(const std::string& host);
  std::set<std::string> push_when_settled_;
  void Send(const std::string& route, const std::string& payload);

  CollectorConfig config_;
  schema::CurveKeyPair curve_;
  std::unique_ptr<ledger::Ledger> ledger_;
  // The loop, and what waits on it (sockets' descriptors, the tick, the
  // workers for blocking reads); declared before what registers with it.
  std::unique_ptr<Dispatcher> loop_;
  struct Waiters;
  std::unique_ptr<Waiters> waiters_;
  // The services; the recorder's committer posts to the loop, so it goes first.
  std::unique_ptr<Recorder> recorder_;
  std::unique_ptr<GrantService> grants_;
  std::unique_ptr<workflow::WorkflowService> workflow_;
  RefusalLog refusals_;
  std::atomic<bool> reload_policy_{false};
  Status loop_status_;  // why the loop ended, if it failed
  bool turn_posted_ = false;
  std::unique_ptr<api::ApiServer> api_;
  // Webhooks for requests, reviews and decisions, sent once they are recorded.
  std::unique_ptr<notify::WebhookSender> webhooks_;
  void NotifyWebhooks(const std::string& action);
  std::string index_path_;
  std::unique_ptr<index::IndexFollower> index_;
  uint64_t index_notified_size_ = 0;
  // Who may read every event, from the policy (the API threads read it).
  void RefreshEventReaders();
  Mutex event_readers_mu_;
  bool event_policy_loaded_ LATCH_GUARDED_BY(event_readers_mu_) = false;
  std::set<std::string> event_readers_ LATCH_GUARDED_BY(event_readers_mu_);
  Mutex calls_mu_;
  // From other threads (refusals from stream producers) or the loop, run on
  // the loop by RunQueuedCalls.
  std::vector<std::function<void()>> calls_ LATCH_GUARDED_BY(calls_mu_);
  SequenceIndex sequences_;
  // (host, boot) -> highest sequence submitted and not yet durable.
  std::map<std::pair<std::string, std::string>, uint64_t> in_flight_;
  std::map<std::string, std::string> routes_;  // host -> routing id of its live connection
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
  void RecordSilentAgents();
  // (host, boot)s whose appends failed in this outage: asked to resend once
  // writes resume (AskForFailedAppends). While the ledger refuses writes,
  // agent batches are dropped unacknowledged (agents keep them and resend)
  // and API and admin writes are refused with the reason (issue 14).
  std::set<std::pair<std::string, std::string>> failed_appends_;
  void AskForFailedAppends();
  // host -> the checkpoint size the agent holds, as far as we know: what its
  // Hello said, then the size of each receipt sent to it (it adopts receipts
  // in order). Consistency proofs start there.
  std::map<std::string, uint64_t> proof_base_;
  // The session number of each host's latest Hello: receipts carry it, so the
  // agent can tell a receipt built on that Hello's size from one of an
  // earlier session still on its way.
  std::map<std::string, uint64_t> session_;

  zmq::context_t context_;
  std::unique_ptr<zmq::socket_t> router_, zap_, admin_;
  int wake_fd_ = -1;  // eventfd: completions queued, or Stop()
  std::atomic<bool> stopping_{false};
  Mutex completions_mu_;  // the committer thread queues, the loop takes
  std::vector<std::unique_ptr<Completion>> completions_ LATCH_GUARDED_BY(completions_mu_);
  // The address of the agent message being handled (refusals name it).
  std::string current_peer_;
  CollectorCounters counters_;
};

}  // namespace latch::collector
