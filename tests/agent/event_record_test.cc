#include "schemas/event_record.h"

#include <gtest/gtest.h>

#include <cstring>

namespace latch::agent {
namespace {

TEST(EventRecord, DecisionEventRoundTripsThroughTheSchema) {
  latch_decision_event e{};
  e.ktime_boot_ns = 42;
  e.cgroup_id = 7;
  e.grant_id = 99;
  e.pid = 11;
  e.tgid = 10;
  e.uid = 1000;
  e.gid = 1000;
  e.resource_id = 3;
  e.family = 2;
  e.port = 5432;
  e.protocol = 6;
  e.verdict = LATCH_VERDICT_ALLOW_GRANT;
  e.hook = LATCH_HOOK_CONNECT4;
  const uint8_t addr[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 5};
  std::memcpy(e.addr, addr, 16);
  std::memcpy(e.comm, "0123456789abcdef", 16);  // full length, no NUL
  std::string bytes = record::EncodeDecisionEvent(e);
  EXPECT_EQ(bytes, record::EncodeDecisionEvent(e));  // canonical: same event, same bytes
  latch_decision_event back{};
  ASSERT_TRUE(record::DecodeDecisionEvent(bytes, &back).ok());
  EXPECT_EQ(std::memcmp(&back, &e, sizeof(e)), 0);
  EXPECT_FALSE(record::DecodeDecisionEvent(bytes.substr(0, bytes.size() - 8), &back).ok());
  EXPECT_FALSE(record::DecodeDecisionEvent(bytes + std::string(8, '\0'), &back).ok());
  EXPECT_FALSE(record::DecodeDecisionEvent("", &back).ok());
}

}  // namespace
}  // namespace latch::agent
