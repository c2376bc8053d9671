#include "collector/ingest/sequence_index.h"

#include <map>

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

nlohmann::json SequenceIndex::ToSnapshot() const {
  // Keys are host '\0' boot, and boot ids are raw bytes: kept as binary.
  // In key order, so that equal marks make equal snapshots.
  std::map<std::string, SequenceMark> sorted(marks_.begin(), marks_.end());
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [key, m] : sorted) {
    out.push_back(
        {nlohmann::json::binary({key.begin(), key.end()}), m.sequence, m.index, m.receive_time_ns});
  }
  return out;
}

void SequenceIndex::FromSnapshot(const nlohmann::json& j) {
  marks_.clear();
  for (const auto& m : j) {
    const auto& key = m.at(0).get_binary();
    marks_[std::string(key.begin(), key.end())] = {m.at(1).get<uint64_t>(), m.at(2).get<uint64_t>(),
                                                   m.at(3).get<int64_t>()};
  }
}

}  // namespace latch::collector
