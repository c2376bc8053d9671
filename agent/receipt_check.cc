#include "agent/receipt_check.h"

#include "lib/tlog/proof.h"
#include "schemas/record_codec.h"

namespace latch::agent {

Status CheckShownCheckpoint(const tlog::NoteVerifier& ledger_key, const tlog::Checkpoint* held,
                            std::string_view note, uint64_t proof_from,
                            std::span<const tlog::Hash> proof, tlog::Checkpoint* shown,
                            std::string* alarm) {
  alarm->clear();
  tlog::Checkpoint cp;
  Status s = tlog::OpenCheckpoint(note, ledger_key, &cp);
  if (!s.ok()) {
    *alarm = "bad_checkpoint_signature";
    return s;
  }
  if (held != nullptr) {
    if (cp.size < held->size) {
      *alarm = "rolled_back";
      return Status::VerifyFailed("shown checkpoint of size " + std::to_string(cp.size) +
                                  " is older than the held one of size " +
                                  std::to_string(held->size));
    }
    if (cp.size == held->size) {
      if (cp.root != held->root) {
        *alarm = "inconsistent_checkpoint";
        return Status::VerifyFailed("two different roots signed for size " +
                                    std::to_string(cp.size));
      }
    } else {
      if (proof_from != held->size) {
        // Not evidence of anything: the collector guessed the size we hold
        // wrong (receipts crossed a reconnection). No alarm; ask again.
        return Status::FailedPrecondition("consistency proof from size " +
                                          std::to_string(proof_from) + ", held size is " +
                                          std::to_string(held->size));
      }
      s = tlog::VerifyConsistency(held->size, cp.size, proof, held->root, cp.root);
      if (!s.ok()) {
        *alarm = "inconsistent_checkpoint";
        return s;
      }
    }
  }
  *shown = cp;
  return Status::Ok();
}

Status CheckEntryIncluded(const SpooledEntry& entry, uint64_t index,
                          std::span<const tlog::Hash> proof, const tlog::Checkpoint& shown) {
  ledger::LedgerRecord record;
  record.kind = static_cast<ledger::RecordKind>(entry.kind);
  record.host_id = entry.host_id;
  record.agent_boot_id = entry.boot_id;
  record.sequence = entry.sequence;
  record.event_time_ns = entry.event_time_ns;
  record.receive_time_ns = entry.receive_time_ns;
  record.payload = entry.payload;
  std::string bytes;
  LATCH_RETURN_IF_ERROR(ledger::EncodeRecord(record, &bytes));
  tlog::Hash leaf =
      tlog::MerkleHasher().Leaf({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
  return tlog::VerifyInclusion(index, shown.size, leaf, proof, shown.root);
}

}  // namespace latch::agent
