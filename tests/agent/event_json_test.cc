#include "schemas/event_json.h"

#include <gtest/gtest.h>

#include <cstring>

namespace latch::agent {
namespace {

latch_decision_event Sample() {
  latch_decision_event e{};
  e.ktime_boot_ns = 123456789012345;
  e.cgroup_id = 77;
  e.grant_id = 9;
  e.pid = 101;
  e.tgid = 100;
  e.uid = 1000;
  e.gid = 1001;
  e.resource_id = 5;
  e.family = 10;  // AF_INET6
  e.port = 5432;
  e.protocol = 6;
  e.verdict = LATCH_VERDICT_DENY;
  e.hook = LATCH_HOOK_CONNECT6;
  e.addr[15] = 1;  // ::1
  std::memcpy(e.comm, "psql", 4);
  return e;
}

TEST(EventJson, LineCarriesEveryField) {
  std::string line;
  record::AppendDecisionJsonLine(Sample(), nlohmann::json("host \"a\"").dump(), &line);
  ASSERT_EQ(line.back(), '\n');
  auto j = nlohmann::json::parse(line);
  EXPECT_EQ(j["type"], "decision");
  EXPECT_EQ(j["host_id"], "host \"a\"");
  EXPECT_EQ(j["ktime_boot_ns"], 123456789012345u);
  EXPECT_EQ(j["verdict"], "deny");
  EXPECT_EQ(j["resource_id"], 5);
  EXPECT_EQ(j["grant_id"], 9);
  EXPECT_EQ(j["pid"], 101);
  EXPECT_EQ(j["tgid"], 100);
  EXPECT_EQ(j["uid"], 1000);
  EXPECT_EQ(j["gid"], 1001);
  EXPECT_EQ(j["cgroup_id"], 77);
  EXPECT_EQ(j["comm"], "psql");
  EXPECT_EQ(j["family"], "ipv6");
  EXPECT_EQ(j["protocol"], "tcp");
  EXPECT_EQ(j["daddr"], "::1");
  EXPECT_EQ(j["dport"], 5432);
  EXPECT_EQ(j["hook"], "connect6");
}

// Process names are chosen by whoever runs the process: every byte must come
// out as valid JSON, and a full 16-byte comm without a NUL must not overrun.
TEST(EventJson, HostileProcessNamesStayValidJson) {
  latch_decision_event e = Sample();
  const char hostile[16] = {'"',
                            '\\',
                            '\n',
                            0x01,
                            static_cast<char>(0xff),
                            static_cast<char>(0xc3),
                            'x',
                            '}',
                            ',',
                            '"',
                            'a',
                            'b',
                            'c',
                            'd',
                            'e',
                            'f'};
  std::memcpy(e.comm, hostile, sizeof(e.comm));
  std::string line;
  record::AppendDecisionJsonLine(e, "\"h\"", &line);
  nlohmann::json j;
  ASSERT_NO_THROW(j = nlohmann::json::parse(line)) << line;
  std::string comm = j["comm"];
  EXPECT_EQ(comm.substr(0, 3), "\"\\\n");
  // Every byte kept: the two bytes >= 0x80 become U+00FF and U+00C3, two
  // UTF-8 bytes each, so 16 bytes read back as 18.
  EXPECT_EQ(comm.size(), 18u);
  EXPECT_EQ(record::DecisionToJson(e, "h"), j);
}

}  // namespace
}  // namespace latch::agent
