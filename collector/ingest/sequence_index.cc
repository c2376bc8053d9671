#include "collector/ingest/sequence_index.h"

#include "schemas/record_codec.h"

namespace latch::collector {

Status SequenceIndex::Rebuild(ledger::Ledger& ledger) {
  marks_.clear();
  uint64_t size = ledger.size();
  std::string entry;
  ledger::LedgerRecord record;
  for (uint64_t i = 0; i < size; ++i) {
    LATCH_RETURN_IF_ERROR(ledger.ReadEntry(i, &entry));
    LATCH_RETURN_IF_ERROR(ledger::DecodeRecord(entry, &record).WithContext(
        "ledger entry " + std::to_string(i)));
    if (record.agent_boot_id.empty()) continue;  // collector records carry no sequence
    Advance(record.host_id, record.agent_boot_id, {record.sequence, i, record.receive_time_ns});
  }
  return Status::Ok();
}

const SequenceMark* SequenceIndex::Find(const std::string& host, const std::string& boot) const {
  auto it = marks_.find(Key(host, boot));
  return it == marks_.end() ? nullptr : &it->second;
}

void SequenceIndex::Advance(const std::string& host, const std::string& boot,
                            const SequenceMark& mark) {
  SequenceMark& m = marks_[Key(host, boot)];
  if (mark.sequence >= m.sequence) m = mark;
}

}  // namespace latch::collector
