// SequenceIndex: how far each agent boot's records have reached the ledger,
// the exactly-once key of promise 2. Agents send records of a boot in
// sequence order, so one mark per (host, boot) is enough: a record at or
// below the mark is a retransmission and is not appended again.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <unordered_map>

namespace latch::collector {

struct SequenceMark {
  uint64_t sequence = 0;  // highest sequence in the ledger
  uint64_t index = 0;     // its ledger index
  int64_t receive_time_ns = 0;
};

class SequenceIndex {
 public:
  const SequenceMark* Find(const std::string& host, const std::string& boot) const;
  void Advance(const std::string& host, const std::string& boot, const SequenceMark& mark);
  size_t size() const { return marks_.size(); }
  // The marks for a state snapshot, and back (throws nlohmann::json's
  // exceptions on a malformed one; the caller discards the snapshot).
  nlohmann::json ToSnapshot() const;
  void FromSnapshot(const nlohmann::json& j);

 private:
  static std::string Key(const std::string& host, const std::string& boot) {
    return host + '\0' + boot;
  }
  std::unordered_map<std::string, SequenceMark> marks_;
};

}  // namespace latch::collector
