#include "collector/ingest/sequence_index.h"

namespace latch::collector {

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
