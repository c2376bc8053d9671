#include "schemas/record_codec.h"

#include <capnp/message.h>

#include "schemas/canonical.h"
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
    case schema::RecordKind::ACTIVITY:
    case schema::RecordKind::GUARD:
      return true;
    default:
      return false;
  }
}

static_assert(static_cast<int>(RecordKind::kActivity) ==
              static_cast<int>(schema::RecordKind::ACTIVITY));
static_assert(static_cast<int>(RecordKind::kGuard) == static_cast<int>(schema::RecordKind::GUARD));
static_assert(static_cast<int>(RecordKind::kWorkflow) ==
              static_cast<int>(schema::RecordKind::WORKFLOW));

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
  std::string encoded = schema::CanonicalBytes(r.asReader());
  if (encoded.size() > kMaxEntrySize) {
    return Status::InvalidArgument("record encodes to " + std::to_string(encoded.size()) +
                                   " bytes, over the entry limit of " +
                                   std::to_string(kMaxEntrySize));
  }
  *bytes = std::move(encoded);
  return Status::Ok();
}

Status DecodeRecord(std::string_view bytes, LedgerRecord* record) {
  return schema::ReadCanonical<schema::LedgerRecord>(
      bytes, "record", [&](schema::LedgerRecord::Reader r) {
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
        return Status::Ok();
      });
}

}  // namespace latch::ledger
