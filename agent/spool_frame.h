// The spool's on-disk frames (spool.h has the directory layout).
//
// Version 2 segment files (written since issue 13.5) start with the 8 bytes
// "LATCHSP2", then frames of
//   uint32 LE payload length | uint32 LE record kind | uint64 LE sequence |
//   int64 LE event time (Unix ns) | uint32 LE CRC-32 of the 24 bytes before it
//   and of the payload | uint32 zero | payload
// The checksum tells a damaged frame from a good one anywhere in a file, so a
// damaged region in the middle is skipped to the next good frame (and what
// it held is declared lost) instead of being taken for a torn tail.
// Version 1 files (no magic, 24-byte headers, no checksum) are still read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace latch::agent {

struct SpooledRecord;

namespace spool_frame {

inline constexpr std::string_view kMagic = "LATCHSP2";
inline constexpr uint32_t kMaxPayload = 64 * 1024;  // a ledger entry holds at most 64 KiB
// Not a record kind of schemas/ledger.capnp: the writer's mark (Spool::SetMark).
inline constexpr uint32_t kMarkKind = 0xffffffff;

// What a segment file's first bytes say: its version and where frames start.
struct Layout {
  int version = 2;
  size_t data_start = kMagic.size();
};
// The layout of a file starting with `head`. A version 2 file cut inside its
// magic (a start that died half-way) holds no frame: *empty is set.
Layout DetectLayout(std::string_view head, bool* empty);

size_t HeaderSize(int version);
// Appends one version 2 frame.
void Append(std::string* out, uint32_t kind, uint64_t sequence, int64_t event_time_ns,
            std::string_view payload);
// Parses the frame at data[0, n): its total size, or 0 if it is incomplete,
// malformed or (version 2) fails its checksum.
size_t Parse(int version, const char* data, size_t n, SpooledRecord* record);
// The offset of the first good version 2 frame at or after `from` whose
// sequence is at least `min_sequence` (a mark frame's at least one less), or
// std::string::npos. Cheap checks first, the checksum last.
size_t FindNextGood(std::string_view data, size_t from, uint64_t min_sequence,
                    SpooledRecord* record);

}  // namespace spool_frame
}  // namespace latch::agent
