// Resource names of C2SP tlog-tiles (https://c2sp.org/tlog-tiles):
//   tile/<L>/<N>[.p/<W>]        hash tile at level L, index N, partial width W
//   tile/entries/<N>[.p/<W>]    entry bundle N
// N is written in groups of three digits, every group but the last prefixed
// with "x": 1234067 -> x001/x234/067.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "lib/status/status.h"

namespace latch::tlog {

struct TileId {
  static constexpr int kEntries = -1;  // `level` of an entry bundle
  int level = 0;                       // 0..63, or kEntries
  uint64_t index = 0;
  uint32_t width = 256;  // 1..256; 256 is a full tile (no .p/ suffix)

  bool is_entries() const { return level == kEntries; }
  std::string Path() const;
  // Strict inverse of Path(): anything Path() would not produce is rejected,
  // which also rules out "..", empty elements and other traversal tricks.
  static Status Parse(std::string_view path, TileId* out);
  bool operator==(const TileId&) const = default;
};

std::string TileIndexPath(uint64_t index);

}  // namespace latch::tlog
