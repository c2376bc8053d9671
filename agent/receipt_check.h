// Receipt checking, as pure functions: what the agent needs to believe a
// collector's receipt before it forgets a spooled record (promises 1 and 8).
// They change nothing and need no socket, spool or root, so every way a
// receipt can lie has a unit test (tests/agent/receipt_check_test.cc);
// CheckpointWitness and CollectorLink apply their verdicts.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "lib/status/status.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/merkle_hash.h"
#include "lib/tlog/signed_note.h"

namespace latch::agent {

// Whether the checkpoint a receipt shows (`note`, with a consistency proof
// from size `proof_from`) extends `held` (null: none held yet, any validly
// signed checkpoint is the first). OK: *shown is the note's checkpoint.
// Otherwise *alarm names what is wrong: "bad_checkpoint_signature",
// "rolled_back" (smaller than held), "inconsistent_checkpoint" (another root
// for the held size, or a proof that fails); or *alarm is empty
// (FailedPrecondition) when the proof starts at another size than the held
// one, which proves nothing either way.
Status CheckShownCheckpoint(const tlog::NoteVerifier& ledger_key, const tlog::Checkpoint* held,
                            std::string_view note, uint64_t proof_from,
                            std::span<const tlog::Hash> proof, tlog::Checkpoint* shown,
                            std::string* alarm);

// The ledger entry one spooled record became, rebuilt as the collector
// writes it: this host, the record's boot, sequence, kind, times and payload.
struct SpooledEntry {
  std::string host_id, boot_id;
  uint64_t sequence = 0;
  uint32_t kind = 0;  // schemas/ledger.capnp RecordKind
  int64_t event_time_ns = 0;
  int64_t receive_time_ns = 0;  // the collector's, from the receipt
  std::string payload;
};

// Whether that entry is at `index` in the tree of `shown`, by `proof`.
Status CheckEntryIncluded(const SpooledEntry& entry, uint64_t index,
                          std::span<const tlog::Hash> proof, const tlog::Checkpoint& shown);

}  // namespace latch::agent
