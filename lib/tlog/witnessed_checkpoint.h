// A witnessed checkpoint (issue 18): a log's signed checkpoint that also
// carries cosignatures (cosignature/v1, cosignature.h) by witnesses, each
// of which checked it consistent with everything of that log it cosigned
// before. A verifier that demands k of its pinned witnesses knows that a
// split view would have had to fool k parties the log's operator does not
// control. It is a plain C2SP signed note: any client verifies the log's
// signature with the log key and each cosignature with its witness key.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

#include "lib/status/status.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/cosignature.h"
#include "lib/tlog/signed_note.h"

namespace latch::tlog {

// Opens `note` as the log's checkpoint (OpenCheckpoint) and requires valid
// cosignatures by at least `quorum` of `witnesses` (each counted once);
// their indexes in *cosigned when given. VerifyFailed names how many of
// whom cosigned when there are too few, or which cosignature is invalid.
Status OpenWitnessedCheckpoint(std::string_view note, const NoteVerifier& log,
                               std::span<const CosignatureVerifier> witnesses, size_t quorum,
                               Checkpoint* out, std::vector<size_t>* cosigned = nullptr);

}  // namespace latch::tlog
