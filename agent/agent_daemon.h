// AgentDaemon: latch-agent's run loop. Start() brings the guard up in its
// phases (find cgroup v2, make sure of bpffs, install or adopt the guard, set
// the configured resources); Run() then serves one Boost.Asio event loop:
// the ring buffer's epoll fd is waited on by Asio (no polling), counters are
// read on a timer and every new loss becomes a loss record. SIGINT/SIGTERM
// end the loop and leave the guard in place.
#pragma once

#include <array>
// Boost 1.74's Asio uses std::exchange without including <utility> (fixed
// upstream later); include it first.
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on
#include <memory>
#include <ostream>

#include "agent/agent_config.h"
#include "agent/decision_events.h"
#include "agent/enforcer.h"
#include "agent/guard.h"

namespace latch::agent {

class AgentDaemon {
 public:
  // Decision and loss records go to `records`, one JSON object per line;
  // operational messages go to `log`.
  AgentDaemon(AgentConfig config, std::ostream& records, std::ostream& log);
  Status Start();
  Status Run();
  void Stop();

  Enforcer& enforcer() { return *enforcer_; }

 private:
  void WaitForEvents();
  void ScheduleCounters();
  Status ReportNewLosses();

  AgentConfig config_;
  std::ostream& records_;
  std::ostream& log_;
  boost::asio::io_context io_;
  boost::asio::signal_set signals_{io_, SIGINT, SIGTERM};
  boost::asio::steady_timer counters_timer_{io_};
  std::unique_ptr<boost::asio::posix::stream_descriptor> ring_fd_;
  std::unique_ptr<Guard> guard_;
  std::unique_ptr<BpfEnforcer> enforcer_;
  std::unique_ptr<DecisionEventReader> reader_;
  Status failure_;
  std::string host_id_json_;         // the host id encoded once as a JSON string
  std::string line_;                 // reused for every record
  uint64_t reported_malformed_ = 0;  // decode failures already sent as loss records
};

}  // namespace latch::agent
