#include "schemas/record_codec.h"

#include <gtest/gtest.h>

#include "collector/ledger/entry_batch.h"

namespace latch::ledger {
namespace {

LedgerRecord Sample() {
  LedgerRecord r;
  r.kind = RecordKind::kEvent;
  r.host_id = "host-a";
  r.agent_boot_id = std::string(16, '\x07');
  r.sequence = 42;
  r.event_time_ns = 1'700'000'000'000'000'000;
  r.receive_time_ns = 1'700'000'000'000'000'123;
  r.payload = std::string("\x00\x01payload", 9);
  return r;
}

TEST(RecordCodec, RoundTripIsCanonical) {
  std::string a;
  std::string b;
  ASSERT_TRUE(EncodeRecord(Sample(), &a).ok());
  ASSERT_TRUE(EncodeRecord(Sample(), &b).ok());
  EXPECT_EQ(a, b);  // same record, same bytes, same leaf hash
  LedgerRecord decoded;
  Status st = DecodeRecord(a, &decoded);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(decoded, Sample());
}

TEST(RecordCodec, RejectsNonCanonicalTruncatedAndUnknown) {
  std::string bytes;
  ASSERT_TRUE(EncodeRecord(Sample(), &bytes).ok());
  LedgerRecord r;
  EXPECT_FALSE(DecodeRecord(bytes.substr(0, bytes.size() - 8), &r).ok());
  EXPECT_FALSE(DecodeRecord(bytes.substr(0, bytes.size() - 3), &r).ok());
  EXPECT_FALSE(DecodeRecord(bytes + std::string(8, '\0'), &r).ok());  // trailing word
  EXPECT_FALSE(DecodeRecord("", &r).ok());
  EXPECT_FALSE(DecodeRecord(std::string(64, '\xff'), &r).ok());
  LedgerRecord unknown = Sample();
  unknown.kind = static_cast<RecordKind>(99);
  ASSERT_TRUE(EncodeRecord(unknown, &bytes).ok());
  EXPECT_EQ(DecodeRecord(bytes, &r).code(), Status::Code::kCorruption);
}

TEST(RecordCodec, RefusesRecordsOverTheEntryLimit) {
  LedgerRecord big = Sample();
  big.payload.assign(kMaxEntrySize, 'x');
  std::string bytes;
  EXPECT_EQ(EncodeRecord(big, &bytes).code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace latch::ledger
