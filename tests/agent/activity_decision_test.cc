// The activity programs' decision functions, compiled for the host from the
// same header the BPF programs include, and the activity record encoding.
#include "activity_decision.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "agent/argv_redactor.h"
#include "schemas/activity_record.h"

namespace {

latch_path_prefix Prefix(const char* p) {
  latch_path_prefix out{};
  out.len = static_cast<__u32>(std::strlen(p));
  std::memcpy(out.path, p, out.len);
  return out;
}

TEST(ActivityDecision, PathPrefixes) {
  auto etc = Prefix("/etc/shadow");
  EXPECT_TRUE(latch_prefix_match("/etc/shadow", 11, &etc));
  EXPECT_TRUE(latch_prefix_match("/etc/shadow-", 12, &etc));  // a prefix, as configured
  EXPECT_FALSE(latch_prefix_match("/etc/shado", 10, &etc));
  EXPECT_FALSE(latch_prefix_match("/etc/passwd", 11, &etc));
  EXPECT_FALSE(latch_prefix_match("shadow", 6, &etc));
  latch_path_prefix empty{};
  EXPECT_FALSE(latch_prefix_match("/etc/shadow", 11, &empty));
  latch_path_prefix corrupt = etc;
  corrupt.len = LATCH_PREFIX_MAX + 1;  // never read past the prefix
  EXPECT_FALSE(latch_prefix_match("/etc/shadow", 11, &corrupt));
}

TEST(ActivityDecision, WatchWindowIsHalfOpen) {
  latch_watch_value w{100, 200, 7};
  EXPECT_FALSE(latch_watch_live(&w, 99));
  EXPECT_TRUE(latch_watch_live(&w, 100));
  EXPECT_FALSE(latch_watch_live(&w, 200));
  EXPECT_FALSE(latch_watch_live(nullptr, 150));
}

TEST(ActivityDecision, ThrottleCountsWhatItHoldsBackAndOwesASummary) {
  latch_throttle_state s{};
  int due = 0;
  const __u64 window = 1000;
  // Three pass in the first window, the rest are held back by kind.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(latch_throttle_step(&s, 10 + i, 3, window, LATCH_ACT_OPEN, &due),
              LATCH_THROTTLE_PASS);
    EXPECT_EQ(due, 0);
  }
  EXPECT_EQ(latch_throttle_step(&s, 20, 3, window, LATCH_ACT_OPEN, &due), LATCH_THROTTLE_SUPPRESS);
  EXPECT_EQ(latch_throttle_step(&s, 21, 3, window, LATCH_ACT_EXEC, &due), LATCH_THROTTLE_SUPPRESS);
  EXPECT_EQ(latch_throttle_pending(&s), 2u);
  // The next window's first event passes and the summary is due.
  EXPECT_EQ(latch_throttle_step(&s, 10 + window, 3, window, LATCH_ACT_OPEN, &due),
            LATCH_THROTTLE_PASS);
  EXPECT_EQ(due, 1);
  __u32 taken[LATCH_ACT_KINDS];
  EXPECT_EQ(latch_throttle_take(&s, taken), 2u);
  EXPECT_EQ(taken[LATCH_ACT_OPEN], 1u);
  EXPECT_EQ(taken[LATCH_ACT_EXEC], 1u);
  EXPECT_EQ(latch_throttle_pending(&s), 0u);
  EXPECT_EQ(latch_throttle_take(&s, taken), 0u);  // each suppression in one summary only
  // No limit: everything passes.
  latch_throttle_state free{};
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(latch_throttle_step(&free, i, 0, window, LATCH_ACT_OPEN, &due), LATCH_THROTTLE_PASS);
  }
}

std::string Raw(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

TEST(ActivityRecord, EncodesAndViewsEveryField) {
  latch_activity_exec e{};
  e.h.kind = LATCH_ACT_EXEC;
  e.h.uid = 1000;
  e.h.grant_id = 42;
  e.h.tgid = 7;
  std::memcpy(e.h.comm, "bash", 4);
  const char data[] = "/bin/lsls\0-l\0";  // the path (no NUL), then argv each ending in NUL
  e.path_len = 7;
  e.args_len = sizeof(data) - 1 - 7;
  std::memcpy(e.data, data, sizeof(data) - 1);
  size_t size = offsetof(latch_activity_exec, data) + e.path_len + e.args_len;
  e.h.size = static_cast<__u16>(size);
  std::string encoded;
  ASSERT_TRUE(latch::record::EncodeActivityEvent(Raw(&e, size), &encoded).ok());
  latch::record::ActivitySummary s;
  nlohmann::json j;
  ASSERT_TRUE(latch::record::ViewActivityEvent(encoded, &s, &j).ok());
  EXPECT_EQ(s.kind, "exec");
  EXPECT_EQ(s.uid, 1000u);
  EXPECT_EQ(s.grant_id, 42u);
  EXPECT_EQ(j["path"], "/bin/ls");
  EXPECT_EQ(j["args"], nlohmann::json({"ls", "-l"}));
  EXPECT_EQ(j["comm"], "bash");
}

// Issue 13.8: an exec record's secrets are gone before it is encoded, and the
// record says so.
TEST(ActivityRecord, ExecArgumentsAreRedactedAndMarked) {
  latch_activity_exec e{};
  e.h.kind = LATCH_ACT_EXEC;
  const char data[] = "/usr/bin/mysqlmysql\0-pSECRET\0shop\0";
  e.path_len = 14;
  e.args_len = sizeof(data) - 1 - 14;
  std::memcpy(e.data, data, sizeof(data) - 1);
  size_t size = offsetof(latch_activity_exec, data) + e.path_len + e.args_len;
  e.h.size = static_cast<__u16>(size);
  std::unique_ptr<latch::agent::ArgvRedactor> redactor;
  ASSERT_TRUE(latch::agent::ArgvRedactor::Create({}, &redactor).ok());
  std::string encoded;
  bool redacted = false;
  ASSERT_TRUE(
      latch::record::EncodeActivityEvent(Raw(&e, size), &encoded, redactor.get(), &redacted).ok());
  EXPECT_TRUE(redacted);
  EXPECT_EQ(encoded.find("SECRET"), std::string::npos);
  latch::record::ActivitySummary s;
  nlohmann::json j;
  ASSERT_TRUE(latch::record::ViewActivityEvent(encoded, &s, &j).ok());
  EXPECT_EQ(j["args"], nlohmann::json({"mysql", "-p[REDACTED]", "shop"}));
  EXPECT_EQ(j["args_redacted"], true);
  // Without a redactor (or with nothing to take out) the record is unmarked.
  ASSERT_TRUE(latch::record::EncodeActivityEvent(Raw(&e, size), &encoded).ok());
  ASSERT_TRUE(latch::record::ViewActivityEvent(encoded, &s, &j).ok());
  EXPECT_FALSE(j.contains("args_redacted"));
}

TEST(ActivityRecord, MalformedRecordsAreRefused) {
  std::string out;
  latch_activity_exit x{};
  x.h.kind = LATCH_ACT_EXIT;
  x.h.size = sizeof(x);
  EXPECT_TRUE(latch::record::EncodeActivityEvent(Raw(&x, sizeof(x)), &out).ok());
  EXPECT_FALSE(latch::record::EncodeActivityEvent(Raw(&x, sizeof(x) - 4), &out).ok());  // short
  x.h.kind = 99;
  EXPECT_FALSE(latch::record::EncodeActivityEvent(Raw(&x, sizeof(x)), &out).ok());  // unknown
  latch_activity_open o{};
  o.h.kind = LATCH_ACT_OPEN;
  o.path_len = 300;  // more than the record holds
  o.h.size = offsetof(latch_activity_open, path) + 10;
  EXPECT_FALSE(latch::record::EncodeActivityEvent(Raw(&o, o.h.size), &out).ok());
  EXPECT_FALSE(latch::record::EncodeActivityEvent("short", &out).ok());
  // Only connects and opens come through io_uring; an unknown origin is damage.
  x.h.kind = LATCH_ACT_EXIT;
  x.h.via = LATCH_VIA_IO_URING;
  EXPECT_FALSE(latch::record::EncodeActivityEvent(Raw(&x, sizeof(x)), &out).ok());
  x.h.via = 7;
  EXPECT_FALSE(latch::record::EncodeActivityEvent(Raw(&x, sizeof(x)), &out).ok());
}

// Issue 13.6: what a process submitted through io_uring, by operation name;
// an opcode newer than the table is counted, not dropped.
TEST(ActivityRecord, IoUringCountsAreNamedByOperation) {
  latch_activity_uring_ops u{};
  u.h.kind = LATCH_ACT_URING_OPS;
  u.h.size = sizeof(u);
  u.window_start_ns = 5;
  u.window_end_ns = 9;
  u.submitted[18] = 2;                       // openat
  u.submitted[16] = 1;                       // connect
  u.submitted[LATCH_URING_OPCODES - 1] = 4;  // newer than this agent
  std::string encoded;
  ASSERT_TRUE(latch::record::EncodeActivityEvent(Raw(&u, sizeof(u)), &encoded).ok());
  latch::record::ActivitySummary s;
  nlohmann::json j;
  ASSERT_TRUE(latch::record::ViewActivityEvent(encoded, &s, &j).ok());
  EXPECT_EQ(s.kind, "io_uring_ops");
  EXPECT_EQ(j["submitted"], nlohmann::json({{"openat", 2}, {"connect", 1}, {"newer", 4}}));
  EXPECT_EQ(j["window_start_ns"], 5);

  latch_activity_connect c{};
  c.h.kind = LATCH_ACT_CONNECT;
  c.h.size = sizeof(c);
  c.h.via = LATCH_VIA_IO_URING;
  c.result = -111;
  ASSERT_TRUE(latch::record::EncodeActivityEvent(Raw(&c, sizeof(c)), &encoded).ok());
  ASSERT_TRUE(latch::record::ViewActivityEvent(encoded, &s, &j).ok());
  EXPECT_EQ(j["via"], "io_uring");
  EXPECT_EQ(j["result"], -111);
}

}  // namespace
