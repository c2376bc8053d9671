// AgentDaemon: latch-agent's run loop. Start() brings the guard up in its
// phases (find cgroup v2, make sure of bpffs, install or adopt the guard, set
// the configured resources) and, with a [collector] configured, opens the
// spool, the checkpoint witness and the collector link. Run() then serves one
// Boost.Asio event loop: the ring buffer's epoll fd and the collector
// socket's fd are waited on by Asio (no polling); decision events go to the
// record sink, which is flushed before the ring buffer is released; counters
// are read on a timer and every new loss becomes a loss record; grant sets
// from the collector are checked and applied. SIGINT/SIGTERM end the loop and
// leave the guard in place.
#pragma once

#include <array>
// Boost 1.74's Asio uses std::exchange without including <utility> (fixed
// upstream later); include it first.
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on
#include <memory>
#include <optional>
#include <ostream>

#include "agent/activity_capture.h"
#include "agent/agent_config.h"
#include "agent/checkpoint_witness.h"
#include "agent/collector_link.h"
#include "agent/enforcer.h"
#include "agent/grant_set_applier.h"
#include "agent/guard.h"
#include "agent/identity_namer.h"
#include "agent/metrics_server.h"
#include "agent/record_sink.h"
#include "agent/ring_reader.h"
#include "agent/spool.h"
#include "agent/watching_enforcer.h"
#include "lib/logging/logger.h"

namespace latch::agent {

class AgentDaemon {
 public:
  // Without a collector, decision and loss records go to `records`, one JSON
  // object per line; operational messages go to `log`.
  AgentDaemon(AgentConfig config, std::ostream& records, logging::Logger& log);
  ~AgentDaemon();
  Status Start();
  Status Run();
  void Stop();

  Enforcer& enforcer() { return *enforcer_; }

 private:
  Status StartCollectorLink();
  Status StartActivityCapture();
  // The agent's counters in Prometheus text format (GET /metrics).
  std::string MetricsText();
  // Who activity capture watches, from the grants the kernel holds.
  void SyncWatched();
  void WaitForRecords(boost::asio::posix::stream_descriptor* ring);
  Status DrainRing();
  // Flushes the sink. OK with *durable false when the spool's disk refused
  // the write: the agent degrades (records wait in the ring and in memory,
  // retried each counters tick) instead of stopping.
  Status FlushSink(bool* durable);
  void ScheduleCounters();
  Status ReportNewLosses();
  // Checks the guard is as installed; when not, alerts, counts and records
  // what is missing (once per change) and puts it back unless configured not to.
  void CheckGuard();
  void ScheduleGuardCheck();
  // Collects records the kernel submitted without waking us (below the fill
  // mark), every drain_interval_ms.
  void ScheduleDrain();
  void OnGrantSet(schema::SignedGrantSet::Reader set);
  // The signed set kept from an earlier run (issue 16): its host policy, if
  // it holds, is what this run enforces until the collector sends a newer one.
  Status UseKeptHostPolicy();
  // The local [[resource]] list against the signed one: an alert, and an
  // alarm the collector records, once per policy in force.
  void CheckLocalResources();
  Status ReadState(latch_agent_state* state);
  Status WriteState(const latch_agent_state& state);
  Status SkipRecordsAlreadySpooled();

  AgentConfig config_;
  std::ostream& records_;
  logging::Logger& log_;
  boost::asio::io_context io_;
  boost::asio::signal_set signals_{io_, SIGINT, SIGTERM};
  boost::asio::steady_timer counters_timer_{io_};
  boost::asio::steady_timer guard_timer_{io_};
  boost::asio::steady_timer drain_timer_{io_};
  bool guard_intact_ = true;
  uint64_t guard_detached_total_ = 0;        // incidents found
  std::vector<std::string> guard_problems_;  // what the last incident was, until resolved
  std::unique_ptr<boost::asio::posix::stream_descriptor> ring_fd_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> activity_fd_;
  std::unique_ptr<Guard> guard_;
  std::unique_ptr<BpfEnforcer> enforcer_;
  std::unique_ptr<WatchingEnforcer> watching_;  // what grant sets are applied through
  std::unique_ptr<RingReader> reader_;
  std::unique_ptr<ActivityCapture> activity_;
  std::unique_ptr<RingReader> activity_reader_;
  bool activity_unavailable_ = false;  // configured, but it could not start
  std::array<uint64_t, LATCH_ACT_KINDS> reported_activity_lost_{};
  std::unique_ptr<ArgvRedactor> redactor_;  // before sink_, which points at it
  std::unique_ptr<RecordSink> sink_;
  // With a collector:
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<CheckpointWitness> witness_;
  std::unique_ptr<GrantSetApplier> applier_;
  std::unique_ptr<CollectorLink> link_;
  // The host policy from the collector in force (its resources in the
  // kernel), and who it says holds which principal here.
  std::optional<HostPolicyView> host_policy_;
  IdentityNamer namer_;
  bool mismatch_sent_ = false;  // for the host policy in force
  std::unique_ptr<MetricsServer> metrics_;
  Status failure_;
  uint64_t reported_malformed_ = 0;  // decode failures already in loss records
  // The spool's disk refuses writes: rings are not released, and not waited
  // on either (they stay readable while unreleased); the counters tick retries.
  bool spool_writable_ = true;
  uint64_t spool_write_failures_ = 0;  // times the spool became unwritable
  // Ring-loss totals whose loss records wait for the spool's disk.
  std::optional<std::array<uint64_t, LATCH_CTR_COUNT>> unwritten_reported_;
  std::vector<boost::asio::posix::stream_descriptor*> paused_rings_;
  // Tests only (LATCH_AGENT_TEST_DIE_BEFORE_RING_RELEASE=N): the process ends
  // after its Nth spool flush of events, before releasing them in the ring,
  // which is the moment a crash can leave the same events in both places.
  uint64_t die_before_release_after_ = 0;
  uint64_t event_flushes_ = 0;
};

}  // namespace latch::agent
