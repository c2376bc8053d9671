#include "collector/ingest/collector_server.h"

// Boost 1.74's Asio needs <utility> first (see agent_daemon.h).
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on

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
namespace {

constexpr uint32_t kMaxPayload = 60000;  // leaves room for the record envelope in 64 KiB

}  // namespace

struct CollectorServer::Completion {
  Status status;
  std::string host, boot;
  uint64_t first_sequence = 0, last_sequence = 0, count = 0, first_index = 0;
  int64_t receive_time_ns = 0;
  uint64_t checkpoint_from = 0;
};

// The loop's waits: each ZeroMQ socket's ZMQ_FD and the eventfd, a 200 ms
// tick, and the workers that answer the API's ledger and index reads.
struct CollectorServer::Waiters {
  explicit Waiters(boost::asio::io_context& io) : fds{Fd(io), Fd(io), Fd(io), Fd(io)}, tick(io) {}
  using Fd = boost::asio::posix::stream_descriptor;
  std::array<Fd, 4> fds;  // router, ZAP, admin, eventfd
  boost::asio::steady_timer tick;
  boost::asio::thread_pool workers{2};
  // The descriptors belong to ZeroMQ and to the server: not closed here.
  void Release() {
    for (Fd& d : fds) {
      if (!d.is_open()) continue;
      boost::system::error_code ec;
      d.cancel(ec);
      d.release();
    }
    tick.cancel();
  }
};

Status CollectorServer::Open(const CollectorConfig& config, std::unique_ptr<CollectorServer>* out) {
  std::unique_ptr<CollectorServer> s(new CollectorServer());
  s->config_ = config;
  const std::string& dir = config.data_dir;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("creating data directory " + dir, errno);
  }
  LATCH_RETURN_IF_ERROR(schema::LoadOrCreateCurveKey(dir + "/curve.key", &s->curve_));
  std::vector<tlog::NoteVerifier> retired;
  LATCH_RETURN_IF_ERROR(LoadGrantKeys(dir, config.origin, &s->grant_key_, &retired));
  std::string ledger_dir = dir + "/ledger";
  if (!ledger::Ledger::IsLedgerDirectory(ledger_dir)) {
    LATCH_RETURN_IF_ERROR(ledger::Ledger::Create(ledger_dir, config.origin));
  }
  LATCH_RETURN_IF_ERROR(
      ledger::Ledger::Open(ledger_dir, ledger::Ledger::Mode::kReadWrite, &s->ledger_));
  if (s->ledger_->checkpoint().origin != config.origin) {
    return Status::FailedPrecondition("the ledger in " + ledger_dir + " has origin '" +
                                      s->ledger_->checkpoint().origin + "', config says '" +
                                      config.origin + "'");
  }
  s->grants_ = std::make_unique<GrantBook>(s->grant_key_, retired);
  s->retired_grant_keys_ = retired;
  s->workflow_ =
      std::make_unique<workflow::WorkflowService>(static_cast<workflow::WorkflowSink&>(*s));
  LATCH_RETURN_IF_ERROR(s->RestoreState());
  std::vector<notify::WebhookTarget> hooks;
  for (const auto& w : config.webhooks) {
    bool tls = false;
    std::string host, port, path;
    LATCH_RETURN_IF_ERROR(notify::WebhookSender::ParseUrl(w.url, &tls, &host, &port, &path));
    hooks.push_back({w.url, w.ca, w.secret, {w.events.begin(), w.events.end()}});
  }
  s->webhooks_ = std::make_unique<notify::WebhookSender>(std::move(hooks));
  s->index_path_ = config.index_path.empty() ? dir + "/index.sqlite" : config.index_path;
  // Opened, checked and caught up on the follower's thread: the index is
  // derived, so neither start-up nor the ledger waits for it or its faults.
  s->index_ = std::make_unique<index::IndexFollower>(
      *s->ledger_, index::IndexPlace{s->index_path_, config.origin,
                                     [ledger = s->ledger_.get()](uint64_t size, tlog::Hash* root) {
                                       return ledger->RootAt(size, root);
                                     }});
  ledger::BatcherOptions bo;
  bo.max_batch_entries = config.batch_max_entries;
  bo.max_batch_age = std::chrono::milliseconds(config.batch_max_age_ms);
  bo.max_pending_entries = size_t{4} * config.batch_max_entries;
  s->batcher_ = std::make_unique<ledger::Batcher>(*s->ledger_, bo);
  s->ledger_health_ = std::make_unique<LedgerHealth>(dir);
  if (!config.policy.empty()) {
    LATCH_RETURN_IF_ERROR(s->workflow_->LoadPolicy(config.policy, NowNs()).WithContext("policy"));
    s->RefreshEventReaders();
  }
  s->wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->wake_fd_ < 0) return Status::FromErrno("eventfd", errno);
  s->loop_ = std::make_unique<Dispatcher>();
  s->waiters_ = std::make_unique<Waiters>(s->loop_->io());
  *out = std::move(s);
  return Status::Ok();
}

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

int64_t CollectorServer::NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

CollectorServer::~CollectorServer() {
  api_.reset();
  if (waiters_) waiters_->Release();
  batcher_.reset();  // commits what is pending; completions are then dropped
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

// Grants past their window: recorded as expired and dropped from the hosts'
// sets (the kernels have refused them since notAfter on their own).
void CollectorServer::RecordEndedGrants() {
  for (uint64_t id : grants_->EndedBy(NowNs())) {
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor("collector");
    a.initGrantExpired().setGrantId(id);
    const int64_t now = NowNs();
    Status s = RecordWorkflow(schema::CanonicalBytes(a.asReader()), "", now);
    if (!s.ok()) {
      logging::Default().Error("recording a grant's expiry; tried again shortly",
                               {{"grant", id}, {"error", s.ToString()}});
      return;  // tried again at the next turn
    }
    std::vector<std::string> changed;
    EndGrant(id, "expired", now, &changed);
    for (const std::string& h : changed) PushGrantSet(h);
  }
}

void CollectorServer::EndGrant(uint64_t id, const std::string& how, int64_t at_ns,
                               std::vector<std::string>* changed) {
  if (!grants_->Has(id)) return;
  past_grants_[id] = {grants_->Describe(id), how, at_ns};
  (void)grants_->ApplyRevoked(id, changed);
}

void CollectorServer::RefreshEventReaders() {
  const workflow::Policy* policy = workflow_->policy();
  std::set<std::string> readers;
  if (policy != nullptr) {
    for (const auto& [name, identity] : policy->identities()) {
      if (policy->MayReadAllEvents(name)) readers.insert(name);
    }
  }
  std::lock_guard<std::mutex> lock(event_readers_mu_);
  event_policy_loaded_ = policy != nullptr;
  event_readers_ = std::move(readers);
}

void CollectorServer::RequestPolicyReload() {
  reload_policy_ = true;
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

Status CollectorServer::Record(const std::string& action, const std::string& actor, int64_t at_ns) {
  LATCH_RETURN_IF_ERROR(RecordWorkflow(action, actor, at_ns));
  if (open_action_) {
    open_action_->webhooks.push_back(action);  // once the batch is durable
  } else {
    NotifyWebhooks(action);
  }
  return Status::Ok();
}

Status CollectorServer::RecordAsOne(const std::function<Status()>& action) {
  LATCH_ASSERT_ON_LOOP(*loop_);
  workflow::RequestBook before = workflow_->requests();
  open_action_.emplace();
  Status s = action();
  OpenAction done = std::move(*open_action_);
  open_action_.reset();
  if (s.ok() && !done.batch.empty()) {
    uint64_t index;
    // Grants wait for these records before they take effect: no batch-age delay.
    s = batcher_->Append(std::move(done.batch), &index, /*urgent=*/true);
    if (!s.ok() && ledger_->write_failed()) NoteLedgerFailure(s);
  }
  if (!s.ok()) {
    // Nothing of it is on record, so nothing of it stays: not a review
    // without its decision, not a grant that was never recorded.
    workflow_->RestoreRequests(std::move(before));
    for (uint64_t id : done.issued) {
      std::vector<std::string> unchanged;  // never pushed
      (void)grants_->ApplyRevoked(id, &unchanged);
    }
    return s;
  }
  for (const std::string& host : done.push) PushGrantSet(host);
  for (const std::string& a : done.webhooks) NotifyWebhooks(a);
  return Status::Ok();
}

// Requests, reviews and decisions go to the webhooks once they are on record.
void CollectorServer::NotifyWebhooks(const std::string& action) {
  if (!webhooks_->enabled()) return;  // no decoding for nobody
  index::RecordView v;
  if (!index::ViewWorkflowAction(action, &v).ok()) return;
  std::string type = v.kind == "requestCreated"    ? "request.created"
                     : v.kind == "requestReviewed" ? "request.reviewed"
                     : v.kind == "requestDecided"  ? "request.decided"
                                                   : "";
  if (type.empty()) return;
  nlohmann::json body = {{"type", type},
                         {"collector", config_.origin},
                         {"request_id", v.request_id},
                         {"at_ns", NowNs()},
                         {"action", v.detail}};
  webhooks_->Send(type, body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

Status CollectorServer::IssueGrant(const workflow::ApprovedGrant& g, const std::string& actor,
                                   uint64_t* grant_id) {
  GrantSpec spec;
  GrantPrincipal p;
  switch (g.identity->principal) {
    case workflow::Identity::Principal::kUid:
      p.kind = GrantPrincipal::Kind::kUid;
      p.uid = g.identity->uid;
      break;
    case workflow::Identity::Principal::kUser:
      p.kind = GrantPrincipal::Kind::kUserName;
      p.name = g.identity->host_user;
      break;
    case workflow::Identity::Principal::kCgroup:
      p.kind = GrantPrincipal::Kind::kCgroupPath;
      p.name = g.identity->host_user;
      break;
    case workflow::Identity::Principal::kNone:
      return Status::FailedPrecondition("'" + g.identity->name + "' has no principal on hosts");
  }
  spec.principals = {p};
  spec.resource_ids = {g.resource_id};
  spec.host_ids = g.hosts;
  spec.not_before_unix_ns = g.not_before_unix_ns;
  spec.not_after_unix_ns = g.not_after_unix_ns;
  spec.break_glass = g.break_glass;
  return IssueGrant(spec, actor, grant_id, g.not_before_unix_ns);
}

void CollectorServer::Stop() {
  stopping_ = true;
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

Status CollectorServer::Run() {
  {
    // Which key vouches for grants from now on, and which it replaced.
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor("collector");
    auto k = a.initGrantKeyInUse();
    k.setGrantKey(grant_key_.verifier().ToString());
    auto list = k.initRetiredGrantKeys(static_cast<unsigned>(retired_grant_keys_.size()));
    for (unsigned i = 0; i < retired_grant_keys_.size(); ++i)
      list.set(i, retired_grant_keys_[i].ToString());
    LATCH_RETURN_IF_ERROR(Record(schema::CanonicalBytes(a.asReader()), "", NowNs()));
  }
  try {
    zap_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::rep);
    zap_->bind("inproc://zeromq.zap.01");
    router_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::router);
    router_->set(zmq::sockopt::curve_server, 1);
    router_->set(zmq::sockopt::curve_secretkey, curve_.secret_z85);
    router_->set(zmq::sockopt::zap_domain, "latch");
    router_->set(zmq::sockopt::router_mandatory, 1);
    router_->set(zmq::sockopt::maxmsgsize, static_cast<int64_t>(config_.max_message_bytes * 4));
    router_->set(zmq::sockopt::heartbeat_ivl, 1000);
    router_->set(zmq::sockopt::heartbeat_timeout, 5000);
    router_->set(zmq::sockopt::linger, 0);
    for (const std::string& e : config_.endpoints) router_->bind(e);
    std::string admin_path = config_.data_dir + "/admin.sock";
    ::unlink(admin_path.c_str());
    admin_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::rep);
    admin_->set(zmq::sockopt::linger, 0);
    admin_->bind(admin_endpoint());
  } catch (const zmq::error_t& e) {
    return Status::IoError(std::string("binding the collector's sockets: ") + e.what());
  }
  index_->Start();  // catches up with the ledger in the background
  if (config_.api_enabled) LATCH_RETURN_IF_ERROR(StartApi());
  {
    std::string endpoints;
    for (const std::string& e : config_.endpoints) endpoints += (endpoints.empty() ? "" : ",") + e;
    logging::Default().Info("serving",
                            {{"endpoints", endpoints},
                             {"agents", config_.agents.size()},
                             {"ledger_size", ledger_->size()},
                             {"api", config_.api_enabled ? "https://" + config_.api_address + ":" +
                                                               std::to_string(config_.api_port)
                                                         : std::string("off")}});
  }
  sd_notify(0, "READY=1\nSTATUS=serving");  // a no-op unless started by systemd (Type=notify)
  WatchSockets();
  loop_->Run();
  sd_notify(0, "STOPPING=1");
  // API calls queued before the stop are answered (briefly, the loop runs
  // their writes); later ones are refused (stopping_ is set).
  RunQueuedCalls();
  waiters_->workers.join();  // index reads under way answer too
  if (api_) {
    loop_->io().restart();
    loop_->io().run_for(std::chrono::milliseconds(100));
    api_->Stop();
  }
  waiters_->Release();
  loop_->Drain();
  FlushRefusals(true);
  index_->Stop();
  if (ledger_->size() != snapshot_size_) SaveSnapshot("stop");
  {
    std::lock_guard<std::mutex> lock(unwritten_mu_);
    if (!unwritten_.empty()) {
      logging::Default().Error(
          "stopping with records of our own that the ledger refused",
          {{"records", unwritten_.size()}, {"reason", ledger_health_->reason()}});
    }
  }
  return loop_status_;
}

void CollectorServer::PostToWorker(std::function<void()> work) {
  boost::asio::post(waiters_->workers, std::move(work));
}

void CollectorServer::WatchSockets() {
  waiters_->fds[0].assign(router_->get(zmq::sockopt::fd));
  waiters_->fds[1].assign(zap_->get(zmq::sockopt::fd));
  waiters_->fds[2].assign(admin_->get(zmq::sockopt::fd));
  waiters_->fds[3].assign(wake_fd_);
  for (size_t i = 0; i < waiters_->fds.size(); ++i) Watch(i);
  Tick();
}

void CollectorServer::Watch(size_t which) {
  waiters_->fds[which].async_wait(boost::asio::posix::stream_descriptor::wait_read,
                                  [this, which](const boost::system::error_code& ec) {
                                    if (ec) return;
                                    Turn();
                                    if (!stopping_) Watch(which);
                                  });
}

// Periodic duties, and a turn even if an edge of ZMQ_FD (which signals
// changes, not levels) was taken in by a send.
void CollectorServer::Tick() {
  waiters_->tick.expires_after(std::chrono::milliseconds(200));
  waiters_->tick.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    Turn();
    if (!stopping_) Tick();
  });
}

void CollectorServer::Turn() {
  LATCH_ASSERT_ON_LOOP(*loop_);
  if (stopping_) return loop_->Exit();
  bool more = false;
  try {
    while (zap_->get(zmq::sockopt::events) & ZMQ_POLLIN) HandleZap();
    HandleCompletions();
    RunQueuedCalls();
    // Bounded turns per wake-up, so completions and ZAP are never starved.
    for (int i = 0; i < 256 && (router_->get(zmq::sockopt::events) & ZMQ_POLLIN); ++i) {
      HandleAgentMessage();
    }
    if (admin_->get(zmq::sockopt::events) & ZMQ_POLLIN) HandleAdmin();
    more = (router_->get(zmq::sockopt::events) & ZMQ_POLLIN) ||
           (admin_->get(zmq::sockopt::events) & ZMQ_POLLIN) ||
           (zap_->get(zmq::sockopt::events) & ZMQ_POLLIN);
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) {
      loop_status_ = Status::IoError(std::string("collector loop: ") + e.what());
      stopping_ = true;
      return loop_->Exit();
    }
  }
  Maintain();
  // What is left is taken on the next turn, after what else is queued.
  if (more && !turn_posted_) {
    turn_posted_ = true;
    loop_->Post([this] {
      turn_posted_ = false;
      Turn();
    });
  }
}

void CollectorServer::Maintain() {
  FlushRefusals(false);
  if (reload_policy_.exchange(false)) {
    Status s = workflow_->LoadPolicy(config_.policy, NowNs());
    RefreshEventReaders();
    if (s.ok()) {
      logging::Default().Info("policy reloaded", {{"sha256", workflow_->policy()->hash()}});
    } else {
      logging::Default().Error(
          "policy reload refused; the running policy stays",
          {{"error", s.ToString()}, {"hint", "fix the file named and send SIGHUP again"}});
    }
  }
  // A commit that failed anywhere (an agent batch, an operator's grant, a
  // record of our own) leaves the ledger refusing writes until recovered.
  if (ledger_->write_failed() && ledger_health_->writable()) {
    NoteLedgerFailure(Status::IoError("a ledger commit failed to write"));
  }
  if (ledger_health_->TryRecover(*ledger_, pending_commits_.load() == 0)) {
    WriteUnwritten();
    AskForFailedAppends();
  }
  if (ledger_health_->writable()) {
    // Both record before they act; while nothing can be recorded they
    // wait (agents end a grant at its notAfter on their own).
    if (workflow_->policy() != nullptr) workflow_->ExpireDue(NowNs());
    RecordEndedGrants();
  }
  RecordSilentAgents();
  if (uint64_t size = ledger_->size(); size != index_notified_size_) {
    index_notified_size_ = size;
    index_->Notify();
  }
  if (ledger_->size() - snapshot_size_ >= config_.snapshot_every_entries &&
      ledger_health_->writable()) {
    SaveSnapshot("periodic");
  }
}

void CollectorServer::NoteLedgerFailure(const Status& why) { ledger_health_->Failed(why); }

void CollectorServer::KeepUnwritten(UnwrittenRecord r) {
  std::lock_guard<std::mutex> lock(unwritten_mu_);
  if (unwritten_.size() >= kMaxUnwritten) {
    counters_.records_unwritten_dropped++;
    const int64_t now = NowNs();
    if (dropped_unrecorded_++ == 0) first_dropped_ns_ = now;
    last_dropped_ns_ = now;
    return;
  }
  unwritten_.push_back(std::move(r));
}

void CollectorServer::AskForFailedAppends() {
  // A Welcome sent while these were being appended told the agent they were
  // held; an agent with nothing newer to send would never find out they are
  // not. Ask for them: it resends from the sequence named.
  for (const auto& [host, boot] : failed_appends_) {
    auto route = routes_.find(host);
    if (route == routes_.end()) continue;  // its next Hello's Welcome says what is held
    const SequenceMark* mark = sequences_.Find(host, boot);
    capnp::MallocMessageBuilder m;
    auto rf = m.initRoot<schema::Envelope>().initResendFrom();
    rf.setBootId(schema::AsData(boot));
    rf.setSequence(mark != nullptr ? mark->sequence + 1 : 1);
    Send(route->second, schema::EncodeFrame(m));
  }
  failed_appends_.clear();
}

void CollectorServer::WriteUnwritten() {
  std::deque<UnwrittenRecord> waiting;
  uint64_t dropped = 0;
  int64_t first = 0, last = 0;
  {
    std::lock_guard<std::mutex> lock(unwritten_mu_);
    waiting.swap(unwritten_);
    std::swap(dropped, dropped_unrecorded_);
    first = first_dropped_ns_;
    last = last_dropped_ns_;
  }
  if (dropped > 0) {
    // The gap goes on the record, after what was kept.
    logging::Default().Error("records of our own were dropped while the ledger refused writes",
                             {{"dropped", dropped}});
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor("collector");
    auto d = a.initOwnRecordsDropped();
    d.setCount(dropped);
    d.setFirstDroppedNs(first);
    d.setLastDroppedNs(last);
    waiting.push_back({schema::CanonicalBytes(a.asReader()), ""});
  }
  for (UnwrittenRecord& r : waiting) RecordWorkflowAsync(r.action, r.host);
}

// A host that had been talking and then stays unheard (agents send a
// heartbeat twice a second) goes on the record, once per silence: on a host
// whose agent is stopped or cut off, enforcement is no longer observed.
void CollectorServer::RecordSilentAgents() {
  // The loop turns at least every 200 ms. A longer gap is this collector's
  // own pause (SIGSTOP, a frozen VM, a stall): agents were not silent, we
  // were deaf, so the gap does not count towards anyone's silence (issue 14:
  // a 60 s freeze recorded agentSilent for an agent that never stopped).
  auto turn = std::chrono::steady_clock::now();
  if (last_turn_ != std::chrono::steady_clock::time_point{}) {
    int64_t gap_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(turn - last_turn_).count();
    if (gap_ns > 2'000'000'000) {
      silence_counts_from_ns_ = NowNs();  // everyone's silence starts again now
      logging::Default().Warn(
          "this collector was paused; the pause is not counted as agents' silence",
          {{"paused_ms", gap_ns / 1'000'000}});
    }
  }
  last_turn_ = turn;
  int64_t now = NowNs();
  int64_t after = static_cast<int64_t>(config_.agent_silent_after_ms) * 1'000'000;
  for (const auto& [host, heard] : last_heard_ns_) {
    if (now - std::max(heard, silence_counts_from_ns_) < after || silent_.count(host)) continue;
    silent_.insert(host);
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor(host);
    a.initAgentSilent().setLastHeardNs(heard);
    RecordWorkflowAsync(schema::CanonicalBytes(a.asReader()), host);
    logging::Default().Warn("agent silent",
                            {{"host", host},
                             {"silent_ms", (now - heard) / 1'000'000},
                             {"hint", "is latch-agent running on it, and can it reach us?"}});
  }
}

void CollectorServer::HandleZap() {
  std::vector<zmq::message_t> frames;
  while (true) {
    zmq::message_t f;
    if (!zap_->recv(f, zmq::recv_flags::dontwait)) break;
    bool more = f.more();
    frames.push_back(std::move(f));
    if (!more) break;
  }
  if (frames.size() < 6) return;
  std::string version = frames[0].to_string(), request_id = frames[1].to_string();
  std::string mechanism = frames[5].to_string(), address = frames[3].to_string();
  std::string code = "400", text = "not enrolled", user;
  if (mechanism == "CURVE" && frames.size() >= 7 && frames[6].size() == 32) {
    char z85[41];
    zmq_z85_encode(z85, static_cast<const uint8_t*>(frames[6].data()), 32);
    auto it = config_.agents.find(z85);
    if (it != config_.agents.end()) {
      code = "200";
      text = "OK";
      user = it->second;
    } else {
      counters_.refused_keys++;
      Refuse("unenrolled_key", std::string("CURVE key ") + z85, "", "", address);
    }
  } else {
    counters_.refused_keys++;
    Refuse("unenrolled_key", "mechanism " + mechanism, "", "", address);
  }
  zap_->send(zmq::buffer(version), zmq::send_flags::sndmore);
  zap_->send(zmq::buffer(request_id), zmq::send_flags::sndmore);
  zap_->send(zmq::buffer(code), zmq::send_flags::sndmore);
  zap_->send(zmq::buffer(text), zmq::send_flags::sndmore);
  zap_->send(zmq::buffer(user), zmq::send_flags::sndmore);
  zap_->send(zmq::message_t(), zmq::send_flags::none);
}

void CollectorServer::HandleAgentMessage() {
  zmq::message_t route_msg, payload;
  if (!router_->recv(route_msg, zmq::recv_flags::dontwait)) return;
  if (!route_msg.more()) return;
  (void)router_->recv(payload, zmq::recv_flags::none);
  while (payload.more()) {  // a DEALER sends one frame; drop any extra
    zmq::message_t extra;
    (void)router_->recv(extra, zmq::recv_flags::none);
    if (!extra.more()) break;
  }
  std::string route = route_msg.to_string();
  std::string host = payload.gets("User-Id");
  // Not every transport has a peer address (inproc, ipc): gets() throws then.
  const char* address = zmq_msg_gets(payload.handle(), "Peer-Address");
  current_peer_ = address != nullptr ? address : "";
  if (payload.size() > config_.max_message_bytes) {
    counters_.oversized_messages++;
    Refuse("oversized_message", host + " sent " + std::to_string(payload.size()) + " bytes", route,
           "message larger than " + std::to_string(config_.max_message_bytes) + " bytes");
    return;
  }
  // Whatever the frame's structure makes a reader throw (a hostile pointer,
  // a wrong type) refuses that message only.
  Status read =
      schema::ReadFrame({static_cast<const char*>(payload.data()), payload.size()},
                        [&](schema::Envelope::Reader env) { OnEnvelope(route, host, env); });
  if (!read.ok()) {
    counters_.malformed_messages++;
    Refuse("malformed_message", host + ": " + read.message(), route, "malformed message");
  }
}

void CollectorServer::OnEnvelope(const std::string& route, const std::string& host,
                                 schema::Envelope::Reader env) {
  bool first_contact = routes_.find(host) == routes_.end();
  routes_[host] = route;
  last_heard_ns_[host] = NowNs();
  silent_.erase(host);
  // A host heard from for the first time since this collector started
  // gets its grant set even without a Hello (it may be mid-session).
  if (first_contact && env.which() != schema::Envelope::HELLO) PushGrantSet(host);
  switch (env.which()) {
    case schema::Envelope::HELLO: {
      auto hello = env.getHello();
      if (hello.getHostId() != host) {
        Refuse(
            "host_id_mismatch",
            "key enrolled as '" + host + "' says '" + std::string(hello.getHostId().cStr()) + "'",
            route, "host id does not match the enrolled key");
        return;
      }
      proof_base_[host] = hello.getCheckpointSize();
      session_[host] = hello.getSession();
      std::string boot = schema::AsString(hello.getBootId());
      auto known = connected_boot_.find(host);
      // A new agent boot, or the first Hello of this collector's run, is on
      // the record; a new session of the same boot is not news.
      if (known == connected_boot_.end() || known->second != boot) {
        connected_boot_[host] = boot;
        capnp::MallocMessageBuilder m;
        auto a = m.initRoot<schema::WorkflowAction>();
        a.setActor(host);
        auto c = a.initAgentConnected();
        c.setBootId(hello.getBootId());
        c.setCheckpointSize(hello.getCheckpointSize());
        c.setGrantSetVersion(hello.getGrantSetVersion());
        RecordWorkflowAsync(schema::CanonicalBytes(a.asReader()), host);
      }
      PushGrantSet(host);
      // What this collector already holds of the boot is acknowledged at
      // once: the agent resends from there, not from what it last had
      // proven (issue 13.5: a lossy link resent everything in flight).
      const SequenceMark* mark = sequences_.Find(host, boot);
      auto appending = in_flight_.find({host, boot});
      if (mark != nullptr && mark->sequence > hello.getLastAcknowledgedSequence() &&
          appending == in_flight_.end()) {
        SendReceipt(host, boot, hello.getCheckpointSize());
      }
      // Then the answer the agent waits for before it sends: what is held
      // or being appended, so a new session resends none of it (a session
      // that timed out while its batches queued here used to resend them
      // all: ~8,000 duplicates of 16,000 on a loaded machine).
      capnp::MallocMessageBuilder w;
      auto welcome = w.initRoot<schema::Envelope>().initWelcome();
      welcome.setSession(hello.getSession());
      welcome.setBootId(hello.getBootId());
      uint64_t held = mark != nullptr ? mark->sequence : 0;
      if (appending != in_flight_.end()) held = std::max(held, appending->second);
      welcome.setHeldThroughSequence(held);
      Send(route, schema::EncodeFrame(w));
      return;
    }
    case schema::Envelope::EVENT_BATCH:
      return OnBatch(route, host, env.getEventBatch());
    case schema::Envelope::APPLIED:
      return OnApplied(host, env.getApplied());
    case schema::Envelope::ALARM:
      return OnAlarm(host, env.getAlarm());
    case schema::Envelope::HEARTBEAT: {
      capnp::MallocMessageBuilder m;
      m.initRoot<schema::Envelope>().setHeartbeat(NowNs());
      Send(route, schema::EncodeFrame(m));
      return;
    }
    default:
      Refuse("unexpected_message", host + " sent a collector-only message", route,
             "unexpected message kind");
      return;
  }
}

// Whether `r` is a loss record that stands for the agent's records from
// `next` up to its own sequence (records lost in a damaged spool file). A
// malformed payload declares nothing.
bool CollectorServer::DeclaresLostFrom(schema::SpooledRecord::Reader r, uint64_t next) const {
  if (r.getKind() != schema::RecordKind::LOSS || r.getSequence() <= next) return false;
  uint64_t first = 0;
  Status s = schema::ReadCanonical<schema::LossEvent>(
      std::string_view(reinterpret_cast<const char*>(r.getPayload().begin()),
                       r.getPayload().size()),
      "loss", [&](auto loss) {
        if (loss.getKind() == schema::LossKind::SPOOL_CORRUPT) first = loss.getFirstLostSequence();
        return Status::Ok();
      });
  return s.ok() && first == next;
}

void CollectorServer::OnBatch(const std::string& route, const std::string& host,
                              schema::EventBatch::Reader batch) {
  std::string boot = schema::AsString(batch.getBootId());
  auto records = batch.getRecords();
  if (boot.size() != 16 || records.size() == 0) {
    counters_.malformed_messages++;
    Refuse("malformed_message", host + ": batch without a 16-byte boot id or records", route,
           "malformed batch");
    return;
  }
  if (!ledger_health_->writable()) {
    // Unacknowledged, the records stay in the agent's spool; it resends
    // from what its Welcome says is held once we take writes again.
    counters_.batches_unwritable++;
    return;
  }
  auto key = std::make_pair(host, boot);
  const SequenceMark* mark = sequences_.Find(host, boot);
  uint64_t floor = mark ? mark->sequence : 0;
  auto fl = in_flight_.find(key);
  if (fl != in_flight_.end()) floor = std::max(floor, fl->second);
  // Validate the whole batch before anything is appended.
  uint64_t prev = 0;
  for (auto r : records) {
    auto kind = r.getKind();
    if (r.getSequence() <= prev ||
        (kind != schema::RecordKind::EVENT && kind != schema::RecordKind::LOSS &&
         kind != schema::RecordKind::ACTIVITY && kind != schema::RecordKind::GUARD) ||
        r.getPayload().size() > kMaxPayload) {
      counters_.malformed_messages++;
      Refuse("malformed_message", host + ": batch records out of order, of a bad kind or too large",
             route, "malformed batch");
      return;
    }
    prev = r.getSequence();
  }
  counters_.batches++;
  int64_t now = NowNs();
  ledger::EntryBatch entries;
  ledger::LedgerRecord rec;
  rec.host_id = host;
  rec.agent_boot_id = boot;
  rec.receive_time_ns = now;
  std::string bytes;
  uint64_t first = 0, count = 0;
  uint64_t next = floor + 1;   // the sequence the next record must have
  uint64_t declared_lost = 0;  // records the agent declared lost, stood for by a loss record
  uint64_t gap_at = 0;         // non-zero: the sequence that was expected and missing
  for (auto r : records) {
    if (r.getSequence() <= floor) {
      counters_.records_duplicate++;
      continue;
    }
    // Only the next sequence is appended: a record past a gap waits for the
    // agent to resend what is missing (exactly once means gap-free too). The
    // one exception is declared: a loss record standing for records the
    // agent lost from its spool, from `next` up to its own sequence.
    if (r.getSequence() != next && !DeclaresLostFrom(r, next)) {
      gap_at = next;
      counters_.records_out_of_order += records.size();
      break;
    }
    rec.kind = static_cast<ledger::RecordKind>(r.getKind());  // one of the three checked above
    rec.sequence = r.getSequence();
    rec.event_time_ns = r.getEventTimeNs();
    rec.payload = schema::AsString(r.getPayload());
    Status s = ledger::EncodeRecord(rec, &bytes);
    if (s.ok()) s = entries.Add(bytes);
    if (!s.ok()) {
      counters_.malformed_messages++;
      Refuse("malformed_message", host + ": " + s.ToString(), route, "record too large");
      return;
    }
    if (count++ == 0) first = rec.sequence;
    // A declared loss stands for next..its own sequence (its own number was
    // one of the lost records').
    if (rec.sequence != next) declared_lost += rec.sequence - next + 1;
    next = rec.sequence + 1;
  }
  uint64_t from = batch.getCheckpointSize();
  if (gap_at != 0) {
    capnp::MallocMessageBuilder m;
    auto rf = m.initRoot<schema::Envelope>().initResendFrom();
    rf.setBootId(schema::AsData(boot));
    rf.setSequence(gap_at);
    Send(route, schema::EncodeFrame(m));
  }
  if (count == 0) {
    // All retransmissions. A receipt now, unless a submission is still on its
    // way to disk: its receipt will cover these too.
    if (fl == in_flight_.end()) SendReceipt(host, boot, from);
    return;
  }
  uint64_t last = next - 1;
  in_flight_[key] = last;
  counters_.records_declared_lost += declared_lost;
  auto c = std::make_unique<Completion>();
  c->host = host;
  c->boot = boot;
  c->first_sequence = first;
  c->last_sequence = last;
  c->count = count;
  c->receive_time_ns = now;
  c->checkpoint_from = from;
  Completion* raw = c.release();
  pending_commits_++;  // until HandleCompletions has taken its completion
  batcher_->Submit(std::move(entries), [this, raw](const Status& s, uint64_t first_index) {
    std::unique_ptr<Completion> done(raw);
    done->status = s;
    done->first_index = first_index;
    {
      std::lock_guard<std::mutex> lock(completions_mu_);
      completions_.push_back(std::move(done));
    }
    uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
  });
}

void CollectorServer::HandleCompletions() {
  uint64_t n;
  (void)!::read(wake_fd_, &n, sizeof(n));
  std::vector<std::unique_ptr<Completion>> done;
  {
    std::lock_guard<std::mutex> lock(completions_mu_);
    done.swap(completions_);
  }
  for (auto& c : done) {
    pending_commits_--;
    auto key = std::make_pair(c->host, c->boot);
    if (!c->status.ok()) {
      // Nothing of it is acknowledged: the agent keeps the records and sends
      // them again. What follows it for this boot failed too (the ledger
      // refuses every commit after a failed one), so nothing is in flight.
      NoteLedgerFailure(c->status);
      in_flight_.erase(key);
      failed_appends_.insert(key);
      continue;
    }
    counters_.records_appended += c->count;
    uint64_t last_sequence = c->last_sequence;
    // The mark is the last record appended, at the last index.
    sequences_.Advance(c->host, c->boot,
                       {last_sequence, c->first_index + c->count - 1, c->receive_time_ns});
    auto it = in_flight_.find(key);
    if (it != in_flight_.end() && it->second <= last_sequence) in_flight_.erase(it);
    SendReceipt(c->host, c->boot, c->checkpoint_from, c.get());
  }
}

void CollectorServer::SendReceipt(const std::string& host, const std::string& boot,
                                  uint64_t checkpoint_from, const Completion* appended) {
  const SequenceMark* mark = sequences_.Find(host, boot);
  auto route = routes_.find(host);
  if (mark == nullptr || route == routes_.end()) return;
  auto base = proof_base_.find(host);
  if (base != proof_base_.end()) checkpoint_from = base->second;
  std::string note = ledger_->checkpoint_note();
  tlog::Checkpoint cp;
  Status s = tlog::OpenCheckpoint(note, ledger_->verifier(), &cp);
  std::vector<tlog::Hash> inclusion, consistency;
  if (s.ok()) s = ledger_->InclusionProof(mark->index, cp.size, &inclusion);
  if (s.ok() && checkpoint_from > 0 && checkpoint_from <= cp.size) {
    s = ledger_->ConsistencyProof(checkpoint_from, cp.size, &consistency);
  }
  if (!s.ok()) {
    logging::Default().Error("cannot build a receipt; the agent resends",
                             {{"host", host}, {"error", s.ToString()}});
    return;
  }
  capnp::MallocMessageBuilder m;
  auto r = m.initRoot<schema::Envelope>().initReceipt();
  r.setBootId(schema::AsData(boot));
  r.setThroughSequence(mark->sequence);
  r.setThroughIndex(mark->index);
  r.setThroughReceiveTimeNs(mark->receive_time_ns);
  if (appended != nullptr) {
    r.setAppendedFirstSequence(appended->first_sequence);
    r.setAppendedFirstIndex(appended->first_index);
    r.setAppendedCount(appended->count);
  }
  r.setCheckpoint(schema::AsData(note));
  auto inc = r.initInclusionProof(static_cast<unsigned>(inclusion.size()));
  for (unsigned i = 0; i < inclusion.size(); ++i) inc.set(i, {inclusion[i].data(), 32});
  r.setConsistencyFrom(checkpoint_from);
  auto session = session_.find(host);
  r.setSession(session != session_.end() ? session->second : 0);
  auto con = r.initConsistencyProof(static_cast<unsigned>(consistency.size()));
  for (unsigned i = 0; i < consistency.size(); ++i) con.set(i, {consistency[i].data(), 32});
  counters_.receipts++;
  proof_base_[host] = cp.size;
  Send(route->second, schema::EncodeFrame(m));
}

void CollectorServer::Send(const std::string& route, const std::string& payload) {
  try {
    // Never blocks: an agent that stops reading (stuck, or hostile) fills its
    // queue, and a blocking send would stop the loop, and with it every
    // agent and the API (found by flooding the collector with Hellos while
    // reading nothing). Once the first part is queued, the rest is too.
    if (!router_->send(zmq::buffer(route), zmq::send_flags::sndmore | zmq::send_flags::dontwait)) {
      // Its queue is full: the reply is dropped. Receipts and grant sets are
      // asked for again (a receipt timeout starts a new session, whose Hello
      // gets the set), so nothing is lost but time.
      const uint64_t dropped = ++counters_.replies_dropped;
      if ((dropped & (dropped - 1)) == 0) {  // the 1st, 2nd, 4th, 8th...: not a flood of lines
        logging::Default().Warn("an agent is not reading its replies; dropping them",
                                {{"dropped", dropped}});
      }
      return;
    }
    router_->send(zmq::buffer(payload), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    // The peer is gone (EHOSTUNREACH) or its queue is full: it will reconnect
    // and its spool resends; nothing is lost by dropping this reply.
    for (auto it = routes_.begin(); it != routes_.end(); ++it) {
      if (it->second == route) {
        routes_.erase(it);
        break;
      }
    }
  }
}

void CollectorServer::PushGrantSet(const std::string& host) {
  auto route = routes_.find(host);
  if (route == routes_.end()) return;
  std::string signed_set;
  Status s = grants_->SignedSet(host, NowNs(), &signed_set);
  if (!s.ok()) {
    logging::Default().Error("cannot build a grant set", {{"host", host}, {"error", s.ToString()}});
    return;
  }
  capnp::MallocMessageBuilder m;
  auto env = m.initRoot<schema::Envelope>();
  s = schema::ReadCanonical<schema::SignedGrantSet>(signed_set, "grant set",
                                                    [&](schema::SignedGrantSet::Reader r) {
                                                      env.setGrantSet(r);
                                                      return Status::Ok();
                                                    });
  if (!s.ok()) return;
  counters_.grant_sets_sent++;
  Send(route->second, schema::EncodeFrame(m));
}

void CollectorServer::NoteApplied(const std::string& host, capnp::List<uint64_t>::Reader grant_ids,
                                  int64_t at_ns) {
  for (uint64_t id : grant_ids) effective_[id].emplace(host, at_ns);  // keeps the first
}

void CollectorServer::OnApplied(const std::string& host, schema::Applied::Reader applied) {
  counters_.applied_reports++;
  NoteApplied(host, applied.getGrantIds(), applied.getAppliedAtNs());
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(host);
  auto g = a.initGrantSetApplied();
  g.setVersion(applied.getVersion());
  g.setAppliedAtNs(applied.getAppliedAtNs());
  g.setGrantIds(applied.getGrantIds());
  g.setRejected(applied.getRejected());
  g.setRejectedSet(applied.getRejectedSet());
  // The same set applied again (a new session, a restart adopting the
  // pinned grants) changes nothing on the host: one record per change. The
  // time it took effect is the first report's.
  capnp::MallocMessageBuilder same;
  auto key = same.initRoot<schema::GrantSetApplied>();
  key.setVersion(applied.getVersion());
  key.setGrantIds(applied.getGrantIds());
  key.setRejected(applied.getRejected());
  key.setRejectedSet(applied.getRejectedSet());
  std::string canonical = schema::CanonicalBytes(key.asReader());
  auto last = applied_set_.find(host);
  if (last != applied_set_.end() && last->second == canonical) return;
  applied_set_[host] = canonical;
  RecordWorkflowAsync(schema::CanonicalBytes(a.asReader()), host);
}

void CollectorServer::OnAlarm(const std::string& host, schema::Alarm::Reader alarm) {
  counters_.alarms++;
  if (alarm.getKind() == "stalled") {
    logging::Default().Alert("ALARM from an agent: its delivery is stalled",
                             {{"host", host},
                              {"kind", "stalled"},
                              {"detail", alarm.getDetail().cStr()},
                              {"hint",
                               "its records wait in its spool; compare its log with ours "
                               "(receipts sent, duplicates counted)"}});
  } else {
    logging::Default().Alert("ALARM from an agent: a receipt did not hold",
                             {{"host", host},
                              {"kind", alarm.getKind().cStr()},
                              {"detail", alarm.getDetail().cStr()},
                              {"hint",
                               "the ledger may have been rolled back or rewritten; compare "
                               "its checkpoint with the agent's held one (recorded)"}});
  }
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(host);
  a.initAgentAlarm().setAlarm(alarm);
  RecordWorkflowAsync(schema::CanonicalBytes(a.asReader()), host);
}

void CollectorServer::Refuse(const std::string& what, const std::string& detail,
                             const std::string& route, const std::string& reply,
                             const std::string& peer) {
  RefusalTally& t = refusals_[what];
  t.count++;
  t.last = std::string(text::TruncateUtf8(detail, 1024));
  std::string from = peer.empty() && !route.empty() ? current_peer_ : peer;
  auto key = std::make_pair(std::string(text::TruncateUtf8(detail, 512)),
                            std::string(text::TruncateUtf8(from, 128)));
  auto it = t.distinct.find(key);
  if (it != t.distinct.end()) {
    it->second++;
  } else if (t.distinct.size() < kMaxRefusalDetails) {
    t.distinct.emplace(std::move(key), 1);
  } else {
    t.unlisted++;
  }
  if (!route.empty()) {
    capnp::MallocMessageBuilder m;
    m.initRoot<schema::Envelope>().setRefused(reply);
    Send(route, schema::EncodeFrame(m));
  }
}

void CollectorServer::FlushRefusals(bool force) {
  int64_t now = NowNs();
  if (!force && now - refusals_flushed_ns_ < 1'000'000'000) return;
  refusals_flushed_ns_ = now;
  for (auto& [what, t] : refusals_) {
    if (t.count == 0) continue;
    logging::Default().Warn(
        "refused input",
        {{"kind", what}, {"count", t.count}, {"distinct", t.distinct.size()}, {"last", t.last}});
    capnp::MallocMessageBuilder m;
    auto a = m.initRoot<schema::WorkflowAction>();
    a.setActor("collector");
    auto r = a.initRefusal();
    r.setWhat(what);
    r.setDetail(t.last);
    r.setCount(t.count);
    auto details = r.initDetails(static_cast<unsigned>(t.distinct.size()));
    unsigned i = 0;
    for (const auto& [key, n] : t.distinct) {
      details[i].setDetail(key.first);
      details[i].setPeer(key.second);
      details[i].setCount(n);
      ++i;
    }
    r.setUnlisted(t.unlisted);
    RecordWorkflowAsync(schema::CanonicalBytes(a.asReader()), "");
    t = RefusalTally{};
  }
}

namespace {
Status WorkflowEntry(const std::string& action, const std::string& host, int64_t at_ns,
                     ledger::EntryBatch* out) {
  ledger::LedgerRecord rec;
  rec.kind = ledger::RecordKind::kWorkflow;
  rec.host_id = host;
  rec.event_time_ns = rec.receive_time_ns = at_ns;
  rec.payload = action;
  std::string bytes;
  LATCH_RETURN_IF_ERROR(ledger::EncodeRecord(rec, &bytes));
  return out->Add(bytes);
}
}  // namespace

Status CollectorServer::RecordWorkflow(const std::string& action, const std::string& host,
                                       int64_t at_ns) {
  if (!ledger_health_->writable()) return Status::IoError(ledger_health_->reason());
  // Inside RecordAsOne: gathered into its batch, written when it ends.
  if (open_action_) return WorkflowEntry(action, host, at_ns, &open_action_->batch);
  ledger::EntryBatch batch;
  LATCH_RETURN_IF_ERROR(WorkflowEntry(action, host, at_ns, &batch));
  uint64_t index;
  // Grants wait for this record before they take effect: no batch-age delay.
  Status s = batcher_->Append(std::move(batch), &index, /*urgent=*/true);
  if (!s.ok() && ledger_->write_failed()) NoteLedgerFailure(s);
  return s;
}

void CollectorServer::RecordWorkflowAsync(const std::string& action, const std::string& host) {
  ledger::EntryBatch batch;
  Status s = WorkflowEntry(action, host, NowNs(), &batch);
  if (!s.ok()) {
    logging::Default().Error("workflow record refused", {{"error", s.ToString()}});
    return;
  }
  if (!ledger_health_->writable()) {
    KeepUnwritten({action, host});
    return;
  }
  pending_commits_++;
  batcher_->Submit(std::move(batch), [this, action, host](const Status& st, uint64_t) {
    // On the committer thread. A record that failed waits for the ledger to
    // take writes again (the loop notices the failure itself).
    if (!st.ok()) KeepUnwritten({action, host});
    pending_commits_--;
  });
}

Status CollectorServer::IssueGrant(const GrantSpec& spec, const std::string& actor, uint64_t* id,
                                   int64_t at_ns) {
  std::string signed_grant;
  LATCH_RETURN_IF_ERROR(grants_->Sign(spec, &signed_grant));
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(actor);
  LATCH_RETURN_IF_ERROR(schema::ReadCanonical<schema::SignedGrant>(
      signed_grant, "signed grant", [&](schema::SignedGrant::Reader g) {
        a.initGrantIssued().setGrant(g);
        return Status::Ok();
      }));
  // In the ledger first: a grant that is not recorded never takes effect.
  LATCH_RETURN_IF_ERROR(
      RecordWorkflow(schema::CanonicalBytes(a.asReader()), "", at_ns != 0 ? at_ns : NowNs()));
  std::vector<std::string> changed;
  Status s = grants_->ApplyIssued(signed_grant, id, &changed);
  if (!s.ok()) {
    // Recorded but not applicable: should not happen (Sign checked the id).
    logging::Default().Error("recorded grant not applied (should not happen)",
                             {{"error", s.ToString()}});
    return s;
  }
  if (open_action_) {
    // Pushed once the action's batch is durable (RecordAsOne).
    open_action_->issued.push_back(*id);
    open_action_->push.insert(changed.begin(), changed.end());
    return Status::Ok();
  }
  for (const std::string& h : changed) PushGrantSet(h);
  return Status::Ok();
}

Status CollectorServer::RevokeGrant(uint64_t id, const std::string& actor,
                                    const std::string& reason) {
  if (!grants_->Has(id)) return Status::NotFound("no live grant " + std::to_string(id));
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor(actor);
  auto r = a.initGrantRevoked();
  r.setGrantId(id);
  r.setReason(reason);
  // Recorded, then pushed: the book and every host's set follow the ledger
  // (the time it ended is the record's, as a replay finds it).
  const int64_t now = NowNs();
  LATCH_RETURN_IF_ERROR(RecordWorkflow(schema::CanonicalBytes(a.asReader()), "", now));
  std::vector<std::string> changed;
  EndGrant(id, "revoked", now, &changed);
  for (const std::string& h : changed) PushGrantSet(h);
  return Status::Ok();
}

namespace {
nlohmann::json RequestJson(const workflow::AccessRequest& r) {
  nlohmann::json reviews = nlohmann::json::array();
  for (const auto& v : r.reviews) {
    reviews.push_back({{"reviewer", v.reviewer}, {"approve", v.approve}, {"comment", v.comment}});
  }
  return {{"id", r.id},
          {"requester", r.requester},
          {"resource", r.resource},
          {"duration_ns", r.duration_ns},
          {"reason", r.reason},
          {"state", workflow::RequestStateName(r.state)},
          {"break_glass", r.break_glass},
          {"reviews", reviews}};
}
}  // namespace

// The workflow over the admin socket, until the HTTPS API carries it; the
// caller names the identity it acts as (the socket is root's only).
void CollectorServer::HandleWorkflowAdmin(const std::string& op, const nlohmann::json& j,
                                          nlohmann::json* reply) {
  int64_t now = NowNs();
  workflow::AccessRequest r;
  Status s;
  uint64_t grant_id = 0;
  if (op == "requests") {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& [id, req] : workflow_->requests().all()) list.push_back(RequestJson(req));
    *reply = {{"ok", true}, {"requests", list}};
    return;
  }
  std::string identity = j.at("identity").get<std::string>();
  if (op == "request") {
    int64_t duration = 0;
    s = workflow::ParseDuration(j.at("duration").get<std::string>(), &duration);
    if (s.ok()) {
      s = workflow_->Request(identity, j.at("resource").get<std::string>(), duration,
                             j.value("reason", ""), now, &r);
    }
  } else if (op == "review") {
    s = RecordAsOne([&] {
      return workflow_->Review(identity, j.at("request_id").get<uint64_t>(),
                               j.at("approve").get<bool>(), j.value("comment", ""), now, &r,
                               &grant_id);
    });
  } else {
    s = workflow_->Cancel(identity, j.at("request_id").get<uint64_t>(), now, &r);
  }
  if (!s.ok()) {
    *reply = {{"ok", false}, {"error", s.ToString()}};
    return;
  }
  *reply = {{"ok", true}, {"request", RequestJson(r)}};
  if (grant_id != 0) (*reply)["grant_id"] = grant_id;
}

void CollectorServer::HandleAdmin() {
  zmq::message_t req;
  if (!admin_->recv(req, zmq::recv_flags::dontwait)) return;
  nlohmann::json reply;
  try {
    auto j = nlohmann::json::parse(req.to_string());
    std::string op = j.at("op").get<std::string>();
    std::string actor = j.value("actor", "admin");
    if (op == "issue") {
      GrantSpec spec;
      spec.id = j.value("grant_id", uint64_t{0});
      for (auto& p : j.at("principals")) {
        GrantPrincipal gp;
        if (p.contains("uid")) {
          gp.kind = GrantPrincipal::Kind::kUid;
          gp.uid = p.at("uid").get<uint32_t>();
        } else if (p.contains("user")) {
          gp.kind = GrantPrincipal::Kind::kUserName;
          gp.name = p.at("user").get<std::string>();
        } else {
          gp.kind = GrantPrincipal::Kind::kCgroupPath;
          gp.name = p.at("cgroup").get<std::string>();
        }
        spec.principals.push_back(gp);
      }
      spec.resource_ids = j.at("resources").get<std::vector<uint32_t>>();
      spec.host_ids = j.at("hosts").get<std::vector<std::string>>();
      int64_t now = NowNs();
      spec.not_before_unix_ns = j.value("not_before_ns", now);
      if (j.contains("not_after_ns")) {
        spec.not_after_unix_ns = j.at("not_after_ns").get<int64_t>();
      } else {
        // Checked arithmetic: a huge duration_s must not wrap round to a
        // short (or past) grant.
        int64_t ns = 0;
        if (__builtin_mul_overflow(j.at("duration_s").get<int64_t>(), int64_t{1'000'000'000},
                                   &ns) ||
            __builtin_add_overflow(now, ns, &spec.not_after_unix_ns)) {
          throw std::out_of_range("duration_s is too large");
        }
      }
      spec.break_glass = j.value("break_glass", false);
      uint64_t id = 0;
      Status s = IssueGrant(spec, actor, &id);
      reply = s.ok() ? nlohmann::json{{"ok", true}, {"grant_id", id}}
                     : nlohmann::json{{"ok", false}, {"error", s.ToString()}};
    } else if (op == "revoke") {
      Status s = RevokeGrant(j.at("grant_id").get<uint64_t>(), actor, j.value("reason", ""));
      reply = s.ok() ? nlohmann::json{{"ok", true}}
                     : nlohmann::json{{"ok", false}, {"error", s.ToString()}};
    } else if (op == "request" || op == "review" || op == "cancel" || op == "requests") {
      HandleWorkflowAdmin(op, j, &reply);
    } else if (op == "status") {
      nlohmann::json hosts = nlohmann::json::array();
      for (auto& [h, r] : routes_) hosts.push_back(h);
      reply = {{"ok", true},
               {"ledger_size", ledger_->size()},
               {"ledger_writable", ledger_health_->writable()},
               {"ledger_reason", ledger_health_->reason()},
               {"connected", hosts},
               {"batches", counters_.batches.load()},
               {"records_appended", counters_.records_appended.load()},
               {"records_duplicate", counters_.records_duplicate.load()},
               {"records_out_of_order", counters_.records_out_of_order.load()},
               {"receipts", counters_.receipts.load()},
               {"refused_keys", counters_.refused_keys.load()},
               {"malformed_messages", counters_.malformed_messages.load()},
               {"oversized_messages", counters_.oversized_messages.load()},
               {"grant_sets_sent", counters_.grant_sets_sent.load()},
               {"applied_reports", counters_.applied_reports.load()},
               {"alarms", counters_.alarms.load()}};
    } else {
      reply = {{"ok", false}, {"error", "unknown op '" + op + "'"}};
    }
  } catch (const nlohmann::json::exception& e) {
    reply = {{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
  } catch (const std::exception& e) {
    reply = {{"ok", false}, {"error", std::string("bad request: ") + e.what()}};
  }
  std::string out = reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  admin_->send(zmq::buffer(out), zmq::send_flags::none);
}

}  // namespace latch::collector
