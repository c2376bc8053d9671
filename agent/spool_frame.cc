#include "agent/spool_frame.h"

#include <zlib.h>

#include <cstring>

#include "agent/spool.h"

namespace latch::agent::spool_frame {
namespace {

constexpr size_t kHeaderV1 = 24;
constexpr size_t kHeaderV2 = 32;
// Record kinds of schemas/ledger.capnp an agent spools: event, loss, activity.
constexpr uint32_t kLowestKind = 1;
constexpr uint32_t kHighestKind = 15;

template <typename T>
void Put(std::string* out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));  // little-endian hosts only (x86-64, arm64)
  out->append(b, sizeof(T));
}

template <typename T>
T Get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

uint32_t Checksum(const char* header24, const char* payload, size_t len) {
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(header24), 24);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(payload), static_cast<uInt>(len));
  return static_cast<uint32_t>(crc);
}

}  // namespace

Layout DetectLayout(std::string_view head, bool* empty) {
  *empty = false;
  if (head.size() >= kMagic.size() && head.substr(0, kMagic.size()) == kMagic)
    return {2, kMagic.size()};
  if (head.size() < kMagic.size() && kMagic.substr(0, head.size()) == head) {
    *empty = true;
    return {2, head.size()};
  }
  return {1, 0};
}

size_t HeaderSize(int version) { return version == 1 ? kHeaderV1 : kHeaderV2; }

void Append(std::string* out, uint32_t kind, uint64_t sequence, int64_t event_time_ns,
            std::string_view payload) {
  size_t at = out->size();
  Put<uint32_t>(out, static_cast<uint32_t>(payload.size()));
  Put<uint32_t>(out, kind);
  Put<uint64_t>(out, sequence);
  Put<int64_t>(out, event_time_ns);
  Put<uint32_t>(out, Checksum(out->data() + at, payload.data(), payload.size()));
  Put<uint32_t>(out, 0);
  out->append(payload);
}

size_t Parse(int version, const char* data, size_t n, SpooledRecord* record) {
  size_t header = HeaderSize(version);
  if (n < header) return 0;
  uint32_t len = Get<uint32_t>(data);
  if (len > kMaxPayload || n < header + len) return 0;
  uint32_t kind = Get<uint32_t>(data + 4);
  uint64_t sequence = Get<uint64_t>(data + 8);
  if (sequence == 0 || kind == 0) return 0;
  if (version != 1) {
    if (Get<uint32_t>(data + 28) != 0) return 0;
    if (Get<uint32_t>(data + 24) != Checksum(data, data + header, len)) return 0;
  }
  record->kind = kind;
  record->sequence = sequence;
  record->event_time_ns = Get<int64_t>(data + 16);
  record->payload.assign(data + header, len);
  return header + len;
}

size_t FindNextGood(std::string_view data, size_t from, uint64_t min_sequence,
                    SpooledRecord* record) {
  for (size_t at = from; at + kHeaderV2 <= data.size(); ++at) {
    const char* p = data.data() + at;
    uint32_t len = Get<uint32_t>(p);
    if (len > kMaxPayload || at + kHeaderV2 + len > data.size()) continue;
    uint32_t kind = Get<uint32_t>(p + 4);
    if (kind != kMarkKind && (kind < kLowestKind || kind > kHighestKind)) continue;
    uint64_t sequence = Get<uint64_t>(p + 8);
    uint64_t least = kind == kMarkKind ? min_sequence - 1 : min_sequence;
    if (sequence < least || sequence == 0) continue;
    if (Parse(2, p, data.size() - at, record) != 0) return at;
  }
  return std::string::npos;
}

}  // namespace latch::agent::spool_frame
