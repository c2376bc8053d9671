// The guard's decision functions, compiled for the host from the same header
// the BPF programs include.
#include "guard_decision.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>

namespace {

latch_cidr_rules Rules(std::initializer_list<latch_rule> rules) {
  latch_cidr_rules r{};
  for (const latch_rule& rule : rules) r.rules[r.count++] = rule;
  return r;
}

TEST(GuardDecision, MatchesProtocolAndPortRange) {
  auto r = Rules({{7, 5432, 5432, 6, LATCH_MODE_ENFORCE, {}},
                  {8, 8000, 8100, LATCH_PROTO_ANY, LATCH_MODE_AUDIT, {}}});
  EXPECT_EQ(latch_match_rule(&r, 6, 5432), 0);
  EXPECT_EQ(latch_match_rule(&r, 17, 5432), -1);  // rule 0 is TCP only
  EXPECT_EQ(latch_match_rule(&r, 17, 8000), 1);
  EXPECT_EQ(latch_match_rule(&r, 6, 8100), 1);
  EXPECT_EQ(latch_match_rule(&r, 6, 8101), -1);
  EXPECT_EQ(latch_match_rule(&r, 6, 7999), -1);
}

TEST(GuardDecision, FirstMatchingRuleWins) {
  auto r = Rules({{1, 22, 22, 6, LATCH_MODE_ENFORCE, {}}, {2, 0, 65535, 6, LATCH_MODE_AUDIT, {}}});
  EXPECT_EQ(latch_match_rule(&r, 6, 22), 0);
  EXPECT_EQ(latch_match_rule(&r, 6, 23), 1);
}

TEST(GuardDecision, CountIsClampedToTheArray) {
  latch_cidr_rules r{};
  r.count = 1000;  // a corrupt count must not read past the rules
  r.rules[LATCH_MAX_RULES_PER_CIDR - 1] = {3, 1, 1, 6, 0, {}};
  // Rules 0..14 are zero (port 0 only); the last slot is still read, nothing past it.
  EXPECT_EQ(latch_match_rule(&r, 6, 1), LATCH_MAX_RULES_PER_CIDR - 1);
  EXPECT_EQ(latch_match_rule(&r, 6, 2), -1);
}

TEST(GuardDecision, GrantWindowIsHalfOpen) {
  latch_grant_value g{100, 200, 9};
  EXPECT_FALSE(latch_grant_live(&g, 99));
  EXPECT_TRUE(latch_grant_live(&g, 100));
  EXPECT_TRUE(latch_grant_live(&g, 199));
  EXPECT_FALSE(latch_grant_live(&g, 200));
  EXPECT_FALSE(latch_grant_live(nullptr, 150));
}

TEST(GuardDecision, VerdictByModeAndGrant) {
  EXPECT_EQ(latch_verdict_for(LATCH_MODE_ENFORCE, 1), LATCH_VERDICT_ALLOW_GRANT);
  EXPECT_EQ(latch_verdict_for(LATCH_MODE_AUDIT, 1), LATCH_VERDICT_ALLOW_GRANT);
  EXPECT_EQ(latch_verdict_for(LATCH_MODE_ENFORCE, 0), LATCH_VERDICT_DENY);
  EXPECT_EQ(latch_verdict_for(LATCH_MODE_AUDIT, 0), LATCH_VERDICT_AUDIT_ALLOW);
}

TEST(GuardDecision, MapsIpv4IntoIpv6) {
  __u8 out[16];
  const __u8 ip[4] = {192, 0, 2, 7};
  __u32 be;
  memcpy(&be, ip, 4);
  latch_map_ipv4(be, out);
  const __u8 want[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7};
  EXPECT_EQ(memcmp(out, want, 16), 0);
}

// Issue 13.1: the unspecified address is decided as the address the kernel
// routes it to.
struct Addr {
  __u8 b[16];
};
Addr V6(const char* text) {
  Addr a{};
  EXPECT_EQ(inet_pton(AF_INET6, text, a.b), 1) << text;
  return a;
}

TEST(GuardDecision, UnspecifiedIpv4GoesToLoopbackOrTheBoundSource) {
  Addr dst = V6("::ffff:0.0.0.0");
  Addr unbound = V6("::ffff:0.0.0.0");
  latch_effective_destination(dst.b, unbound.b);
  EXPECT_EQ(memcmp(dst.b, V6("::ffff:127.0.0.1").b, 16), 0);

  dst = V6("::ffff:0.0.0.0");
  Addr bound = V6("::ffff:10.1.2.3");
  latch_effective_destination(dst.b, bound.b);
  EXPECT_EQ(memcmp(dst.b, bound.b, 16), 0);

  // From an IPv6 socket with no source: still IPv4 loopback.
  dst = V6("::ffff:0.0.0.0");
  Addr none = V6("::");
  latch_effective_destination(dst.b, none.b);
  EXPECT_EQ(memcmp(dst.b, V6("::ffff:127.0.0.1").b, 16), 0);
}

TEST(GuardDecision, UnspecifiedIpv6GoesToLoopback) {
  Addr dst = V6("::");
  Addr none = V6("::");
  latch_effective_destination(dst.b, none.b);
  EXPECT_EQ(memcmp(dst.b, V6("::1").b, 16), 0);

  // Bound to a global IPv6 address: still ::1 (tcp_v6_connect).
  dst = V6("::");
  Addr bound = V6("2001:db8::5");
  latch_effective_destination(dst.b, bound.b);
  EXPECT_EQ(memcmp(dst.b, V6("::1").b, 16), 0);

  // Bound to an IPv4-mapped address: mapped loopback.
  dst = V6("::");
  Addr mapped = V6("::ffff:10.1.2.3");
  latch_effective_destination(dst.b, mapped.b);
  EXPECT_EQ(memcmp(dst.b, V6("::ffff:127.0.0.1").b, 16), 0);
}

TEST(GuardDecision, OtherAddressesAreLeftAlone) {
  for (const char* text :
       {"::ffff:127.0.0.1", "::1", "::2", "::ffff:0.0.0.1", "2001:db8::", "::ffff:1.0.0.0"}) {
    Addr a{};
    ASSERT_EQ(inet_pton(AF_INET6, text, a.b), 1) << text;
    Addr before = a;
    Addr src = V6("::ffff:10.0.0.1");
    latch_effective_destination(a.b, src.b);
    EXPECT_EQ(memcmp(a.b, before.b, 16), 0) << text;
  }
}

// Issue 13.10: below the mark a record does not wake the reader.
TEST(GuardDecision, RingbufWakesOnlyPastTheMark) {
  EXPECT_EQ(latch_ringbuf_flags(0, 0), 0u);  // no mark: the kernel's default
  EXPECT_EQ(latch_ringbuf_flags(1u << 20, 0), 0u);
  EXPECT_EQ(latch_ringbuf_flags(0, 4096), static_cast<__u64>(LATCH_RB_NO_WAKEUP));
  EXPECT_EQ(latch_ringbuf_flags(4095, 4096), static_cast<__u64>(LATCH_RB_NO_WAKEUP));
  EXPECT_EQ(latch_ringbuf_flags(4096, 4096), static_cast<__u64>(LATCH_RB_FORCE_WAKEUP));
  EXPECT_EQ(LATCH_RB_NO_WAKEUP, BPF_RB_NO_WAKEUP);
  EXPECT_EQ(LATCH_RB_FORCE_WAKEUP, BPF_RB_FORCE_WAKEUP);
}

}  // namespace
