// EntryBatch: entries on their way into the ledger, already in the form the
// ledger stores: the bytes of a tlog-tiles entry bundle (big-endian uint16
// length, then the entry) and each entry's RFC 6962 leaf hash.
//
// Leaf hashes are computed in Add(), on the caller's thread. That is where
// the parallelism of appends comes from: producers hash while the ledger's
// committer thread writes and fsyncs the previous batch.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "lib/status/status.h"
#include "lib/tlog/merkle_hash.h"
#include "schemas/record_codec.h"  // kMaxEntrySize

namespace latch::ledger {

class EntryBatch {
 public:
  // InvalidArgument (and no change) if the entry is larger than kMaxEntrySize.
  Status Add(std::span<const uint8_t> entry);
  Status Add(std::string_view entry) {
    return Add({reinterpret_cast<const uint8_t*>(entry.data()), entry.size()});
  }

  size_t size() const { return hashes_.size(); }
  bool empty() const { return hashes_.empty(); }
  std::span<const uint8_t> bundle_bytes() const { return bytes_; }
  std::span<const tlog::Hash> leaf_hashes() const { return hashes_; }
  // Offset in bundle_bytes() just past entry i.
  uint64_t end_offset(size_t i) const { return ends_[i]; }
  void Clear();

 private:
  std::vector<uint8_t> bytes_;
  std::vector<tlog::Hash> hashes_;
  std::vector<uint64_t> ends_;
};

}  // namespace latch::ledger
