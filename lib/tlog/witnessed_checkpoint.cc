#include "lib/tlog/witnessed_checkpoint.h"

#include <string>

namespace latch::tlog {

Status OpenWitnessedCheckpoint(std::string_view note, const NoteVerifier& log,
                               std::span<const CosignatureVerifier> witnesses, size_t quorum,
                               Checkpoint* out, std::vector<size_t>* cosigned) {
  Checkpoint checkpoint;
  LATCH_RETURN_IF_ERROR(OpenCheckpoint(note, log, &checkpoint));
  std::vector<size_t> found;
  LATCH_RETURN_IF_ERROR(FindCosignatures(note, witnesses, &found));
  if (found.size() < quorum) {
    std::string who;
    for (size_t w : found) who += (who.empty() ? " (" : ", ") + witnesses[w].name();
    if (!who.empty()) who += ")";
    return Status::VerifyFailed("checkpoint of size " + std::to_string(checkpoint.size) + " has " +
                                std::to_string(found.size()) + who + " of the " +
                                std::to_string(quorum) + " witness cosignatures required");
  }
  *out = std::move(checkpoint);
  if (cosigned != nullptr) *cosigned = std::move(found);
  return Status::Ok();
}

}  // namespace latch::tlog
