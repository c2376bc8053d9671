// A message from an agent as latch-collector reads it (HandleAgentMessage,
// OnBatch): whole words, a reader bounded as the collector bounds it, every
// field the collector reads, and each record of a batch as it becomes a
// ledger entry (EncodeRecord) and is read back by every reader (DecodeRecord,
// ViewRecord). Cap'n Proto's own errors end in ReadFrame's Corruption, which
// the collector refuses; anything else is a crash.
#include <capnp/serialize.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "collector/index/record_view.h"
#include "schemas/canonical.h"
#include "schemas/record_codec.h"
#include "schemas/wire.capnp.h"
#include "schemas/wire_frame.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace latch;
  // Read through the framing both ends use; whatever it refuses is refused
  // as malformed by the collector too.
  (void)schema::ReadFrame(
      {reinterpret_cast<const char*>(data), size}, [](schema::Envelope::Reader env) {
        switch (env.which()) {
          case schema::Envelope::HELLO: {
            auto h = env.getHello();
            std::string host = h.getHostId();
            (void)schema::AsString(h.getBootId());
            (void)(h.getCheckpointSize() + h.getGrantSetVersion() +
                   h.getLastAcknowledgedSequence() + h.getSession());
            break;
          }
          case schema::Envelope::EVENT_BATCH: {
            auto batch = env.getEventBatch();
            ledger::LedgerRecord rec;
            rec.host_id = "fuzz-host";
            rec.agent_boot_id = schema::AsString(batch.getBootId());
            (void)batch.getCheckpointSize();
            for (auto r : batch.getRecords()) {
              auto kind = r.getKind();
              if (kind != schema::RecordKind::EVENT && kind != schema::RecordKind::LOSS &&
                  kind != schema::RecordKind::ACTIVITY && kind != schema::RecordKind::GUARD) {
                continue;  // the collector refuses the batch
              }
              rec.kind = static_cast<ledger::RecordKind>(kind);
              rec.sequence = r.getSequence();
              rec.event_time_ns = r.getEventTimeNs();
              rec.payload = schema::AsString(r.getPayload());
              std::string bytes;
              if (!ledger::EncodeRecord(rec, &bytes).ok()) continue;
              ledger::LedgerRecord back;
              if (!ledger::DecodeRecord(bytes, &back).ok())
                __builtin_trap();  // what was written reads
              if (back.payload != rec.payload || back.sequence != rec.sequence) __builtin_trap();
              index::RecordView view;
              if (index::ViewRecord(bytes, &view, /*with_detail=*/true).ok())
                (void)view.detail.dump();
            }
            break;
          }
          case schema::Envelope::APPLIED: {
            auto a = env.getApplied();
            uint64_t sum = a.getVersion();
            for (uint64_t id : a.getGrantIds()) sum += id;
            for (auto r : a.getRejected()) (void)r;
            std::string why = a.getRejectedSet();
            (void)sum;
            break;
          }
          case schema::Envelope::ALARM: {
            auto a = env.getAlarm();
            std::string kind = a.getKind(), detail = a.getDetail();
            (void)schema::AsString(a.getHeldCheckpoint());
            (void)schema::AsString(a.getShownCheckpoint());
            break;
          }
          default:
            break;
        }
      });
  return 0;
}
