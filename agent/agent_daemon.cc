#include "agent/agent_daemon.h"

#include <bpf/bpf.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "agent/boot_clock.h"
#include "agent/kernel_fs.h"
#include "agent/spool_sink.h"
#include "lib/storage/append_file.h"
#include "lib/tlog/cosignature.h"
#include "schemas/activity_record.h"
#include "schemas/canonical.h"
#include "schemas/curve_key.h"
#include "schemas/host_policy.h"

namespace latch::agent {

namespace {
// The last signed grant set that carried a host policy, in the state
// directory (issue 16), and the most of it a start reads.
constexpr const char* kKeptSetFile = "grant-set";
constexpr size_t kMaxKeptSetBytes = size_t{64} << 20;
}  // namespace
namespace {

// Records handed to the sink per ring read before it is flushed and the ring
// released: bounds the loss window of a crash to nothing and the latency of
// a record to one flush.
constexpr size_t kRingBatch = 4096;

}  // namespace

AgentDaemon::AgentDaemon(AgentConfig config, std::ostream& records, logging::Logger& log)
    : config_(std::move(config)), records_(records), log_(log) {
  if (const char* n = std::getenv("LATCH_AGENT_TEST_DIE_BEFORE_RING_RELEASE")) {
    die_before_release_after_ = std::strtoull(n, nullptr, 10);
  }
}

AgentDaemon::~AgentDaemon() = default;

Status AgentDaemon::Start() {
  LATCH_RETURN_IF_ERROR(ResolveAgentDefaults(&config_).WithContext("cgroup v2"));
  bool mounted = false;
  LATCH_RETURN_IF_ERROR(EnsureBpffs(config_.pin_dir, &mounted));
  if (mounted) log_.Info("mounted bpffs", {{"pin_dir", config_.pin_dir}});

  // Records wake us once an eighth of a ring waits; below that the drain
  // timer collects them (drain_interval_ms: the bound on their delay).
  uint32_t wakeup = config_.drain_interval_ms == 0 ? 0 : config_.ring_buffer_bytes / 8;
  config_.activity.wakeup_bytes =
      config_.drain_interval_ms == 0 ? 0 : config_.activity.ring_bytes / 8;
  LATCH_RETURN_IF_ERROR(Guard::Install({config_.pin_dir, config_.cgroup, config_.ring_buffer_bytes,
                                        config_.cut_established_connections, wakeup},
                                       &guard_));
  enforcer_ = std::make_unique<BpfEnforcer>(*guard_);
  LATCH_RETURN_IF_ERROR(
      ArgvRedactor::Create(config_.redaction, &redactor_).WithContext("activity redaction"));
  if (config_.collector.enabled) {
    LATCH_RETURN_IF_ERROR(StartCollectorLink());  // reads the kept host policy too
  } else {
    sink_ = std::make_unique<JsonLinesSink>(records_, config_.host_id);
  }
  sink_->set_redactor(redactor_.get());
  sink_->set_namer(&namer_);
  // The collector's signed resources win over the local list (issue 16); a
  // first start before the collector is reached enforces the local one.
  const std::vector<resource::Resource>& resources =
      host_policy_ ? host_policy_->resources : config_.resources;
  LATCH_RETURN_IF_ERROR(enforcer_->SetResources(resources).WithContext("resources"));
  for (const std::string& warning : resource::SingleLoopbackWarnings(resources)) {
    log_.Warn("a resource guards one door of many", {{"detail", warning}});
  }
  log_.Info(guard_->adopted() ? "guard adopted" : "guard attached",
            {{"cgroup", config_.cgroup},
             {"pin_dir", config_.pin_dir},
             {"resources", resources.size()},
             {"resources_from", host_policy_ ? "the collector's signed policy (kept)"
                                             : "this agent's configuration"}});
  if (host_policy_ && !config_.resources.empty() &&
      !resource::SameEnforcement(config_.resources, host_policy_->resources)) {
    log_.Alert(
        "the local [[resource]] list differs from the collector's; the collector's is "
        "enforced",
        {{"difference", resource::DescribeDifference(config_.resources, host_policy_->resources)}});
  }
  LATCH_RETURN_IF_ERROR(RingReader::ForDecisionEvents(
      guard_->events_fd(), [this](const latch_decision_event& e) { sink_->AddEvent(e); },
      &reader_));
  int fd = ::dup(reader_->epoll_fd());
  if (fd < 0) return Status::FromErrno("dup ring buffer epoll fd", errno);
  ring_fd_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd);
  if (config_.activity.mode != WatchMode::kOff) {
    // Enforcement never waits on capture: a kernel that cannot run it (too
    // old for bpf_loop, no tracefs, ...) gets the guard without it, said
    // loudly and shown in /metrics.
    Status s = StartActivityCapture();
    if (!s.ok()) {
      activity_unavailable_ = true;
      activity_fd_.reset();
      activity_reader_.reset();
      activity_.reset();
      // On the record too: an auditor must not read "no activity" where
      // nothing was being captured.
      Status r = sink_->AddLoss(LossKind::kActivityCaptureUnavailable, 0, 0, "", s.ToString());
      if (!r.ok())
        log_.Error("recording that activity capture is unavailable", {{"error", r.ToString()}});
      log_.Alert("activity capture unavailable; enforcement goes on without it",
                 {{"error", s.ToString()},
                  {"hint",
                   "capture needs a kernel with BTF and bpf_loop (5.17+) and tracefs; set "
                   "[activity] watch = \"off\" to run without it knowingly"}});
    }
  }
  // Both rings' readers exist now: release what the spool already has.
  if (spool_) LATCH_RETURN_IF_ERROR(SkipRecordsAlreadySpooled());
  if (!config_.metrics_listen.empty()) {
    LATCH_RETURN_IF_ERROR(MetricsServer::Start(
        io_, config_.metrics_listen, [this] { return MetricsText(); }, &metrics_));
    // The port as bound (the configuration may say 0: any free one).
    std::string host = config_.metrics_listen.substr(0, config_.metrics_listen.rfind(':'));
    log_.Info("metrics served",
              {{"url", "http://" + host + ":" + std::to_string(metrics_->port()) + "/metrics"}});
  }
  if (config_.activity.mode == WatchMode::kOff) {
    // Turned off: whatever an earlier run left pinned stops too.
    LATCH_RETURN_IF_ERROR(ActivityCapture::Uninstall(config_.activity.pin_dir)
                              .WithContext("removing activity capture"));
  }
  return Status::Ok();
}

Status AgentDaemon::StartActivityCapture() {
  LATCH_RETURN_IF_ERROR(ActivityCapture::Start(config_.activity, &activity_));
  if (activity_->mounted_tracefs()) log_.Info("mounted tracefs", {{"at", "/sys/kernel/tracing"}});
  if (activity_->replaced_links() > 0) {
    log_.Warn("activity capture upgraded; each replaced program was briefly detached",
              {{"programs", activity_->replaced_links()}});
  }
  LATCH_RETURN_IF_ERROR(RingReader::Create(
      activity_->ring_fd(), [this](std::string_view raw) { return sink_->AddActivity(raw); },
      &activity_reader_));
  int fd = ::dup(activity_reader_->epoll_fd());
  if (fd < 0) return Status::FromErrno("dup activity ring epoll fd", errno);
  activity_fd_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd);
  SyncWatched();
  const ActivityOptions& a = config_.activity;
  log_.Info(activity_->adopted_links() > 0 ? "activity capture adopted" : "activity capture on",
            {{"watching", WatchModeName(a.mode)},
             {"paths", a.path_prefixes.size()},
             {"throttle_events", a.throttle_events},
             {"throttle_window_ms", a.throttle_window_ms}});
  return Status::Ok();
}

std::string AgentDaemon::MetricsText() {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto value = [&](const std::string& series, uint64_t v) {
    out += series + " " + std::to_string(v) + "\n";
  };
  std::array<uint64_t, LATCH_CTR_COUNT> g{};
  if (guard_->ReadCounters(&g).ok()) {
    metric("latch_agent_decisions_total", "counter",
           "Decisions on protected destinations in the kernel, by verdict.");
    value("latch_agent_decisions_total{verdict=\"allow\"}", g[LATCH_CTR_ALLOW_GRANT]);
    value("latch_agent_decisions_total{verdict=\"deny\"}", g[LATCH_CTR_DENY]);
    value("latch_agent_decisions_total{verdict=\"audit\"}", g[LATCH_CTR_AUDIT_ALLOW]);
    metric("latch_agent_cut_packets_total", "counter",
           "Packets dropped on connections whose grant ended.");
    value("latch_agent_cut_packets_total", g[LATCH_CTR_CUT_PACKETS]);
    metric("latch_agent_cut_connections_total", "counter",
           "Connections cut at their grant's end (each also a decision record, verdict cut).");
    value("latch_agent_cut_connections_total", g[LATCH_CTR_CUT_CONNECTIONS]);
  }
  metric("latch_agent_losses_total", "counter", "Records lost, counted instead, by kind.");
  value("latch_agent_losses_total{kind=\"ring_buffer_full\"}", g[LATCH_CTR_RINGBUF_FULL]);
  value("latch_agent_losses_total{kind=\"decode_failure\"}",
        reader_->malformed() + (activity_reader_ ? activity_reader_->malformed() : 0));
  if (auto* spool_sink = dynamic_cast<SpoolSink*>(sink_.get())) {
    value("latch_agent_losses_total{kind=\"spool_full\"}", spool_sink->spool_full_total());
    value("latch_agent_losses_total{kind=\"spool_corrupt\"}", spool_->corrupt_records_lost());
  }
  metric("latch_agent_guard_intact", "gauge",
         "1 while every guard program is attached and pinned as installed.");
  value("latch_agent_guard_intact", guard_intact_ ? 1 : 0);
  metric("latch_agent_guard_detached_total", "counter",
         "Times the guard was found detached or replaced behind the agent's back.");
  value("latch_agent_guard_detached_total", guard_detached_total_);
  metric("latch_agent_activity_args_redacted_total", "counter",
         "Exec records whose command line had secrets replaced by [REDACTED].");
  value("latch_agent_activity_args_redacted_total", sink_->args_redacted());
  std::array<uint64_t, LATCH_ACT_CTR_COUNT> a{};
  if (activity_ && activity_->ReadCounters(&a).ok()) {
    value("latch_agent_losses_total{kind=\"activity_ring_buffer_full\"}", [&] {
      uint64_t n = 0;
      for (uint32_t k = 1; k < LATCH_ACT_KINDS; ++k) n += a[LATCH_ACT_CTR_LOST + k];
      return n;
    }());
    metric("latch_agent_activity_records_total", "counter",
           "Activity records sent by the kernel, by kind.");
    for (uint32_t k = 1; k < LATCH_ACT_KINDS; ++k) {
      value(std::string("latch_agent_activity_records_total{kind=\"") +
                record::ActivityKindName(k) + "\"}",
            a[LATCH_ACT_CTR_SUBMITTED + k]);
    }
    metric("latch_agent_activity_held_back_total", "counter",
           "Activity records held back by throttling (counted in summaries), by kind.");
    for (uint32_t k = 1; k < LATCH_ACT_KINDS; ++k) {
      value(std::string("latch_agent_activity_held_back_total{kind=\"") +
                record::ActivityKindName(k) + "\"}",
            a[LATCH_ACT_CTR_SUPPRESSED + k]);
    }
  }
  if (spool_) {
    metric("latch_agent_spool_records", "gauge", "Records spooled and not yet acknowledged.");
    value("latch_agent_spool_records", spool_->unacknowledged());
    metric("latch_agent_spool_bytes", "gauge", "Bytes in the spool.");
    value("latch_agent_spool_bytes", spool_->bytes());
    metric("latch_agent_spool_writable", "gauge",
           "1 while the spool's disk takes writes; 0: full or failing, records wait and overflow "
           "is counted as lost.");
    value("latch_agent_spool_writable", spool_writable_ ? 1 : 0);
    metric("latch_agent_spool_write_failures_total", "counter",
           "Times the spool's disk stopped taking writes.");
    value("latch_agent_spool_write_failures_total", spool_write_failures_);
  }
  if (link_) {
    const CollectorLinkCounters& c = link_->counters();
    metric("latch_agent_receipts_verified_total", "counter",
           "Collector receipts checked and accepted.");
    value("latch_agent_receipts_verified_total", c.receipts);
    metric("latch_agent_receipts_rejected_total", "counter",
           "Receipts that failed their checks (each an alarm).");
    value("latch_agent_receipts_rejected_total", c.receipts_rejected);
    metric("latch_agent_collector_sessions_total", "counter",
           "Sessions started with the collector (connections, and resends after a missing "
           "receipt).");
    value("latch_agent_collector_sessions_total", c.sessions);
    metric("latch_agent_records_sent_total", "counter",
           "Records sent to the collector, resends included (against records spooled: the "
           "resend volume).");
    value("latch_agent_records_sent_total", c.records_sent);
    metric("latch_agent_records_acknowledged_total", "counter",
           "Records a verified receipt let the spool forget (against records sent: the "
           "resends).");
    value("latch_agent_records_acknowledged_total", c.records_acknowledged);
    metric("latch_agent_receipts_stale_total", "counter",
           "Receipts of an earlier session, not used for the checkpoint.");
    value("latch_agent_receipts_stale_total", c.receipts_stale);
    metric("latch_agent_welcomes_missed_total", "counter",
           "Sessions that began sending without the collector's answer to their hello "
           "(an older collector, or a lost message).");
    value("latch_agent_welcomes_missed_total", c.welcomes_missed);
    metric("latch_agent_receipt_timeout_seconds", "gauge",
           "The receipt timeout now in force, learnt from the link's round trips.");
    char seconds[32];
    std::snprintf(seconds, sizeof(seconds), "%.3f",
                  static_cast<double>(link_->receipt_timeout().count()) / 1000.0);
    out += std::string("latch_agent_receipt_timeout_seconds ") + seconds + "\n";
    metric("latch_agent_grant_sets_total", "counter", "Signed grant sets received.");
    value("latch_agent_grant_sets_total", c.grant_sets);
    metric("latch_agent_grant_set_version", "gauge", "The grant set the kernel holds.");
    value("latch_agent_grant_set_version", applier_->version());
    metric("latch_agent_checkpoint_size", "gauge", "Size of the last checkpoint verified.");
    value("latch_agent_checkpoint_size", witness_->size());
  }
  metric("latch_agent_activity_capture_up", "gauge",
         "1 while activity capture runs; 0 when configured but unavailable (see the log).");
  if (config_.activity.mode != WatchMode::kOff) {
    value("latch_agent_activity_capture_up", activity_unavailable_ ? 0 : 1);
  }
  std::vector<KernelGrant> grants;
  if (enforcer_->ListGrants(&grants).ok()) {
    metric("latch_agent_grants", "gauge", "Grants the kernel holds (live or not yet removed).");
    value("latch_agent_grants", grants.size());
  }
  return out;
}

void AgentDaemon::SyncWatched() {
  if (!activity_) return;
  std::vector<KernelGrant> grants;
  Status s = enforcer_->ListGrants(&grants);
  if (s.ok()) s = activity_->SetWatched(WatchEntriesFor(grants));
  if (!s.ok()) log_.Error("updating who activity capture watches", {{"error", s.ToString()}});
}

Status AgentDaemon::StartCollectorLink() {
  const CollectorSettings& c = config_.collector;
  std::filesystem::create_directories(c.state_dir);
  ::chmod(c.state_dir.c_str(), 0700);
  schema::CurveKeyPair key;
  LATCH_RETURN_IF_ERROR(schema::LoadOrCreateCurveKey(c.state_dir + "/agent.key", &key));
  std::string boot(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(boot.data()), 16) != 1) {
    return Status::FailedPrecondition("no randomness for the agent's boot id");
  }
  SpoolOptions so;
  so.dir = c.state_dir + "/spool";
  so.max_bytes = c.spool_max_bytes;
  LATCH_RETURN_IF_ERROR(Spool::Open(so, boot, &spool_));
  tlog::NoteVerifier ledger_key;
  LATCH_RETURN_IF_ERROR(tlog::NoteVerifier::Parse(c.ledger_key, &ledger_key));
  std::vector<tlog::NoteVerifier> grant_keys(c.grant_keys.size());
  for (size_t i = 0; i < c.grant_keys.size(); ++i) {
    LATCH_RETURN_IF_ERROR(tlog::NoteVerifier::Parse(c.grant_keys[i], &grant_keys[i]));
  }
  LATCH_RETURN_IF_ERROR(
      CheckpointWitness::Open(c.state_dir + "/checkpoint", ledger_key, &witness_));
  latch_agent_state state{};
  LATCH_RETURN_IF_ERROR(ReadState(&state));
  std::string cgroup_root;
  LATCH_RETURN_IF_ERROR(FindCgroup2Mount(&cgroup_root));
  watching_ = std::make_unique<WatchingEnforcer>(*enforcer_, [this](const Grant& g) {
    if (!activity_) return;
    WatchEntry e{g.principal, g.grant_id, WallToBootNs(g.not_before_unix_ns),
                 WallToBootNs(g.not_after_unix_ns)};
    bool was_attached = activity_->syscall_programs_attached();
    auto started = std::chrono::steady_clock::now();
    Status s = activity_->Watch(e);
    if (s.ok() && !was_attached) {  // this much later the grant reaches the kernel
      log_.Info("activity capture's syscall programs attached ahead of a grant",
                {{"grant", g.grant_id},
                 {"duration_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                                     std::chrono::steady_clock::now() - started)
                                     .count()}});
    }
    if (!s.ok()) log_.Error("watching a grant", {{"grant", g.grant_id}, {"error", s.ToString()}});
  });
  applier_ =
      std::make_unique<GrantSetApplier>(*watching_, schema::GrantKeys(std::move(grant_keys)),
                                        config_.host_id, cgroup_root, state.grant_set_version);
  // spool_full losses fold into one record per counters interval.
  sink_ =
      std::make_unique<SpoolSink>(*spool_, std::chrono::milliseconds(config_.counters_interval_ms));
  CollectorLinkOptions lo;
  lo.endpoints = c.endpoints;
  lo.server_public_key = c.server_public_key;
  lo.key = key;
  lo.host_id = config_.host_id;
  lo.batch_records = c.batch_records;
  for (const std::string& k : c.witness_keys) {
    tlog::CosignatureVerifier v;
    LATCH_RETURN_IF_ERROR(tlog::CosignatureVerifier::Parse(k, &v).WithContext("witness_keys"));
    lo.witnessing.witnesses.push_back(v);
  }
  lo.witnessing.quorum = c.witness_quorum == 0 ? c.witness_keys.size() : c.witness_quorum;
  lo.witnessing.bound = std::chrono::milliseconds(c.witnessed_within_ms);
  link_ = std::make_unique<CollectorLink>(
      io_, lo, *spool_, *witness_, [this] { return applier_->version(); },
      [this](schema::SignedGrantSet::Reader set) { OnGrantSet(set); }, log_);
  LATCH_RETURN_IF_ERROR(UseKeptHostPolicy());
  log_.Info("spool opened", {{"dir", so.dir},
                             {"unacknowledged", spool_->unacknowledged()},
                             {"checkpoint_size", witness_->size()},
                             {"grant_set_version", state.grant_set_version},
                             {"key", key.public_z85}});
  return link_->Start();
}

Status AgentDaemon::Run() {
  signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (!ec) log_.Info("stopping; the guard stays attached", {{"signal", sig}});
    Stop();
  });
  WaitForRecords(ring_fd_.get());
  if (activity_fd_) WaitForRecords(activity_fd_.get());
  ScheduleCounters();
  ScheduleGuardCheck();
  ScheduleDrain();
  // Guard attached or adopted, resources set, capture on: ready (a no-op
  // unless systemd started us with Type=notify).
  sd_notify(0, "READY=1\nSTATUS=enforcing");
  io_.run();
  sd_notify(0, "STOPPING=1");
  // What arrived before the stop goes to the sink; with a spool it is sent
  // at the next start.
  Status s = DrainRing();
  if (auto* spool_sink = dynamic_cast<SpoolSink*>(sink_.get()); s.ok() && spool_sink) {
    s = spool_sink->FlushPendingLosses();  // no loss count left behind in memory
  }
  if (!s.ok() && failure_.ok()) failure_ = s;
  if (spool_) {
    // What receipts acknowledged, so the next start does not send it again.
    Status saved = spool_->SaveAcknowledged();
    if (!saved.ok()) log_.Warn("saving spool acknowledgements", {{"error", saved.ToString()}});
  }
  return failure_;
}

void AgentDaemon::Stop() { io_.stop(); }

// An agent killed after spooling events and before releasing them in the
// ring finds them there again. The spool's mark says how far it had read, so
// the restarted agent releases those records instead of spooling them twice
// (promise 2); without a usable mark they are spooled again, never lost.
Status AgentDaemon::SkipRecordsAlreadySpooled() {
  const std::string& mark = spool_->recovered_mark();
  if (mark.empty()) return Status::Ok();
  std::vector<RingPosition> marks;
  if (!DecodeRingMarks(mark, &marks)) {
    log_.Warn(
        "the spool's ring mark does not decode; unreleased ring records will be sent "
        "again (the collector drops them as duplicates)");
    return Status::Ok();
  }
  uint64_t skipped = 0;
  for (const RingPosition& to : marks) {
    // Each reader takes only positions in its own ring.
    for (RingReader* r : {reader_.get(), activity_reader_.get()}) {
      if (r == nullptr) continue;
      uint64_t n = 0;
      Status s = r->SkipTo(to, &n);
      if (!s.ok()) {
        // Should not happen: the mark names this ring but no record boundary in it.
        log_.Warn("unreleased ring records will be sent again", {{"error", s.ToString()}});
      }
      skipped += n;
    }
  }
  if (skipped > 0) {
    log_.Info("released the ring records the previous run had already spooled",
              {{"records", skipped}});
  }
  return Status::Ok();
}

Status AgentDaemon::DrainRing() {
  int handled = 0, activity = 0;
  do {
    LATCH_RETURN_IF_ERROR(reader_->Read(kRingBatch, &handled));
    if (activity_reader_) LATCH_RETURN_IF_ERROR(activity_reader_->Read(kRingBatch, &activity));
    // The sink first, then the ring: a crash between the two neither loses
    // nor (thanks to the mark) duplicates.
    if (spool_) {
      std::vector<RingPosition> at = {reader_->read_position()};
      if (activity_reader_) at.push_back(activity_reader_->read_position());
      spool_->SetMark(EncodeRingMarks(at));
    }
    bool durable = false;
    LATCH_RETURN_IF_ERROR(FlushSink(&durable));
    if (!durable) break;  // the rings keep what was read until the disk takes it
    if (handled > 0 && die_before_release_after_ != 0 &&
        ++event_flushes_ == die_before_release_after_) {
      log_.Warn("dying before releasing the ring, as the test asked");
      ::_exit(9);
    }
    reader_->Commit();
    if (activity_reader_) activity_reader_->Commit();
  } while (static_cast<size_t>(handled) == kRingBatch ||
           static_cast<size_t>(activity) == kRingBatch);
  if (link_) link_->Pump();
  return Status::Ok();
}

Status AgentDaemon::FlushSink(bool* durable) {
  Status s = sink_->Flush();
  *durable = s.ok();
  if (s.ok()) {
    if (!spool_writable_) {
      spool_writable_ = true;
      log_.Info("spool writable again; delivery resumes", {{"dir", spool_->dir()}});
      std::vector<boost::asio::posix::stream_descriptor*> paused;
      paused.swap(paused_rings_);
      for (auto* ring : paused) WaitForRecords(ring);
    }
    return s;
  }
  if (!spool_ || s.code() != Status::Code::kResourceExhausted) return s;
  if (spool_writable_) {
    spool_writable_ = false;
    ++spool_write_failures_;
    log_.Alert(
        "spool cannot write; enforcement goes on, records wait in the kernel's ring and "
        "in memory, and what does not fit is counted as lost",
        {{"dir", spool_->dir()},
         {"error", s.ToString()},
         {"hint", "free space on the disk under state_dir; the agent resumes by itself"}});
  }
  return Status::Ok();
}

// Either ring readable: both are drained (one flush, one mark for both).
void AgentDaemon::WaitForRecords(boost::asio::posix::stream_descriptor* ring) {
  ring->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                   [this, ring](const boost::system::error_code& ec) {
                     if (ec) return;
                     Status s = DrainRing();
                     if (!s.ok()) {
                       failure_ = s;
                       Stop();
                       return;
                     }
                     // An unreleased ring stays readable: waiting on it
                     // would spin. The counters tick retries until the
                     // spool writes again, then waits resume.
                     if (!spool_writable_) {
                       paused_rings_.push_back(ring);
                       return;
                     }
                     WaitForRecords(ring);
                   });
}

void AgentDaemon::ScheduleCounters() {
  counters_timer_.expires_after(std::chrono::milliseconds(config_.counters_interval_ms));
  counters_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    Status s = ReportNewLosses();
    if (!s.ok()) log_.Error("reporting losses", {{"error", s.ToString()}});
    SyncWatched();  // grants applied directly, or one that started or ended
    ScheduleCounters();
  });
}

void AgentDaemon::ScheduleDrain() {
  if (config_.drain_interval_ms == 0) return;
  drain_timer_.expires_after(std::chrono::milliseconds(config_.drain_interval_ms));
  drain_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    // While the spool cannot write, the counters tick retries (see FlushSink).
    if (spool_writable_) {
      Status s = DrainRing();
      if (!s.ok()) {
        failure_ = s;
        Stop();
        return;
      }
    }
    ScheduleDrain();
  });
}

void AgentDaemon::ScheduleGuardCheck() {
  if (config_.guard_check_ms == 0) return;
  guard_timer_.expires_after(std::chrono::milliseconds(config_.guard_check_ms));
  guard_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    CheckGuard();
    ScheduleGuardCheck();
  });
}

void AgentDaemon::CheckGuard() {
  std::vector<std::string> problems;
  Status s = guard_->Verify(&problems);
  if (!s.ok()) {
    log_.Error("checking the guard", {{"error", s.ToString()}});
    return;
  }
  if (problems.empty()) {
    guard_intact_ = true;
    guard_problems_.clear();
    return;
  }
  bool news = problems != guard_problems_;
  bool reattached = false;
  std::string error;
  if (config_.reattach_guard) {
    Status r = guard_->Repair();
    std::vector<std::string> after;
    if (r.ok()) r = guard_->Verify(&after);
    reattached = r.ok() && after.empty();
    if (!reattached) {
      std::string still;
      for (const auto& p : after) still += (still.empty() ? "" : ", ") + p;
      error = r.ok() ? "still: " + still : r.ToString();
    }
  }
  guard_intact_ = reattached;
  // The same incident seen again (re-attaching off or failing) is not news.
  guard_problems_ = reattached ? std::vector<std::string>{} : problems;
  if (!news && !reattached) return;
  ++guard_detached_total_;
  std::string missing;
  for (const auto& p : problems) missing += (missing.empty() ? "" : ", ") + p;
  log_.Alert("the guard was detached or replaced behind the agent's back",
             {{"missing", missing},
              {"reattached", reattached ? "yes" : "no"},
              {"error", error},
              {"hint", reattached ? "root on this host did this; find out who (auth logs)"
                                  : "enforcement is off for what is missing; "
                                    "restart latch-agent, and find out who did this"}});
  s = sink_->AddGuardEvent(problems, reattached, error);
  bool durable = false;
  if (s.ok()) s = FlushSink(&durable);
  if (!s.ok()) log_.Error("recording the detached guard", {{"error", s.ToString()}});
  if (link_) link_->Pump();
}

Status AgentDaemon::ReadState(latch_agent_state* state) {
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(guard_->agent_state_fd(), &zero, state) != 0) {
    return Status::FromErrno("reading agent state", errno);
  }
  return Status::Ok();
}

Status AgentDaemon::WriteState(const latch_agent_state& state) {
  uint32_t zero = 0;
  if (bpf_map_update_elem(guard_->agent_state_fd(), &zero, &state, BPF_ANY) != 0) {
    return Status::FromErrno("writing agent state", errno);
  }
  return Status::Ok();
}

// Losses since the last report, from the kernel's totals and the totals
// already reported (kept in the pinned agent-state map, so a restart neither
// repeats nor forgets any).
Status AgentDaemon::ReportNewLosses() {
  std::array<uint64_t, LATCH_CTR_COUNT> totals{};
  LATCH_RETURN_IF_ERROR(guard_->ReadCounters(&totals));
  latch_agent_state state{};
  LATCH_RETURN_IF_ERROR(ReadState(&state));
  // Loss records already added but not yet on disk (the spool's disk refused
  // them) count as reported in this process; the pinned totals follow once
  // they are durable, so a crash meanwhile reports them again, never twice.
  if (unwritten_reported_) {
    std::memcpy(state.reported, unwritten_reported_->data(), sizeof(state.reported));
  }
  // Drain first, so a loss record follows the events that came before it.
  LATCH_RETURN_IF_ERROR(DrainRing());
  bool changed = false;
  uint64_t total = totals[LATCH_CTR_RINGBUF_FULL];
  uint64_t reported = state.reported[LATCH_CTR_RINGBUF_FULL];
  if (total > reported && sink_->AddLoss(LossKind::kRingBufferFull, total - reported, total).ok()) {
    state.reported[LATCH_CTR_RINGBUF_FULL] = total;
    changed = true;
  }
  // Records the reader could not decode are losses too; this process counts them.
  if (activity_) {
    // Activity capture's counters live and die with this process (it is not
    // pinned), so what was reported is kept here.
    std::array<uint64_t, LATCH_ACT_CTR_COUNT> act{};
    LATCH_RETURN_IF_ERROR(activity_->ReadCounters(&act));
    for (uint32_t k = 1; k < LATCH_ACT_KINDS; ++k) {
      uint64_t lost = act[LATCH_ACT_CTR_LOST + k];
      if (lost > reported_activity_lost_[k] &&
          sink_
              ->AddLoss(LossKind::kActivityRingBufferFull, lost - reported_activity_lost_[k], lost,
                        record::ActivityKindName(k))
              .ok()) {
        reported_activity_lost_[k] = lost;
      }
    }
  }
  uint64_t malformed =
      reader_->malformed() + (activity_reader_ ? activity_reader_->malformed() : 0);
  if (malformed > reported_malformed_ &&
      sink_->AddLoss(LossKind::kDecodeFailure, malformed - reported_malformed_, malformed).ok()) {
    reported_malformed_ = malformed;
  }
  bool durable = false;
  LATCH_RETURN_IF_ERROR(FlushSink(&durable));
  if (link_) link_->Pump();
  if (!changed && !unwritten_reported_) return Status::Ok();
  if (!durable) {
    unwritten_reported_.emplace();
    std::memcpy(unwritten_reported_->data(), state.reported, sizeof(state.reported));
    return Status::Ok();
  }
  unwritten_reported_.reset();
  return WriteState(state);
}

void AgentDaemon::OnGrantSet(schema::SignedGrantSet::Reader set) {
  // Capture is made ready before each grant reaches the kernel (the
  // WatchingEnforcer watches its holder first), so nothing done under a new
  // grant goes unseen.
  AppliedReport report;
  Status s = applier_->Apply(set, &report);
  if (!s.ok()) {
    log_.Error("applying a grant set", {{"error", s.ToString()}});
    report.rejected_set = s.ToString();
  }
  if (!report.rejected_set.empty()) {
    log_.Error("grant set refused; the grants in force stay as they were",
               {{"reason", report.rejected_set},
                {"hint",
                 "check grant_key and host_id in this agent's configuration against "
                 "latch-collector keys and the collector's [[agent]] entry"}});
  }
  for (const auto& [id, why] : report.rejected) {
    log_.Error("grant refused", {{"grant", id}, {"reason", why}});
  }
  if (report.host_policy) {
    // Kept for the next start: a restart with the collector down enforces it.
    Status k = storage::WriteFileAtomically(config_.collector.state_dir, kKeptSetFile,
                                            schema::CanonicalBytes(set), 0600);
    if (!k.ok()) log_.Error("keeping the signed grant set", {{"error", k.ToString()}});
    log_.Info("resources from the collector's policy in force",
              {{"version", report.version},
               {"resources", report.host_policy->resources.size()},
               {"identities_here", report.host_policy->holders.size()},
               {"since_ns", report.host_policy->since_ns}});
    namer_.Set(report.host_policy->holders);
    host_policy_ = std::move(report.host_policy);
    mismatch_sent_ = false;
  }
  CheckLocalResources();
  latch_agent_state state{};
  if (ReadState(&state).ok() && state.grant_set_version != applier_->version()) {
    state.grant_set_version = applier_->version();
    Status w = WriteState(state);
    if (!w.ok()) log_.Error("saving the agent's state", {{"error", w.ToString()}});
  }
  SyncWatched();
  link_->SendApplied(report);
  CheckGuard();  // a grant set is a moment the guard must be whole
}

Status AgentDaemon::UseKeptHostPolicy() {
  const std::string path = config_.collector.state_dir + "/" + kKeptSetFile;
  std::string bytes;
  Status s = storage::ReadWholeFile(path, &bytes, kMaxKeptSetBytes);
  if (s.code() == Status::Code::kNotFound) return Status::Ok();  // none yet
  std::optional<HostPolicyView> kept;
  if (s.ok()) {
    s = schema::ReadCanonical<schema::SignedGrantSet>(
        bytes, path,
        [&](schema::SignedGrantSet::Reader set) { return applier_->ReadHostPolicy(set, &kept); });
  }
  if (!s.ok()) {
    // Not trusted, so not used; the collector sends a set once reached.
    log_.Alert(
        "the kept grant set does not hold; this agent's own resources apply until the "
        "collector sends one",
        {{"file", path}, {"error", s.ToString()}});
    return Status::Ok();
  }
  if (!kept) return Status::Ok();
  log_.Info("resources from the kept signed policy",
            {{"resources", kept->resources.size()}, {"since_ns", kept->since_ns}});
  namer_.Set(kept->holders);
  host_policy_ = std::move(kept);
  return Status::Ok();
}

void AgentDaemon::CheckLocalResources() {
  if (!host_policy_ || config_.resources.empty() || mismatch_sent_ || !link_) return;
  std::string difference = resource::DescribeDifference(config_.resources, host_policy_->resources);
  if (difference.empty()) return;
  log_.Alert(
      "the local [[resource]] list differs from the collector's; the collector's is "
      "enforced",
      {{"difference", difference},
       {"hint",
        "the collector's policy is the source of resources: remove [[resource]] from "
        "this agent's configuration, or correct the policy"}});
  link_->SendAlarm("resource_mismatch", difference);
  mismatch_sent_ = true;
}

}  // namespace latch::agent
