// latchctl's pinned witnesses (issue 18): the keys and quorum from its
// settings, and the check that a checkpoint it verified is consistent with
// the collector's witnessed checkpoint (the one a quorum of them cosigned),
// so that what it showed is history the witnesses saw, not a view made for
// this auditor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "collector/tools/latchctl_settings.h"
#include "lib/status/status.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/cosignature.h"
#include "lib/tlog/sha256.h"
#include "lib/tlog/signed_note.h"

namespace latchctl {

struct Witnesses {
  std::vector<latch::tlog::CosignatureVerifier> keys;  // empty: none pinned
  size_t quorum = 0;
};

// InvalidArgument naming a key that does not parse, or a quorum past the keys.
latch::Status LoadWitnesses(const Settings& s, Witnesses* out);

// The consistency proof of the collector's tree of `from` entries in its
// tree of `to` entries (GET /v1/proof/consistency).
latch::Status FetchConsistencyProof(const Settings& s, uint64_t from, uint64_t to,
                                    std::vector<latch::tlog::Hash>* proof);

struct WitnessedView {
  latch::tlog::Checkpoint checkpoint;  // the witnessed one
  std::vector<size_t> cosigned;        // indexes into the pinned keys
};

// Fetches /checkpoint (the witnessed checkpoint), requires the quorum of
// `w`, and proves it consistent with `verified` (one is a prefix of the
// other). VerifyFailed when it is not: another history than the witnesses'.
latch::Status CheckAgainstWitnessed(const Settings& s, const latch::tlog::NoteVerifier& key,
                                    const Witnesses& w, const latch::tlog::Checkpoint& verified,
                                    WitnessedView* out);

// "cosigned by K of N witnesses (a, b)".
std::string CosignedBy(const Witnesses& w, const std::vector<size_t>& cosigned);

}  // namespace latchctl
