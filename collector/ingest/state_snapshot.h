// StateSnapshot: what the collector derives from its ledger (sequence marks,
// the grant book, ended grants, requests), as it stood at one ledger size, so
// that a start replays only the entries after it (issue 14: replaying 3M
// entries took 40 s, 100M would outlast systemd's start timeout).
//
// A snapshot is bound to its ledger by the tree root at its size, and to
// itself by a SHA-256 of its bytes: one that does not match the ledger it is
// opened with (another ledger, a rolled-back or rewritten one, a restore) or
// that is damaged is ignored, with a warning, and the whole ledger replayed.
// It is derived data, as trusted as the data directory that holds it (which
// also holds the grant key): each grant it carries is verified again.
//
// File: "LATCHSS1", the state as CBOR, then the SHA-256 of everything before it.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "lib/status/status.h"
#include "lib/tlog/merkle_hash.h"

namespace latch::collector {

struct StateSnapshot {
  std::string origin;  // the ledger's
  uint64_t size = 0;   // entries [0, size) are reflected in `state`
  tlog::Hash root{};   // the tree's root at `size`
  nlohmann::json state;
};

// Written atomically and synced: a crash leaves the old snapshot or the new.
Status WriteStateSnapshot(const std::string& dir, const std::string& name,
                          const StateSnapshot& snapshot);
// NotFound if there is none; Corruption if it is damaged or malformed.
Status ReadStateSnapshot(const std::string& path, StateSnapshot* out);

}  // namespace latch::collector
