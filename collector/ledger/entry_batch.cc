#include "collector/ledger/entry_batch.h"

#include <string>

namespace latch::ledger {

Status EntryBatch::Add(std::span<const uint8_t> entry) {
  if (entry.size() > kMaxEntrySize) {
    return Status::InvalidArgument("entry of " + std::to_string(entry.size()) +
                                   " bytes is larger than the limit of " +
                                   std::to_string(kMaxEntrySize));
  }
  bytes_.push_back(static_cast<uint8_t>(entry.size() >> 8));
  bytes_.push_back(static_cast<uint8_t>(entry.size()));
  bytes_.insert(bytes_.end(), entry.begin(), entry.end());
  ends_.push_back(bytes_.size());
  // One hasher per thread: batches are built on many threads and moved around.
  thread_local tlog::MerkleHasher hasher;
  hashes_.push_back(hasher.Leaf(entry));
  return Status::Ok();
}

void EntryBatch::Clear() {
  bytes_.clear();
  hashes_.clear();
  ends_.clear();
}

}  // namespace latch::ledger
