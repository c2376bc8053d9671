// RefusalLog: refused input (a forged key, a malformed message, an API
// request that breaks the rules) is counted and folded into at most one
// ledger record per kind per second, each distinct (detail, peer) kept up to
// kMaxDetails a record: a flood of bad input cannot flood the ledger, and
// none of it goes unrecorded (promises 3 and 10, docs/DESIGN.md).
//
// Owned by the loop thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>

namespace latch::collector {

class Recorder;

class RefusalLog {
 public:
  static constexpr size_t kMaxDetails = 16;

  // One refusal of kind `what` ("malformed_message", "unenrolled_key", ...)
  // from `peer` (an address, a host or an API identity). With `identity` (an
  // authenticated identity refused, e.g. a 403), its refusals fold into
  // records of their own, so that each can be shown to that identity.
  void Count(const std::string& what, const std::string& detail, const std::string& peer,
             const std::string& identity = "");
  // Each kind refused since the last flush becomes one refusal record, at
  // most once a second unless `force`; also logged.
  void Flush(Recorder& recorder, int64_t now_ns, bool force);

 private:
  struct Tally {
    uint64_t count = 0;
    std::string last;                                                  // the latest detail
    std::map<std::pair<std::string, std::string>, uint64_t> distinct;  // (detail, peer) -> count
    uint64_t unlisted = 0;  // refusals past kMaxDetails distinct ones
  };
  std::map<std::pair<std::string, std::string>, Tally> tallies_;  // (what, identity)
  int64_t flushed_ns_ = 0;
};

}  // namespace latch::collector
