// A ledger entry as every reader decodes it: ledger::DecodeRecord, then the
// view the events query, latchctl and the index render (index::ViewRecord,
// with and without its detail). Any bytes: an error or a view, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "collector/index/record_view.h"
#include "schemas/record_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view entry(reinterpret_cast<const char*>(data), size);
  latch::ledger::LedgerRecord record;
  (void)latch::ledger::DecodeRecord(entry, &record);
  latch::index::RecordView view;
  if (latch::index::ViewRecord(entry, &view, /*with_detail=*/true).ok()) {
    (void)view.detail.dump();  // rendered as JSON: must not throw on any record
  }
  latch::index::RecordView brief;
  (void)latch::index::ViewRecord(entry, &brief, /*with_detail=*/false);
  return 0;
}
