// Canonical encoding of ledger records. A ledger entry is the canonical Cap'n
// Proto form (capnp::canonicalize) of one schemas/ledger.capnp LedgerRecord,
// so equal records have equal bytes and equal leaf hashes, and anyone with
// the schema can decode an entry without Latch's code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "lib/status/status.h"

namespace latch::ledger {

// An entry bundle prefixes each entry with a big-endian uint16 length, so no
// ledger entry (and no encoded record) is larger than this.
inline constexpr size_t kMaxEntrySize = 65535;

enum class RecordKind : uint16_t {
  kOpaque = 1,
  kEvent = 2,
  kLoss = 3,
  kWorkflow = 4,
  kActivity = 5,
  kGuard = 6,
};

struct LedgerRecord {
  RecordKind kind = RecordKind::kOpaque;
  std::string host_id;
  std::string agent_boot_id;  // 16 bytes from the agent, or empty
  uint64_t sequence = 0;
  int64_t event_time_ns = 0;
  int64_t receive_time_ns = 0;
  std::string payload;

  bool operator==(const LedgerRecord&) const = default;
};

// Canonical bytes of `record`; InvalidArgument if it would exceed the ledger's
// entry limit.
Status EncodeRecord(const LedgerRecord& record, std::string* bytes);
// Decodes an entry; Corruption unless `bytes` is exactly the canonical
// encoding of a record of a known kind.
Status DecodeRecord(std::string_view bytes, LedgerRecord* record);

}  // namespace latch::ledger
