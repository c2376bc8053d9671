// CollectorServer: the collector. It opens the data directory (keys, the
// ledger), rebuilds its services' state from the ledger (a state snapshot,
// then the entries after it), and runs them on one loop
// (loop/dispatcher.h): the agent channel (AgentChannel: CURVE ROUTER and
// ZAP sockets), the admin socket, the HTTPS API's connections, and an
// eventfd that Stop and policy reloads (from signal handlers) signal. The
// ZeroMQ sockets are waited on by Asio through their ZMQ_FD, like the
// agent's.
//
// The services own their state: the Recorder (record/: the collector's own
// records, the ledger's write side), the GrantService (grants/: the grant
// book; issue, revoke, expire), the WorkflowService (workflow/: requests
// and reviews under the policy), the AgentChannel (ingest, receipts,
// sessions), the RefusalLog. This class holds what ties them together:
// actions (collector_actions.cc: one in flight, answered once on record),
// the loop and start (collector_server.cc), start-up state and snapshots
// (collector_state.cc), the admin socket (admin_socket.cc), the HTTPS API's
// routes (collector_api.cc; events_api.cc for the events query, live tail
// and proofs).
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
#include "collector/api/route_table.h"
#include "collector/enrolment/credential_book.h"
#include "collector/enrolment/enrolment_book.h"
#include "collector/grants/grant_service.h"
#include "collector/index/event_query.h"
#include "collector/index/index_follower.h"
#include "collector/ingest/agent_channel.h"
#include "collector/ingest/collector_config.h"
#include "collector/ingest/collector_counters.h"
#include "collector/ingest/state_snapshot.h"
#include "collector/ledger/ledger.h"
#include "collector/ledger/shared_ledger.h"
#include "collector/loop/dispatcher.h"
#include "collector/notify/webhook_sender.h"
#include "collector/record/recorder.h"
#include "collector/record/refusal_log.h"
#include "collector/witnessing/witnessing.h"
#include "collector/workflow/workflow_service.h"
#include "lib/status/status.h"
#include "lib/sync/mutex.h"
#include "lib/tlog/signed_note.h"
#include "schemas/curve_key.h"
#include "schemas/wire.capnp.h"

namespace latch::collector {

class CollectorServer : private workflow::WorkflowSink {
 public:
  // Creates keys and the ledger in the data directory on first start. With
  // the ledger in PostgreSQL, this collector is the sequencer if it can take
  // the lock, else a standby (standby.cc) until it can.
  static Status Open(const CollectorConfig& config, std::unique_ptr<CollectorServer>* out);
  ~CollectorServer();

  // Binds and serves until Stop(); returns why it stopped.
  Status Run();
  // Safe from any thread or a signal handler.
  void Stop();
  // The wall clock, Unix ns: the time records and requests carry.
  static int64_t NowNs() { return WallClockNs(); }
  // SIGHUP: at the next turn of the loop, reload the policy file, and read
  // the configuration file again for its enrolled agents and API tokens and
  // client certificates (each change on record before it takes effect);
  // safe from a signal handler. A bad file is logged and what runs stays.
  void RequestPolicyReload();

  const CollectorCounters& counters() const { return counters_; }
  // With a shared ledger: whether this collector is (still) a standby.
  bool is_standby() const { return standby_.load(); }
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
  CollectorServer() = default;
  // Start-up: the state snapshot, if one matches this ledger, then the
  // entries after it (all of them without one).
  Status RestoreState();
  Status CheckSnapshotBinding(const StateSnapshot& snapshot);
  Status ApplyDerivedState(const nlohmann::json& state);
  // Replays entries from *next to the ledger's size; *next moves past each
  // one taken in, also when a later one fails.
  Status ReplayLedger(uint64_t* next);
  // A shared ledger (standby.cc). At open, the sequencer if the lock is
  // free (the entries since RestoreState replayed), else a standby. A
  // standby runs the loop and the API's reads, and at every
  // sequencer_wait_ms tries for the lock and follows the ledger off the loop
  // (FollowLedger), taking each new entry in on the loop as it lands
  // (derived state, snapshots, the events index), so that a takeover
  // (TakeOver) replays only what the last follow missed. Changes are
  // refused with 503 (StandbyRefusal), which clients take to the next
  // collector.
  Status ChooseRole();
  void MaintainStandby();
  void FollowLedger();
  void FollowAt(std::chrono::steady_clock::time_point at);  // FollowLedger then
  void Followed(const Status& s, bool became, bool grew);
  void TakeOver();
  api::ApiResponse StandbyRefusal() const;
  std::string sequencer_address_;           // the sequencer's API, as it published it ("": unknown)
  ledger::SharedLedger* shared_ = nullptr;  // ledger_'s shared side; null for files
  std::atomic<bool> standby_{false};        // written on the loop (or before it runs)
  bool deferring_records_ = false;          // a standby loading its policy at open: not recorded
  uint64_t applied_ = 0;                    // entries taken into the derived state (a standby's)
  bool follow_in_flight_ = false;
  std::chrono::steady_clock::time_point next_follow_{};
  std::chrono::steady_clock::time_point standby_since_{};
  uint64_t followed_ = 0;
  std::string follow_error_;  // the last one logged, so each is logged once
  // What the sequencer records first, and binds, at Run or at a takeover.
  std::string GrantKeyInUseRecord() const;
  Status BindAgentSockets();
  Status BindAdminSocket();
  void WatchAgentSockets();
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
  // The HTTPS API (collector_api.cc, workflow_api.cc, events_api.cc): its
  // connections are served on the loop; each request goes to its route.
  Status StartApi();
  void AddRoutes();
  void RouteApi(api::ApiRequest req, api::ApiServer::Respond respond);
  void RunQueuedCalls();
  // Runs blocking reads (ledger, index) off the loop.
  void PostToWorker(std::function<void()> work);
  api::RouteTable routes_;
  // A route on the loop: the answer, or none when a change answers through
  // `respond` once its action is on record.
  using ApiRoute = std::optional<api::ApiResponse> (CollectorServer::*)(
      const api::ApiRequest&, const api::RouteArgs&, const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiHealth(const api::ApiRequest&, const api::RouteArgs&,
                                            const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiMetrics(const api::ApiRequest&, const api::RouteArgs&,
                                             const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiCheckpoint(const api::ApiRequest&, const api::RouteArgs&,
                                                const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiTile(const api::ApiRequest&, const api::RouteArgs&,
                                          const api::ApiServer::Respond&);
  // ?from=M&to=N: the proof that the tree of M entries is a prefix of N's.
  std::optional<api::ApiResponse> ApiConsistencyProof(const api::ApiRequest&, const api::RouteArgs&,
                                                      const api::ApiServer::Respond&);
  // Grants: the events query's visibility rule (auditors and approvers see
  // every grant, anyone else those they hold); ?past=1 adds ended ones.
  std::optional<api::ApiResponse> ApiHosts(const api::ApiRequest&, const api::RouteArgs&,
                                           const api::ApiServer::Respond&);
  // API credentials (credentials_api.cc): admins add and remove tokens and
  // client certificates by their SHA-256, each on record before it works.
  std::optional<api::ApiResponse> ApiCredentials(const api::ApiRequest&, const api::RouteArgs&,
                                                 const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiAddCredential(const api::ApiRequest&, const api::RouteArgs&,
                                                   const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiRemoveCredential(const api::ApiRequest&, const api::RouteArgs&,
                                                      const api::ApiServer::Respond&);
  // What the API accepts: the configuration's credentials, and those added
  // through the API (a hash the configuration names keeps its identity).
  std::map<std::string, std::string> AcceptedTokens() const;
  std::map<std::string, std::string> AcceptedCerts() const;
  // Agents (agents_api.cc): listed by admins and auditors; join tokens made
  // and agents removed by admins.
  std::optional<api::ApiResponse> ApiAgents(const api::ApiRequest&, const api::RouteArgs&,
                                            const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiNewJoinToken(const api::ApiRequest&, const api::RouteArgs&,
                                                  const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiRemoveAgent(const api::ApiRequest&, const api::RouteArgs&,
                                                 const api::ApiServer::Respond&);
  // The web console (console_api.cc): its files, and its sessions.
  std::optional<api::ApiResponse> ApiConsoleFile(const api::ApiRequest&, const api::RouteArgs&,
                                                 const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiSignIn(const api::ApiRequest&, const api::RouteArgs&,
                                            const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiSignOut(const api::ApiRequest&, const api::RouteArgs&,
                                             const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiWhoAmI(const api::ApiRequest&, const api::RouteArgs&,
                                            const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiGrants(const api::ApiRequest&, const api::RouteArgs&,
                                            const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiRevoke(const api::ApiRequest&, const api::RouteArgs&,
                                            const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiRequests(const api::ApiRequest&, const api::RouteArgs&,
                                              const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiNewRequest(const api::ApiRequest&, const api::RouteArgs&,
                                                const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiOneRequest(const api::ApiRequest&, const api::RouteArgs&,
                                                const api::ApiServer::Respond&);
  std::optional<api::ApiResponse> ApiReview(const api::ApiRequest&, const api::RouteArgs&,
                                            const api::ApiServer::Respond&);
  // GET /v1/events: answered on the API thread (ledger reads and the index's
  // own read connection), so queries never hold up the loop.
  api::ApiResponse HandleEventsQuery(const api::ApiRequest& req);
  // GET /v1/events/stream: the live tail as server-sent events, each message
  // a page of new entries in ledger order with its proofs (same JSON). No
  // thread per stream: the API server pulls each piece (PullTail, on the
  // loop); a page is read on a worker, and a tail with nothing new is parked
  // until the next tick (WakeTails) looks again.
  api::ApiResponse HandleEventsStream(const api::ApiRequest& req);
  struct LiveTail {
    index::EventQuery query;  // the reader's, by ledger index
    uint64_t next = 0;        // the ledger index to send from
    bool started = false, ended = false;
    std::chrono::steady_clock::time_point quiet_since;
  };
  struct ParkedTail {
    std::shared_ptr<LiveTail> tail;
    api::StreamNext next;
  };
  void PullTail(const std::shared_ptr<LiveTail>& tail, api::StreamNext next);
  void WakeTails();
  std::vector<ParkedTail> parked_tails_;
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

  CollectorConfig config_;
  schema::CurveKeyPair curve_;
  // Before every socket: closing it waits for them to be closed.
  static constexpr int kAgentIoThreads = 4;
  zmq::context_t context_;
  std::unique_ptr<ledger::Ledger> ledger_;
  // The witnesses (witness_duties.cc); null without [[witness]]. Its
  // threads read the ledger, so it is declared after it (and goes first).
  std::unique_ptr<Witnessing> witnessing_;
  Status StartWitnessing();
  void MaintainWitnessing();                          // on the loop, while the sequencer
  std::pair<uint64_t, size_t> sent_witnessed_{0, 0};  // to agents: (size, cosignatures)
  std::string WitnessMetrics() const;
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
  // Join tokens and the keys enrolled with them, and API credentials added
  // through the API (ledger state).
  EnrolmentBook enrolment_;
  CredentialBook credentials_;
  std::unique_ptr<AgentChannel> channel_;
  // Enrolment (enrolment_actions.cc): a token made, a key enrolled by
  // spending one, an enrolled key removed; each an action, on record first.
  void CreateJoinToken(const std::string& host, int64_t ttl_ns, const std::string& actor,
                       std::function<void(nlohmann::json)> reply);
  void Enrol(const AgentChannel::EnrolAsk& ask);
  void RemoveAgent(const std::string& host, const std::string& actor,
                   std::function<void(nlohmann::json)> reply);
  nlohmann::json DescribeAgents() const;
  std::atomic<bool> reload_policy_{false};
  std::atomic<bool> reload_config_{false};
  // Reads config_.path again: agents and API credentials that changed are
  // recorded (configReloaded), then take effect; other settings wait for a
  // restart (logged).
  void ReloadConfig();
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
  // Loads config_.policy and records it (policyLoaded), the hosts' resources included.
  Status LoadPolicy();
  void RefreshEventReaders();
  Mutex event_readers_mu_;
  bool event_policy_loaded_ LATCH_GUARDED_BY(event_readers_mu_) = false;
  std::set<std::string> event_readers_ LATCH_GUARDED_BY(event_readers_mu_);
  Mutex calls_mu_;
  // From other threads (refusals from stream producers) or the loop, run on
  // the loop by RunQueuedCalls.
  std::vector<std::function<void()>> calls_ LATCH_GUARDED_BY(calls_mu_);

  std::unique_ptr<zmq::socket_t> admin_;
  int wake_fd_ = -1;  // eventfd: Stop() and policy reloads (signal-safe)
  std::atomic<bool> stopping_{false};
  CollectorCounters counters_;
};

}  // namespace latch::collector
