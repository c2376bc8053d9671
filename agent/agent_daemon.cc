#include "agent/agent_daemon.h"

#include <bpf/bpf.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "agent/kernel_fs.h"
#include "agent/spool_sink.h"
#include "schemas/curve_key.h"

namespace latch::agent {
namespace {

// Records handed to the sink per ring read before it is flushed and the ring
// released: bounds the loss window of a crash to nothing and the latency of
// a record to one flush.
constexpr size_t kRingBatch = 4096;

}  // namespace

AgentDaemon::AgentDaemon(AgentConfig config, std::ostream& records, std::ostream& log)
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
  if (mounted) log_ << "latch-agent: mounted bpffs for " << config_.pin_dir << "\n";

  LATCH_RETURN_IF_ERROR(Guard::Install({config_.pin_dir, config_.cgroup, config_.ring_buffer_bytes,
                                        config_.cut_established_connections},
                                       &guard_));
  enforcer_ = std::make_unique<BpfEnforcer>(*guard_);
  LATCH_RETURN_IF_ERROR(enforcer_->SetResources(config_.resources).WithContext("resources"));
  log_ << "latch-agent: guard " << (guard_->adopted() ? "adopted" : "attached") << " on "
       << config_.cgroup << ", pinned at " << config_.pin_dir << ", " << config_.resources.size()
       << " resources\n";

  if (config_.collector.enabled) {
    LATCH_RETURN_IF_ERROR(StartCollectorLink());
  } else {
    sink_ = std::make_unique<JsonLinesSink>(records_, config_.host_id);
  }
  LATCH_RETURN_IF_ERROR(DecisionEventReader::Create(
      guard_->events_fd(), [this](const latch_decision_event& e) { sink_->AddEvent(e); },
      &reader_));
  if (spool_) LATCH_RETURN_IF_ERROR(SkipRecordsAlreadySpooled());
  int fd = ::dup(reader_->epoll_fd());
  if (fd < 0) return Status::FromErrno("dup ring buffer epoll fd", errno);
  ring_fd_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd);
  return Status::Ok();
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
  tlog::NoteVerifier ledger_key, grant_key;
  LATCH_RETURN_IF_ERROR(tlog::NoteVerifier::Parse(c.ledger_key, &ledger_key));
  LATCH_RETURN_IF_ERROR(tlog::NoteVerifier::Parse(c.grant_key, &grant_key));
  LATCH_RETURN_IF_ERROR(
      CheckpointWitness::Open(c.state_dir + "/checkpoint", ledger_key, &witness_));
  latch_agent_state state{};
  LATCH_RETURN_IF_ERROR(ReadState(&state));
  std::string cgroup_root;
  LATCH_RETURN_IF_ERROR(FindCgroup2Mount(&cgroup_root));
  applier_ = std::make_unique<GrantSetApplier>(*enforcer_, grant_key, config_.host_id, cgroup_root,
                                               state.grant_set_version);
  sink_ = std::make_unique<SpoolSink>(*spool_);
  CollectorLinkOptions lo;
  lo.endpoints = c.endpoints;
  lo.server_public_key = c.server_public_key;
  lo.key = key;
  lo.host_id = config_.host_id;
  lo.batch_records = c.batch_records;
  link_ = std::make_unique<CollectorLink>(
      io_, lo, *spool_, *witness_, [this] { return applier_->version(); },
      [this](schema::SignedGrantSet::Reader set) { OnGrantSet(set); }, log_);
  log_ << "latch-agent: spool " << so.dir << " holds " << spool_->unacknowledged()
       << " unacknowledged records; checkpoint size " << witness_->size() << "; grant set version "
       << state.grant_set_version << "; key " << key.public_z85 << "\n";
  return link_->Start();
}

Status AgentDaemon::Run() {
  signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (!ec) log_ << "latch-agent: signal " << sig << ", stopping; the guard stays attached\n";
    Stop();
  });
  WaitForEvents();
  ScheduleCounters();
  io_.run();
  // What arrived before the stop goes to the sink; with a spool it is sent
  // at the next start.
  Status s = DrainRing();
  if (!s.ok() && failure_.ok()) failure_ = s;
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
  RingPosition to;
  if (!RingPosition::Decode(mark, &to)) {
    log_ << "latch-agent: the spool's ring mark does not decode; unreleased ring records "
            "will be sent again\n";
    return Status::Ok();
  }
  uint64_t skipped = 0;
  Status s = reader_->SkipTo(to, &skipped);
  if (!s.ok()) {
    // Should not happen: the mark names this ring but no record boundary in it.
    log_ << "latch-agent: " << s.ToString() << "; unreleased ring records will be sent again\n";
    return Status::Ok();
  }
  if (skipped > 0) {
    log_ << "latch-agent: released " << skipped
         << " ring records the previous run had already spooled\n";
  }
  return Status::Ok();
}

Status AgentDaemon::DrainRing() {
  int handled = 0;
  do {
    LATCH_RETURN_IF_ERROR(reader_->Read(kRingBatch, &handled));
    // The sink first, then the ring: a crash between the two neither loses
    // nor (thanks to the mark) duplicates.
    if (spool_) spool_->SetMark(reader_->read_position().Encode());
    LATCH_RETURN_IF_ERROR(sink_->Flush());
    if (handled > 0 && die_before_release_after_ != 0 &&
        ++event_flushes_ == die_before_release_after_) {
      log_ << "latch-agent: dying before releasing the ring, as the test asked" << std::endl;
      ::_exit(9);
    }
    reader_->Commit();
  } while (handled > 0 && static_cast<size_t>(handled) == kRingBatch);
  if (link_) link_->Pump();
  return Status::Ok();
}

void AgentDaemon::WaitForEvents() {
  ring_fd_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                       [this](const boost::system::error_code& ec) {
                         if (ec) return;
                         Status s = DrainRing();
                         if (!s.ok()) {
                           failure_ = s;
                           Stop();
                           return;
                         }
                         WaitForEvents();
                       });
}

void AgentDaemon::ScheduleCounters() {
  counters_timer_.expires_after(std::chrono::milliseconds(config_.counters_interval_ms));
  counters_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    Status s = ReportNewLosses();
    if (!s.ok()) log_ << "latch-agent: reporting losses: " << s.ToString() << "\n";
    ScheduleCounters();
  });
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
  uint64_t malformed = reader_->malformed();
  if (malformed > reported_malformed_ &&
      sink_->AddLoss(LossKind::kDecodeFailure, malformed - reported_malformed_, malformed).ok()) {
    reported_malformed_ = malformed;
  }
  LATCH_RETURN_IF_ERROR(sink_->Flush());
  if (link_) link_->Pump();
  if (changed) LATCH_RETURN_IF_ERROR(WriteState(state));
  return Status::Ok();
}

void AgentDaemon::OnGrantSet(schema::SignedGrantSet::Reader set) {
  AppliedReport report;
  Status s = applier_->Apply(set, &report);
  if (!s.ok()) {
    log_ << "latch-agent: applying a grant set: " << s.ToString() << "\n";
    report.rejected_set = s.ToString();
  }
  if (!report.rejected_set.empty()) {
    log_ << "latch-agent: grant set refused: " << report.rejected_set << "\n";
  }
  for (const auto& [id, why] : report.rejected) {
    log_ << "latch-agent: grant " << id << " refused: " << why << "\n";
  }
  latch_agent_state state{};
  if (ReadState(&state).ok() && state.grant_set_version != applier_->version()) {
    state.grant_set_version = applier_->version();
    Status w = WriteState(state);
    if (!w.ok()) log_ << "latch-agent: " << w.ToString() << "\n";
  }
  link_->SendApplied(report);
}

}  // namespace latch::agent
