#include "agent/agent_daemon.h"

#include <bpf/bpf.h>
#include <unistd.h>

#include <filesystem>

#include "agent/event_json.h"
#include "agent/kernel_fs.h"

namespace latch::agent {
namespace {

struct LossKind {
  latch_counter counter;
  const char* name;
};
constexpr LossKind kLosses[] = {{LATCH_CTR_RINGBUF_FULL, "ring_buffer_full"}};

}  // namespace

AgentDaemon::AgentDaemon(AgentConfig config, std::ostream& records, std::ostream& log)
    : config_(std::move(config)), records_(records), log_(log) {}

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

  host_id_json_ = nlohmann::json(config_.host_id).dump();
  LATCH_RETURN_IF_ERROR(DecisionEventReader::Create(
      guard_->events_fd(),
      [this](const latch_decision_event& e) {
        line_.clear();
        AppendDecisionJsonLine(e, host_id_json_, &line_);
        records_ << line_;
      },
      &reader_));
  int fd = ::dup(reader_->epoll_fd());
  if (fd < 0) return Status::FromErrno("dup ring buffer epoll fd", errno);
  ring_fd_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd);
  return Status::Ok();
}

Status AgentDaemon::Run() {
  signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (!ec) log_ << "latch-agent: signal " << sig << ", stopping; the guard stays attached\n";
    Stop();
  });
  WaitForEvents();
  ScheduleCounters();
  io_.run();
  int handled = 0;
  if (reader_) (void)reader_->Consume(&handled);  // what arrived before the stop
  records_.flush();
  return failure_;
}

void AgentDaemon::Stop() { io_.stop(); }

void AgentDaemon::WaitForEvents() {
  ring_fd_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                       [this](const boost::system::error_code& ec) {
                         if (ec) return;
                         int handled = 0;
                         Status s = reader_->Consume(&handled);
                         if (!s.ok()) {
                           failure_ = s;
                           Stop();
                           return;
                         }
                         records_.flush();
                         WaitForEvents();
                       });
}

void AgentDaemon::ScheduleCounters() {
  counters_timer_.expires_after(std::chrono::milliseconds(config_.counters_interval_ms));
  counters_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    Status s = ReportNewLosses();
    if (!s.ok()) log_ << "latch-agent: reading counters: " << s.ToString() << "\n";
    ScheduleCounters();
  });
}

// Losses since the last report, from the kernel's totals and the totals
// already reported (kept in the pinned agent-state map, so a restart neither
// repeats nor forgets any).
Status AgentDaemon::ReportNewLosses() {
  std::array<uint64_t, LATCH_CTR_COUNT> totals{};
  LATCH_RETURN_IF_ERROR(guard_->ReadCounters(&totals));
  uint32_t zero = 0;
  latch_agent_state state{};
  if (bpf_map_lookup_elem(guard_->agent_state_fd(), &zero, &state) != 0) {
    return Status::FromErrno("reading agent state", errno);
  }
  bool changed = false;
  for (const LossKind& k : kLosses) {
    uint64_t total = totals[k.counter];
    uint64_t reported = state.reported[k.counter];
    if (total <= reported) continue;
    // Drain first, so the record follows the events that made it.
    int handled = 0;
    LATCH_RETURN_IF_ERROR(reader_->Consume(&handled));
    records_ << LossToJson(k.name, total - reported, total, config_.host_id).dump() << "\n";
    state.reported[k.counter] = total;
    changed = true;
  }
  // Records the reader could not decode are losses too; this process counts them.
  uint64_t malformed = reader_->malformed();
  if (malformed > reported_malformed_) {
    records_ << LossToJson("decode_failure", malformed - reported_malformed_, malformed,
                           config_.host_id)
                    .dump()
             << "\n";
    reported_malformed_ = malformed;
  }
  records_.flush();
  if (changed && bpf_map_update_elem(guard_->agent_state_fd(), &zero, &state, BPF_ANY) != 0) {
    return Status::FromErrno("writing agent state", errno);
  }
  return Status::Ok();
}

}  // namespace latch::agent
