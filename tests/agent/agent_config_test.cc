#include "agent/agent_config.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "agent/agent_enrolment.h"
#include "lib/tlog/signed_note.h"
#include "temp_dir.h"

namespace latch::agent {
namespace {

constexpr char kGood[] = R"(
host_id = "db-1"
cgroup = "/sys/fs/cgroup/unified/x"
ring_buffer_bytes = 65536

[[resource]]
id = 1
name = "postgres"
destinations = ["10.0.0.5/32", "fd00::5"]
protocol = "tcp"
ports = "5432"
mode = "enforce"

[[resource]]
id = 2
name = "dns"
destinations = ["10.0.0.0/8"]
protocol = "udp"
ports = "53"
mode = "audit"
)";

TEST(AgentConfig, ParsesAGoodFile) {
  AgentConfig c;
  Status s = ParseAgentConfig(kGood, "agent.toml", &c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.host_id, "db-1");
  EXPECT_EQ(c.instance, "default");
  EXPECT_EQ(c.ring_buffer_bytes, 65536u);
  EXPECT_TRUE(c.cut_established_connections);  // the default: stop connections at grant end
  ASSERT_EQ(c.resources.size(), 2u);
  EXPECT_EQ(c.resources[0].destinations.size(), 2u);
  EXPECT_EQ(c.resources[1].mode, resource::Mode::kAudit);
  EXPECT_EQ(c.resources[1].protocol, resource::Protocol::kUdp);
  ASSERT_TRUE(ResolveAgentDefaults(&c).ok());
  EXPECT_EQ(c.pin_dir, "/sys/fs/bpf/latch/default");
}

// Issue 13.2: "local" among the destinations (with a CIDR beside it).
// The example the agent's package ships parses as it is.
TEST(AgentConfig, TheShippedExampleParses) {
  AgentConfig c;
  Status s = LoadAgentConfig(std::string(LATCH_SOURCE_DIR) + "/deploy/examples/agent.toml", &c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.host_id, "db-host-1");
  EXPECT_TRUE(c.resources.empty());  // the collector's policy gives them
}

// Issue 16: the collector's keys may come from `latch-agent enrol`'s file;
// what the config sets wins; without either, the error says how to enrol.
TEST(AgentConfig, WhatTheCollectorSectionLeavesOutComesFromTheEnrolment) {
  ledger::TempDir dir;
  const std::string state = dir / "state";
  std::filesystem::create_directories(state);
  const std::string text = "host_id = \"db-2\"\n[collector]\nstate_dir = \"" + state + "\"\n";
  AgentConfig bare;
  ASSERT_TRUE(ParseAgentConfig(text, "agent.toml", &bare).ok());
  AgentConfig c = bare;
  Status s = ResolveAgentDefaults(&c);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("missing endpoints server_public_key grant_key ledger_key"),
            std::string::npos)
      << s.ToString();
  EXPECT_NE(s.message().find("latch-agent enrol"), std::string::npos) << s.ToString();
  c = bare;
  EXPECT_TRUE(ResolveAgentDefaults(&c, CollectorKeys::kOptional).ok());  // enrol, key

  tlog::NoteSigner grant, ledger;
  ASSERT_TRUE(tlog::NoteSigner::Generate("g.example", &grant).ok());
  ASSERT_TRUE(tlog::NoteSigner::Generate("l.example", &ledger).ok());
  Enrolment e;
  e.host_id = "db-2";
  e.endpoints = {"tcp://10.1.1.1:7440"};
  e.server_public_key = std::string(40, 'b');
  e.grant_keys = {grant.verifier().ToString()};
  e.ledger_key = ledger.verifier().ToString();
  std::ofstream(EnrolmentPath(state)) << FormatEnrolment(e);
  c = bare;
  s = ResolveAgentDefaults(&c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.collector.endpoints, e.endpoints);
  EXPECT_EQ(c.collector.server_public_key, e.server_public_key);
  EXPECT_EQ(c.collector.grant_keys, e.grant_keys);
  EXPECT_EQ(c.collector.ledger_key, e.ledger_key);
  // The config's own endpoints win.
  AgentConfig own;
  ASSERT_TRUE(
      ParseAgentConfig(text + "endpoints = [\"tcp://other:1\"]\n", "agent.toml", &own).ok());
  ASSERT_TRUE(ResolveAgentDefaults(&own).ok());
  EXPECT_EQ(own.collector.endpoints, std::vector<std::string>{"tcp://other:1"});
  EXPECT_EQ(own.collector.ledger_key, e.ledger_key);
  // Enrolled as another host: refused, with what to do.
  AgentConfig other;
  std::string renamed = text;
  renamed.replace(renamed.find("db-2"), 4, "db-3");
  ASSERT_TRUE(ParseAgentConfig(renamed, "agent.toml", &other).ok());
  s = ResolveAgentDefaults(&other);
  EXPECT_NE(s.message().find("enrol again"), std::string::npos) << s.ToString();
  // A damaged file (cut short, garbage) is an error naming it, never a crash.
  for (const std::string& damaged :
       {FormatEnrolment(e).substr(0, 120), std::string("\x01\xff[[[\n"),
        std::string("host_id = \"db-2\"\nledger_key = \"nope\"\n")}) {
    std::ofstream(EnrolmentPath(state), std::ios::trunc) << damaged;
    c = bare;
    s = ResolveAgentDefaults(&c);
    EXPECT_FALSE(s.ok()) << damaged;
    EXPECT_NE(s.message().find("enrolment.toml"), std::string::npos) << s.ToString();
  }
}

TEST(AgentConfig, LocalIsADestination) {
  std::string text = kGood;
  std::string from = "destinations = [\"10.0.0.5/32\", \"fd00::5\"]";
  text.replace(text.find(from), from.size(), "destinations = [\"local\", \"10.0.0.5/32\"]");
  AgentConfig c;
  Status s = ParseAgentConfig(text, "agent.toml", &c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(c.resources[0].local);
  EXPECT_EQ(c.resources[0].destinations.size(), 3u);  // 127.0.0.0/8, ::1, 10.0.0.5
  EXPECT_FALSE(c.resources[1].local);
}

// Each bad setting is refused with a message that names it.
TEST(AgentConfig, BadSettingsAreNamed) {
  auto with = [](std::string from, const std::string& to) {
    std::string text = kGood;
    size_t at = text.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return text.replace(at, from.size(), to);
  };
  const std::pair<std::string, std::string> cases[] = {
      {with("mode = \"enforce\"", "mode = \"block\""), "mode"},
      {with("\"10.0.0.5/32\"", "\"10.0.0.5/33\""), "CIDR"},
      {with("\"10.0.0.0/8\"", "\"10.0.0.1/8\""), "CIDR"},
      {with("ports = \"5432\"", "ports = \"99999\""), "port"},
      {with("protocol = \"tcp\"", "protocol = \"sctp\""), "protocol"},
      {with("host_id = \"db-1\"", ""), "host_id"},
      {with("ring_buffer_bytes = 65536", "ring_buffer_bytes = 1000"), "ring_buffer_bytes"},
      {with("host_id", "hostid"), "hostid"},
      {with("id = 2", "id = 1"), "used twice"},
      {with("id = 2", "id = 0"), "id"},
      {with("destinations = [\"10.0.0.0/8\"]", "destinations = []"), "destinations"},
      {with("ring_buffer_bytes = 65536", "cut_established_connections = \"yes\""),
       "cut_established_connections"},
      {with("ring_buffer_bytes = 65536", "drain_interval_ms = 10001"), "drain_interval_ms"},
      {with("ring_buffer_bytes = 65536", "drain_interval_ms = -1"), "drain_interval_ms"},
      {with("ring_buffer_bytes = 65536", "guard_check_ms = \"2s\""), "guard_check_ms"},
      {with("ring_buffer_bytes = 65536", "guard_check_ms = 99999999999"), "guard_check_ms"},
      {with("ring_buffer_bytes = 65536", "reattach_guard = 1"), "reattach_guard"},
      {"host_id = ", "agent.toml:1"},
  };
  for (const auto& [text, needle] : cases) {
    AgentConfig c;
    Status s = ParseAgentConfig(text, "agent.toml", &c);
    ASSERT_FALSE(s.ok()) << needle;
    EXPECT_NE(s.message().find(needle), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find("agent.toml"), std::string::npos) << s.ToString();
  }
}

// grant_key is one verifier key, or a list of them while the collector's
// grant key is rotated; a bad entry is named.
TEST(AgentConfig, GrantKeyIsOneKeyOrAList) {
  tlog::NoteSigner a, b;
  ASSERT_TRUE(tlog::NoteSigner::Generate("c/grants", &a).ok());
  ASSERT_TRUE(tlog::NoteSigner::Generate("c/grants", &b).ok());
  tlog::NoteSigner ledger;
  ASSERT_TRUE(tlog::NoteSigner::Generate("c/ledger", &ledger).ok());
  auto with_grant_key = [&](const std::string& value) {
    return std::string(kGood) +
           "[collector]\nendpoints = [\"tcp://127.0.0.1:7440\"]\n"
           "server_public_key = \"" +
           std::string(40, 'a') + "\"\nledger_key = \"" + ledger.verifier().ToString() +
           "\"\ngrant_key = " + value + "\n";
  };
  const std::string ka = "\"" + a.verifier().ToString() + "\"";
  const std::string kb = "\"" + b.verifier().ToString() + "\"";
  AgentConfig one, two;
  Status s = ParseAgentConfig(with_grant_key(ka), "agent.toml", &one);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(one.collector.grant_keys, std::vector<std::string>{a.verifier().ToString()});
  s = ParseAgentConfig(with_grant_key("[" + ka + ", " + kb + "]"), "agent.toml", &two);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(two.collector.grant_keys.size(), 2u);
  for (const std::string& bad : {std::string("[]"), "[" + ka + ", 5]", std::string("\"nope\""),
                                 std::string("7"), "[" + ka + ", \"nope\"]"}) {
    AgentConfig c;
    s = ParseAgentConfig(with_grant_key(bad), "agent.toml", &c);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_NE(s.message().find("grant_key"), std::string::npos) << s.ToString();
  }
}

TEST(AgentConfig, ActivitySettings) {
  AgentConfig c;
  ASSERT_TRUE(ParseAgentConfig(kGood, "agent.toml", &c).ok());
  EXPECT_EQ(c.activity.mode, WatchMode::kGrants);  // the default: holders of a live grant
  EXPECT_EQ(c.activity.path_prefixes.front(), "/etc/shadow");
  std::string text = std::string(kGood) +
                     "[activity]\nwatch = \"cgroup\"\ncgroup = \"/sys/fs/cgroup/ops\"\n"
                     "paths = [\"/var/lib/postgresql\"]\nthrottle_events = 10\n"
                     "throttle_window_ms = 500\n";
  Status s = ParseAgentConfig(text, "agent.toml", &c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.activity.mode, WatchMode::kCgroup);
  EXPECT_EQ(c.activity.cgroup_dir, "/sys/fs/cgroup/ops");
  EXPECT_EQ(c.activity.path_prefixes, std::vector<std::string>{"/var/lib/postgresql"});
  EXPECT_EQ(c.activity.throttle_events, 10u);
  EXPECT_EQ(c.activity.throttle_window_ms, 500u);
  ASSERT_TRUE(ResolveAgentDefaults(&c).ok());
  EXPECT_EQ(c.activity.pin_dir, "/sys/fs/bpf/latch/default/activity");
  // Redaction: defaults on, patterns added.
  EXPECT_TRUE(c.redaction.defaults);
  s = ParseAgentConfig(
      std::string(kGood) + "[activity]\nredact_defaults = false\nredact = [\"--vault=(\\\\S+)\"]\n",
      "agent.toml", &c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_FALSE(c.redaction.defaults);
  EXPECT_EQ(c.redaction.patterns, std::vector<std::string>{"--vault=(\\S+)"});

  const std::pair<std::string, std::string> bad[] = {
      {"[activity]\nwatch = \"some\"\n", "watch mode"},
      {"[activity]\nwatch = \"cgroup\"\n", "needs 'cgroup'"},
      {"[activity]\npaths = [\"relative/path\"]\n", "absolute"},
      {"[activity]\nthrottle_window_ms = 0\n", "throttle_window_ms"},
      {"[activity]\ncolour = 1\n", "colour"},
      {"[activity]\nredact = \"--token=(\\\\S+)\"\n", "'redact' must be a list"},
      {"[activity]\nredact = [\"(unclosed\"]\n", "(unclosed"},
      {"[activity]\nredact = [\"\"]\n", "non-empty"},
      {"[activity]\nredact = [3]\n", "non-empty strings"},
      {"[activity]\nredact_defaults = \"no\"\n", "redact_defaults"},
  };
  for (const auto& [section, needle] : bad) {
    AgentConfig b;
    Status e = ParseAgentConfig(std::string(kGood) + section, "agent.toml", &b);
    ASSERT_FALSE(e.ok()) << needle;
    EXPECT_NE(e.message().find(needle), std::string::npos) << e.ToString();
  }
}

}  // namespace
}  // namespace latch::agent
