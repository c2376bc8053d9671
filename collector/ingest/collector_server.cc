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

#include "collector/grants/grant_keys.h"
#include "collector/ingest/ledger_storage.h"
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

// The loop's waits: each ZeroMQ socket's ZMQ_FD and the eventfd, a 200 ms
// tick, and the workers that answer the API's ledger and index reads.
struct CollectorServer::Waiters {
  explicit Waiters(boost::asio::io_context& io)
      : fds{Fd(io), Fd(io), Fd(io), Fd(io)}, tick(io), follow(io) {}
  using Fd = boost::asio::posix::stream_descriptor;
  std::array<Fd, 4> fds;  // router, ZAP, admin, eventfd
  boost::asio::steady_timer tick;
  boost::asio::steady_timer follow;  // a standby's next follow of the ledger
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
    follow.cancel();
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
  tlog::NoteSigner grant_key;
  std::vector<tlog::NoteVerifier> retired;
  LATCH_RETURN_IF_ERROR(LoadGrantKeys(dir, config.origin, &grant_key, &retired));
  LATCH_RETURN_IF_ERROR(OpenCollectorLedger(config, &s->ledger_, &s->shared_));
  s->loop_ = std::make_unique<Dispatcher>();
  s->waiters_ = std::make_unique<Waiters>(s->loop_->io());
  ledger::BatcherOptions bo;
  bo.max_batch_entries = config.batch_max_entries;
  bo.max_batch_age = std::chrono::milliseconds(config.batch_max_age_ms);
  bo.max_pending_entries = size_t{4} * config.batch_max_entries;
  s->recorder_ = std::make_unique<Recorder>(*s->ledger_, bo, dir, *s->loop_);
  CollectorServer* server = s.get();
  s->grants_ = std::make_unique<GrantService>(
      std::move(grant_key), std::move(retired), *s->recorder_,
      [server](const std::string& host) { server->channel_->PushGrantSet(host); });
  s->channel_ =
      std::make_unique<AgentChannel>(s->config_, s->enrolment_, *s->ledger_, *s->recorder_,
                                     *s->grants_, s->refusals_, *s->loop_, s->counters_);
  s->channel_->set_enrol_handler(
      [server](const AgentChannel::EnrolAsk& ask) { server->Enrol(ask); });
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
  LATCH_RETURN_IF_ERROR(s->StartWitnessing());
  // With a shared ledger, the sequencer if its lock is free; otherwise a
  // standby, which follows the ledger once it runs (standby.cc).
  if (s->shared_ != nullptr) LATCH_RETURN_IF_ERROR(s->ChooseRole());
  if (!config.policy.empty()) {
    // A standby loads the policy to answer reads by it; it is recorded
    // when this collector takes over.
    s->deferring_records_ = s->standby_.load();
    Status loaded = s->LoadPolicy().WithContext("policy");
    s->deferring_records_ = false;
    LATCH_RETURN_IF_ERROR(loaded);
    s->RefreshEventReaders();
  }
  s->wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->wake_fd_ < 0) return Status::FromErrno("eventfd", errno);
  *out = std::move(s);
  return Status::Ok();
}

CollectorServer::~CollectorServer() {
  api_.reset();
  if (waiters_) waiters_->Release();
  grants_.reset();
  recorder_.reset();  // commits what is pending; completions are then dropped
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

Status CollectorServer::LoadPolicy() {
  const int64_t now = NowNs();
  std::string record;
  LATCH_RETURN_IF_ERROR(workflow_->LoadPolicy(config_.policy, now, &record));
  // The hosts it names get their resources with their next sets (issue 16);
  // inside an action, once its record is durable.
  return schema::ReadCanonical<schema::WorkflowAction>(
      record, "policyLoaded record", [&](schema::WorkflowAction::Reader a) {
        grants_->ApplyPolicy(a.getPolicyLoaded(), now);
        return Status::Ok();
      });
}

void CollectorServer::RefreshEventReaders() {
  const workflow::Policy* policy = workflow_->policy();
  std::set<std::string> readers;
  if (policy != nullptr) {
    for (const auto& [name, identity] : policy->identities()) {
      if (policy->MayReadAllEvents(name)) readers.insert(name);
    }
  }
  MutexLock lock(event_readers_mu_);
  event_policy_loaded_ = policy != nullptr;
  event_readers_ = std::move(readers);
}

void CollectorServer::RequestPolicyReload() {
  reload_policy_ = true;
  reload_config_ = true;
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

void CollectorServer::Stop() {
  stopping_ = true;
  uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof(one));
}

std::string CollectorServer::GrantKeyInUseRecord() const {
  // Which key vouches for grants from now on, and which it replaced.
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  a.setActor("collector");
  auto k = a.initGrantKeyInUse();
  k.setGrantKey(grants_->key().verifier().ToString());
  const auto& retired = grants_->retired_keys();
  auto list = k.initRetiredGrantKeys(static_cast<unsigned>(retired.size()));
  for (unsigned i = 0; i < retired.size(); ++i) list.set(i, retired[i].ToString());
  return schema::CanonicalBytes(a.asReader());
}

Status CollectorServer::BindAdminSocket() {
  try {
    std::string admin_path = config_.data_dir + "/admin.sock";
    ::unlink(admin_path.c_str());
    admin_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::rep);
    admin_->set(zmq::sockopt::linger, 0);
    admin_->bind(admin_endpoint());
  } catch (const zmq::error_t& e) {
    return Status::IoError(std::string("binding the admin socket: ") + e.what());
  }
  return Status::Ok();
}

Status CollectorServer::BindAgentSockets() { return channel_->Bind(context_, curve_); }

Status CollectorServer::Run() {
  // Agents' connections spread over several ZeroMQ I/O threads: libzmq
  // cancels a connection's handshake timer by walking its I/O thread's
  // ordered map of timers, so with one thread 10,000 agents connecting at
  // once cost ~10^8 steps, handshakes ran past their 30 s limit and were
  // retried, and only 7,278 of 10,000 were welcomed in 120 s (fleet_bench).
  // Set before the first socket, which starts the threads.
  context_.set(zmq::ctxopt::io_threads, kAgentIoThreads);
  // A standby binds no agent endpoint and records nothing until it takes
  // over (standby.cc); its admin socket answers status and reads.
  if (!standby_) {
    LATCH_RETURN_IF_ERROR(recorder_->RecordNow(GrantKeyInUseRecord(), "", NowNs()));
    LATCH_RETURN_IF_ERROR(BindAgentSockets());
  }
  LATCH_RETURN_IF_ERROR(BindAdminSocket());
  index_->Start();  // catches up with the ledger in the background
  if (config_.api_enabled) LATCH_RETURN_IF_ERROR(StartApi());
  // Where clients reach this API, published while this one is the
  // sequencer so that a standby's refusal can name it.
  if (shared_ != nullptr && api_) shared_->Advertise(config_.ApiAdvertised(api_->port()));
  {
    std::string endpoints;
    for (const std::string& e : config_.endpoints) endpoints += (endpoints.empty() ? "" : ",") + e;
    logging::Default().Info(
        "serving", {{"role", standby_ ? "standby" : "sequencer"},
                    {"endpoints", standby_ ? std::string("none until it takes over") : endpoints},
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
  loop_->io().restart();
  // An action in flight, and what waits behind it, settles (briefly).
  for (int i = 0; i < 200 && acting_; ++i) loop_->io().run_for(std::chrono::milliseconds(10));
  loop_->Post([this] { WakeTails(); });  // each live tail ends (stopping_)
  if (api_) {
    loop_->io().run_for(std::chrono::milliseconds(100));
    api_->Stop();
  }
  waiters_->Release();
  loop_->Drain();
  if (!standby_) refusals_.Flush(*recorder_, NowNs(), /*force=*/true);
  index_->Stop();
  if (ledger_->size() != snapshot_size_) SaveSnapshot("stop");
  if (size_t n = recorder_->unwritten(); n > 0) {
    logging::Default().Error("stopping with records of our own that the ledger refused",
                             {{"records", n}, {"reason", recorder_->reason()}});
  }
  return loop_status_;
}

void CollectorServer::PostToWorker(std::function<void()> work) {
  boost::asio::post(waiters_->workers, std::move(work));
}

void CollectorServer::WatchSockets() {
  waiters_->fds[2].assign(admin_->get(zmq::sockopt::fd));
  waiters_->fds[3].assign(wake_fd_);
  Watch(2);
  Watch(3);
  if (!standby_) WatchAgentSockets();
  Tick();
}

void CollectorServer::WatchAgentSockets() {
  waiters_->fds[0].assign(channel_->router_fd());
  waiters_->fds[1].assign(channel_->zap_fd());
  Watch(0);
  Watch(1);
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

void CollectorServer::FollowAt(std::chrono::steady_clock::time_point at) {
  waiters_->follow.expires_at(at);
  waiters_->follow.async_wait([this](const boost::system::error_code& ec) {
    if (!ec && standby_) FollowLedger();
  });
}

void CollectorServer::Turn() {
  LATCH_ASSERT_ON_LOOP(*loop_);
  if (stopping_) return loop_->Exit();
  bool more = false;
  try {
    uint64_t signalled;
    (void)!::read(wake_fd_, &signalled, sizeof(signalled));
    RunQueuedCalls();
    if (!standby_) more = channel_->Turn();
    if (admin_->get(zmq::sockopt::events) & ZMQ_POLLIN) HandleAdmin();
    more = more || (!admin_busy_ && (admin_->get(zmq::sockopt::events) & ZMQ_POLLIN));
  } catch (const zmq::error_t& e) {
    if (e.num() != EINTR) {
      loop_status_ = Status::IoError(std::string("collector loop: ") + e.what());
      stopping_ = true;
      return loop_->Exit();
    }
  }
  Maintain();
  // What is left is taken on the next turn, after what else is queued.
  if (more) PostTurn();
}

void CollectorServer::PostTurn() {
  if (turn_posted_) return;
  turn_posted_ = true;
  loop_->Post([this] {
    turn_posted_ = false;
    Turn();
  });
}

void CollectorServer::Maintain() {
  if (standby_) return MaintainStandby();
  if (ledger_->superseded()) {
    // Another collector is the sequencer (this one was paused or cut off
    // while it took over): nothing more may be acknowledged here. Exiting
    // non-zero lets the service manager start this one again, as a standby.
    loop_status_ = Status::FailedPrecondition(
        "stepped down: another collector moved the ledger on and is the sequencer now");
    stopping_ = true;
    return loop_->Exit();
  }
  refusals_.Flush(*recorder_, NowNs(), /*force=*/false);
  // Reloads are recorded before they act: while the ledger refuses writes
  // they wait (the request stays), rather than fail and retry every turn.
  if (recorder_->writable() && reload_policy_.exchange(false) && !config_.policy.empty()) {
    // An action: its policyLoaded record lands before the policy rules.
    auto loaded = std::make_shared<Status>();
    Act([this, loaded] { return *loaded = LoadPolicy(); },
        [this, loaded](const Status& s) {
          RefreshEventReaders();
          if (!s.ok() && loaded->ok()) {
            // Loaded, but its record did not land (the ledger refuses
            // writes): loaded and recorded again at a later turn.
            reload_policy_ = true;
          }
          if (s.ok()) {
            logging::Default().Info("policy reloaded", {{"sha256", workflow_->policy()->hash()}});
          } else {
            logging::Default().Error(
                "policy reload refused; the running policy stays",
                {{"error", s.ToString()}, {"hint", "fix the file named and send SIGHUP again"}});
          }
        });
  }
  if (recorder_->writable() && reload_config_.exchange(false)) ReloadConfig();
  if (recorder_->Maintain()) channel_->AskForFailedAppends();
  if (recorder_->writable()) ExpireDue();
  channel_->RecordSilentAgents();
  MaintainWitnessing();
  WakeTails();
  if (uint64_t size = ledger_->size(); size != index_notified_size_) {
    index_notified_size_ = size;
    index_->Notify();
  }
  if (ledger_->size() - snapshot_size_ >= config_.snapshot_every_entries && recorder_->writable()) {
    SaveSnapshot("periodic");
  }
}

}  // namespace latch::collector
