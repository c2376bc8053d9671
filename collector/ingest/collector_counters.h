// CollectorCounters: what the collector counts, read by /metrics and the
// admin socket's status from any thread (atomics), written on the loop.
#pragma once

#include <atomic>
#include <cstdint>

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
  std::atomic<uint64_t> standby_followed_entries{0};  // taken in as a standby, as they landed
  std::atomic<uint64_t> takeover_replayed_entries{
      0};  // replayed when this one became the sequencer
};

}  // namespace latch::collector
