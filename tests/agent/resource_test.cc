#include "schemas/resource.h"

#include <gtest/gtest.h>

#include "guard_decision.h"

namespace latch::agent {
namespace {

TEST(Cidr, ParsesBothFamiliesIntoOneSpace) {
  resource::Cidr c;
  ASSERT_TRUE(resource::Cidr::Parse("10.0.0.0/8", &c).ok());
  EXPECT_EQ(c.prefixlen, 104u);
  EXPECT_EQ(c.ToString(), "10.0.0.0/8");
  ASSERT_TRUE(resource::Cidr::Parse("192.0.2.7", &c).ok());
  EXPECT_EQ(c.prefixlen, 128u);
  resource::Cidr mapped;
  ASSERT_TRUE(resource::Cidr::Parse("::ffff:192.0.2.7/128", &mapped).ok());
  EXPECT_EQ(mapped, c);  // an IPv4-mapped IPv6 address is the IPv4 address
  ASSERT_TRUE(resource::Cidr::Parse("2001:db8::/32", &c).ok());
  EXPECT_EQ(c.ToString(), "2001:db8::/32");
}

TEST(Cidr, RejectsBadInput) {
  resource::Cidr c;
  for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/33", "10.0.0.1/8", "300.0.0.0/8", "hello",
                          "2001:db8::1/32", "::/129", "10.0.0.0/-1", "10.0.0.0/8x"}) {
    EXPECT_FALSE(resource::Cidr::Parse(bad, &c).ok()) << bad;
  }
}

TEST(Cidr, Contains) {
  resource::Cidr net, host, other;
  ASSERT_TRUE(resource::Cidr::Parse("10.1.0.0/16", &net).ok());
  ASSERT_TRUE(resource::Cidr::Parse("10.1.2.3", &host).ok());
  ASSERT_TRUE(resource::Cidr::Parse("10.2.0.0/16", &other).ok());
  EXPECT_TRUE(net.Contains(host));
  EXPECT_FALSE(host.Contains(net));
  EXPECT_FALSE(net.Contains(other));
}

TEST(Resource, ParsersRefuseUnknownValues) {
  resource::Mode m;
  resource::Protocol p;
  uint16_t lo, hi;
  EXPECT_TRUE(resource::ParseMode("audit", &m).ok());
  EXPECT_FALSE(resource::ParseMode("block", &m).ok());
  EXPECT_FALSE(resource::ParseProtocol("sctp", &p).ok());
  ASSERT_TRUE(resource::ParsePortRange("8000-8100", &lo, &hi).ok());
  EXPECT_EQ(lo, 8000);
  EXPECT_EQ(hi, 8100);
  for (const char* bad : {"", "70000", "10-5", "1-", "-1", "a", "1-2-3"}) {
    EXPECT_FALSE(resource::ParsePortRange(bad, &lo, &hi).ok()) << bad;
  }
}

// A narrower CIDR inherits the rules of the wider ones that contain it,
// narrower first, because the kernel's trie returns only the longest match.
TEST(Resource, CompileFoldsCoveringRules) {
  resource::Resource wide{1, "net", {}, resource::Protocol::kTcp, 22, 22, resource::Mode::kEnforce};
  resource::Resource narrow{
      2, "db", {}, resource::Protocol::kTcp, 5432, 5432, resource::Mode::kAudit};
  ASSERT_TRUE(resource::Cidr::Parse("10.0.0.0/8", &wide.destinations.emplace_back()).ok());
  ASSERT_TRUE(resource::Cidr::Parse("10.1.2.3", &narrow.destinations.emplace_back()).ok());
  std::map<std::pair<uint32_t, std::array<uint8_t, 16>>, latch_cidr_rules> out;
  ASSERT_TRUE(resource::CompileResources({wide, narrow}, &out).ok());
  ASSERT_EQ(out.size(), 2u);
  const latch_cidr_rules& host = out.at({128, narrow.destinations[0].addr});
  ASSERT_EQ(host.count, 2u);
  // The enforced rule first, whatever its specificity.
  EXPECT_EQ(host.rules[0].resource_id, 1u);
  EXPECT_EQ(host.rules[1].resource_id, 2u);
  EXPECT_EQ(out.at({104, wide.destinations[0].addr}).count, 1u);
}

// Issue 13.3: an enforced 127.0.0.0/8 tcp 15355 and an audit 127.0.0.2 on any
// port: 127.0.0.2:15355 must meet the enforced rule (it was allowed as audit).
TEST(Resource, EnforceWinsOverANarrowerAuditResource) {
  resource::Resource wide{1,     "loopback-db",           {}, resource::Protocol::kTcp, 15355,
                          15355, resource::Mode::kEnforce};
  resource::Resource narrow{2,     "watch-one",           {}, resource::Protocol::kAny, 0,
                            65535, resource::Mode::kAudit};
  ASSERT_TRUE(resource::Cidr::Parse("127.0.0.0/8", &wide.destinations.emplace_back()).ok());
  ASSERT_TRUE(resource::Cidr::Parse("127.0.0.2", &narrow.destinations.emplace_back()).ok());
  std::map<std::pair<uint32_t, std::array<uint8_t, 16>>, latch_cidr_rules> out;
  ASSERT_TRUE(resource::CompileResources({narrow, wide}, &out).ok());
  const latch_cidr_rules& host = out.at({128, narrow.destinations[0].addr});
  int idx = latch_match_rule(&host, 6, 15355);
  ASSERT_GE(idx, 0);
  EXPECT_EQ(host.rules[idx].resource_id, 1u);
  EXPECT_EQ(host.rules[idx].mode, LATCH_MODE_ENFORCE);
  // Other ports of 127.0.0.2 stay audited.
  idx = latch_match_rule(&host, 6, 80);
  ASSERT_GE(idx, 0);
  EXPECT_EQ(host.rules[idx].resource_id, 2u);
}

// Issue 13.2: a resource naming one loopback address is warned about.
TEST(Resource, SingleLoopbackAddressesAreWarnedAbout) {
  auto make = [](const char* name, std::vector<const char*> dests) {
    resource::Resource r{
        1, name, {}, resource::Protocol::kTcp, 5432, 5432, resource::Mode::kEnforce};
    for (const char* d : dests)
      EXPECT_TRUE(resource::Cidr::Parse(d, &r.destinations.emplace_back()).ok());
    return r;
  };
  auto w = resource::SingleLoopbackWarnings(
      {make("pg", {"127.0.0.1"}), make("pg6", {"::1"}), make("both", {"127.0.0.1", "::1"}),
       make("all", {"127.0.0.0/8", "::1/128", "10.0.0.5"}), make("lo", {"127.0.0.0/8", "::1"}),
       make("remote", {"10.0.0.5", "fd00::5"})});
  ASSERT_EQ(w.size(), 3u);
  EXPECT_NE(w[0].find("'pg'"), std::string::npos);
  EXPECT_NE(w[0].find("127.0.0.1"), std::string::npos);
  EXPECT_NE(w[1].find("'pg6'"), std::string::npos);
  EXPECT_NE(w[2].find("'both'"), std::string::npos);
}

// Issue 13.2: "local" is every address of this host: its loopback addresses
// in the trie, the rest in the kernel's "local" rules (enforced first); a
// misspelling is refused with the two forms named.
TEST(Resource, LocalStandsForLoopbackInTheTrieAndTheRestAtThePacket) {
  resource::Resource audit{1,     "everything-here",     {}, resource::Protocol::kAny, 0,
                           65535, resource::Mode::kAudit};
  resource::Resource pg{
      2, "pg", {}, resource::Protocol::kTcp, 5432, 5432, resource::Mode::kEnforce};
  ASSERT_TRUE(resource::ParseDestination("local", &audit).ok());
  ASSERT_TRUE(resource::ParseDestination("local", &pg).ok());
  EXPECT_TRUE(pg.local);
  ASSERT_EQ(pg.destinations.size(), 2u);
  EXPECT_EQ(pg.destinations[0].ToString(), "127.0.0.0/8");
  EXPECT_EQ(pg.destinations[1].ToString(), "::1/128");
  latch_cidr_rules local{};
  ASSERT_TRUE(resource::CompileLocalRules({audit, pg}, &local).ok());
  ASSERT_EQ(local.count, 2u);
  EXPECT_EQ(local.rules[latch_match_rule(&local, 6, 5432)].resource_id, 2u);  // enforce first
  EXPECT_EQ(local.rules[latch_match_rule(&local, 17, 53)].resource_id, 1u);
  EXPECT_TRUE(resource::SingleLoopbackWarnings({pg}).empty());
  resource::Resource typo{3, "typo", {}, resource::Protocol::kTcp, 1, 1, resource::Mode::kEnforce};
  Status s = resource::ParseDestination("locall", &typo);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("\"local\""), std::string::npos) << s.ToString();
  EXPECT_FALSE(typo.local);
  std::map<std::pair<uint32_t, std::array<uint8_t, 16>>, latch_cidr_rules> trie;
  ASSERT_TRUE(resource::CompileResources({audit, pg}, &trie).ok());
  EXPECT_EQ(trie.size(), 2u);  // 127.0.0.0/8 and ::1
}

// Within one mode the most specific CIDR's resource decides.
TEST(Resource, WithinAModeTheNarrowerResourceDecides) {
  resource::Resource wide{1, "net", {}, resource::Protocol::kTcp, 22, 22, resource::Mode::kEnforce};
  resource::Resource narrow{
      2, "bastion", {}, resource::Protocol::kTcp, 22, 22, resource::Mode::kEnforce};
  ASSERT_TRUE(resource::Cidr::Parse("10.0.0.0/8", &wide.destinations.emplace_back()).ok());
  ASSERT_TRUE(resource::Cidr::Parse("10.1.2.3", &narrow.destinations.emplace_back()).ok());
  std::map<std::pair<uint32_t, std::array<uint8_t, 16>>, latch_cidr_rules> out;
  ASSERT_TRUE(resource::CompileResources({wide, narrow}, &out).ok());
  const latch_cidr_rules& host = out.at({128, narrow.destinations[0].addr});
  EXPECT_EQ(host.rules[latch_match_rule(&host, 6, 22)].resource_id, 2u);
}

TEST(Resource, CompileRefusesInconsistentSets) {
  resource::Resource a{1, "a", {}, resource::Protocol::kTcp, 1, 1, resource::Mode::kEnforce};
  ASSERT_TRUE(resource::Cidr::Parse("10.0.0.0/8", &a.destinations.emplace_back()).ok());
  resource::Resource dup = a;
  std::map<std::pair<uint32_t, std::array<uint8_t, 16>>, latch_cidr_rules> out;
  EXPECT_FALSE(resource::CompileResources({a, dup}, &out).ok());  // same id twice
  resource::Resource zero = a;
  zero.id = 0;
  EXPECT_FALSE(resource::CompileResources({zero}, &out).ok());
  resource::Resource empty{
      3, "empty", {}, resource::Protocol::kTcp, 1, 1, resource::Mode::kEnforce};
  EXPECT_FALSE(resource::CompileResources({empty}, &out).ok());
  std::vector<resource::Resource> many;
  for (uint32_t i = 1; i <= LATCH_MAX_RULES_PER_CIDR + 1; ++i) {
    resource::Resource r = a;
    r.id = i;
    many.push_back(r);
  }
  EXPECT_FALSE(resource::CompileResources(many, &out).ok());
}

}  // namespace
}  // namespace latch::agent
