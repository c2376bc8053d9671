#include "collector/ledger/record_codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>

#include "collector/ledger/entry_batch.h"
#include "schemas/ledger.capnp.h"

namespace latch::ledger {
namespace {

capnp::Data::Reader AsData(std::string_view s) {
  return {reinterpret_cast<const kj::byte*>(s.data()), s.size()};
}

bool IsKnownKind(schema::RecordKind kind) {
  switch (kind) {
    case schema::RecordKind::OPAQUE:
    case schema::RecordKind::EVENT:
    case schema::RecordKind::LOSS:
    case schema::RecordKind::WORKFLOW:
      return true;
    default:
      return false;
  }
}

}  // namespace

Status EncodeRecord(const LedgerRecord& record, std::string* bytes) {
  capnp::MallocMessageBuilder message;
  auto r = message.initRoot<schema::LedgerRecord>();
  r.setKind(static_cast<schema::RecordKind>(record.kind));
  r.setHostId(record.host_id);
  r.setAgentBootId(AsData(record.agent_boot_id));
  r.setSequence(record.sequence);
  r.setEventTimeNs(record.event_time_ns);
  r.setReceiveTimeNs(record.receive_time_ns);
  r.setPayload(AsData(record.payload));
  kj::Array<capnp::word> words = capnp::canonicalize(r.asReader());
  auto raw = words.asBytes();
  if (raw.size() > kMaxEntrySize) {
    return Status::InvalidArgument("record encodes to " + std::to_string(raw.size()) +
                                   " bytes, over the entry limit of " +
                                   std::to_string(kMaxEntrySize));
  }
  bytes->assign(reinterpret_cast<const char*>(raw.begin()), raw.size());
  return Status::Ok();
}

Status DecodeRecord(std::string_view bytes, LedgerRecord* record) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    return Status::Corruption("record is not a whole number of Cap'n Proto words");
  }
  // Copy into aligned words: entry bytes come from arbitrary offsets.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  try {
    capnp::ReaderOptions options;
    // Bounded by the record itself: isCanonical() and the getters each walk it once.
    options.traversalLimitInWords = words.size() * 4 + 16;
    // A canonical message is a single segment without the segment table.
    kj::ArrayPtr<const capnp::word> segments[1] = {words.asPtr()};
    capnp::SegmentArrayMessageReader message(kj::arrayPtr(segments, 1), options);
    if (!message.isCanonical()) return Status::Corruption("record is not in canonical form");
    auto r = message.getRoot<schema::LedgerRecord>();
    if (!IsKnownKind(r.getKind())) return Status::Corruption("record has an unknown kind");
    LedgerRecord out;
    out.kind = static_cast<RecordKind>(r.getKind());
    out.host_id = r.getHostId();
    auto boot = r.getAgentBootId();
    out.agent_boot_id.assign(reinterpret_cast<const char*>(boot.begin()), boot.size());
    out.sequence = r.getSequence();
    out.event_time_ns = r.getEventTimeNs();
    out.receive_time_ns = r.getReceiveTimeNs();
    auto payload = r.getPayload();
    out.payload.assign(reinterpret_cast<const char*>(payload.begin()), payload.size());
    *record = std::move(out);
  } catch (const kj::Exception& e) {
    return Status::Corruption(std::string("record does not decode: ") + e.getDescription().cStr());
  }
  return Status::Ok();
}

}  // namespace latch::ledger
