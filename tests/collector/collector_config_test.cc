// latch-collector's configuration: everything it reads, and a one-line error
// naming the setting for each kind of mistake.
#include "collector/ingest/collector_config.h"

#include <gtest/gtest.h>

#include "lib/tlog/cosignature.h"

namespace latch::collector {
namespace {

const std::string kHash(64, 'a');

TEST(CollectorConfig, ReadsEverySetting) {
  std::string text =
      "data_dir = \"/var/lib/latch\"\norigin = \"x.example/ledger\"\n"
      "endpoints = [\"tcp://0.0.0.0:7440\"]\npolicy = \"/etc/latch/policy.toml\"\n"
      "index = \"/srv/index.sqlite\"\n"
      "[api]\nlisten = \"0.0.0.0:9443\"\npublic_log = true\n"
      "[[api_token]]\nidentity = \"ann\"\nsha256 = \"" +
      kHash +
      "\"\n"
      "[[api_client]]\nidentity = \"bob\"\ncert_sha256 = \"" +
      std::string(64, 'b') + "\"\n";
  CollectorConfig c;
  Status s = ParseCollectorConfig(text, "collector.toml", &c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.index_path, "/srv/index.sqlite");
  EXPECT_TRUE(c.api_enabled);
  EXPECT_EQ(c.api_address, "0.0.0.0");
  EXPECT_EQ(c.api_port, 9443);
  EXPECT_TRUE(c.api_public_log);
  EXPECT_EQ(c.api_tokens.at(kHash), "ann");
  EXPECT_EQ(c.api_client_certs.at(std::string(64, 'b')), "bob");
}

// Where a standby's refusal says the sequencer's API is: the setting, or
// the listen address when it names one (not 0.0.0.0 or ::).
TEST(CollectorConfig, TheAdvertisedApiAddress) {
  const std::string base = "data_dir = \"/d\"\norigin = \"x.example/ledger\"\n";
  CollectorConfig c;
  ASSERT_TRUE(ParseCollectorConfig(base, "collector.toml", &c).ok());
  EXPECT_EQ(c.ApiAdvertised(8443), "");  // no API
  ASSERT_TRUE(ParseCollectorConfig(base + "[api]\nlisten = \"10.0.0.7:9443\"\n", "c", &c).ok());
  EXPECT_EQ(c.ApiAdvertised(9443), "https://10.0.0.7:9443");
  ASSERT_TRUE(ParseCollectorConfig(base + "[api]\nlisten = \"fd00::7:9443\"\n", "c", &c).ok());
  EXPECT_EQ(c.ApiAdvertised(9443), "https://[fd00::7]:9443");
  ASSERT_TRUE(ParseCollectorConfig(base + "[api]\nlisten = \"0.0.0.0:9443\"\n", "c", &c).ok());
  EXPECT_EQ(c.ApiAdvertised(9443), "");
  ASSERT_TRUE(
      ParseCollectorConfig(
          base + "[api]\nlisten = \"0.0.0.0:9443\"\nadvertise = \"https://c1.example:9443\"\n", "c",
          &c)
          .ok());
  EXPECT_EQ(c.ApiAdvertised(9443), "https://c1.example:9443");
}

TEST(CollectorConfig, WitnessesAndTheirQuorum) {
  const std::string base = "data_dir = \"/d\"\norigin = \"x.example/ledger\"\n";
  std::string witnesses;
  for (int i = 0; i < 3; ++i) {
    tlog::CosignatureSigner key;
    ASSERT_TRUE(tlog::CosignatureSigner::Generate("w" + std::to_string(i), &key).ok());
    witnesses += "[[witness]]\nurl = \"https://w" + std::to_string(i) +
                 ".example:8444\"\nkey = \"" + key.verifier().ToString() + "\"\n";
  }
  CollectorConfig c;
  ASSERT_TRUE(ParseCollectorConfig(base + witnesses, "collector.toml", &c).ok());
  ASSERT_EQ(c.witnesses.size(), 3u);
  EXPECT_EQ(c.witnesses[1].url, "https://w1.example:8444");
  EXPECT_EQ(c.witness_quorum, 2u);  // a majority by default
  EXPECT_EQ(c.witness_interval_ms, 1000u);
  Status s = ParseCollectorConfig(
      base + witnesses + "[witnessing]\nquorum = 3\ninterval_ms = 250\ntimeout_ms = 2000\n",
      "collector.toml", &c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.witness_quorum, 3u);
  EXPECT_EQ(c.witness_interval_ms, 250u);
  EXPECT_EQ(c.witness_timeout_ms, 2000u);
  ASSERT_TRUE(ParseCollectorConfig(base, "collector.toml", &c).ok());
  EXPECT_TRUE(c.witnesses.empty());
  EXPECT_EQ(c.witness_quorum, 0u);
}

TEST(CollectorConfig, MistakesAreNamed) {
  tlog::CosignatureSigner witness;
  ASSERT_TRUE(tlog::CosignatureSigner::Generate("witness.example/w", &witness).ok());
  const std::string kWitnessKey = witness.verifier().ToString();
  const std::string base = "data_dir = \"/d\"\norigin = \"x.example/ledger\"\n";
  struct Case {
    std::string text;
    std::string named;
  } cases[] = {
      {base + "indx = \"/x\"\n", "indx"},
      {base + "[[api_client]]\nidentity = \"bob\"\ncert_sha256 = \"ABC\"\n", "cert_sha256"},
      {base + "[[api_client]]\nidentity = \"bob\"\n", "cert_sha256"},
      {base + "[[api_client]]\nidentity = \"b\"\ncert_sha256 = \"" + kHash +
           "\"\n[[api_client]]\nidentity = \"c\"\ncert_sha256 = \"" + kHash + "\"\n",
       "twice"},
      {base + "[[api_token]]\nidentity = \"bob\"\nsha256 = \"xyz\"\n", "sha256"},
      {base + "[api]\nlisten = \"nowhere\"\n", "listen"},
      {base + "[api]\nidle_timeout_ms = 0\n", "idle_timeout_ms"},
      {base + "[api]\nidle_timeout_ms = 99999999999\n", "idle_timeout_ms"},
      {base + "[api]\nidle_timeout_ms = \"10s\"\n", "idle_timeout_ms"},
      {base + "[api]\nmax_connections_per_address = 65\n", "max_connections_per_address"},
      {base + "[api]\nmax_connections_per_address = -1\n", "max_connections_per_address"},
      {base + "[api]\npublic_log = 1\n", "public_log"},
      {base + "[api]\nsession_minutes = 0\n", "session_minutes"},
      {base + "[api]\nsession_minutes = 1441\n", "session_minutes"},
      {base + "[api]\nsession_minutes = \"8h\"\n", "session_minutes"},
      {base + "[api]\npublic_log = \"yes\"\n", "public_log"},
      {base + "[api]\nadvertise = \"http://c1.example:8443\"\n", "advertise"},
      {base + "[api]\nadvertise = \"https://" + std::string(40, 'c') + ".example\"\n", "advertise"},
      {base + "[api]\nadvertise = \"https://c1.example/\\u0001\"\n", "advertise"},
      {base + "[api]\nadvertise = \"https://c1\\\".example\"\n", "advertise"},
      {base + "[api]\nadvertise = 8443\n", "advertise"},
      {base + "api_client = 3\n", "api_client"},
      {base + "snapshot_every_entries = 10\n", "snapshot_every_entries"},
      {base + "snapshot_every_entries = -1\n", "snapshot_every_entries"},
      {base + "snapshot_every_entries = 99999999999999999\n", "snapshot_every_entries"},
      {base + "snapshot_every_entries = \"250k\"\n", "snapshot_every_entries"},
      {base + "[[webhook]]\nurl = \"ftp://x/\"\n", "url"},
      {base + "[[witness]]\nurl = \"http://w/\"\nkey = \"" + kWitnessKey + "\"\n", "url"},
      {base + "[[witness]]\nurl = \"https://w/ x\"\nkey = \"" + kWitnessKey + "\"\n", "url"},
      {base + "[[witness]]\nurl = \"https://w/\"\nkey = \"w+00000000+AAAA\"\n", "key"},
      {base + "[[witness]]\nurl = \"https://w/\"\n", "key"},
      {base + "[[witness]]\nurl = \"https://w/\"\nkey = \"" + kWitnessKey +
           "\"\n[[witness]]\nurl = \"https://v/\"\nkey = \"" + kWitnessKey + "\"\n",
       "named"},
      {base + "[witnessing]\nquorum = 1\n", "[[witness]]"},
      {base + "[[witness]]\nurl = \"https://w/\"\nkey = \"" + kWitnessKey +
           "\"\n[witnessing]\nquorum = 2\n",
       "quorum"},
      {base + "[[witness]]\nurl = \"https://w/\"\nkey = \"" + kWitnessKey +
           "\"\n[witnessing]\ninterval_ms = 0\n",
       "interval_ms"},
      {base + "[[witness]]\nurl = \"https://w/\"\nkey = \"" + kWitnessKey +
           "\"\n[witnessing]\ncadence = 1\n",
       "cadence"},
      {base + "[[webhook]]\nurl = \"http://x/\"\nevents = [\"nope\"]\n", "events"},
      {base + "[[webhook]]\nurl = \"http://x/\"\nsecrets = \"s\"\n", "secrets"},
  };
  for (const Case& k : cases) {
    CollectorConfig c;
    Status s = ParseCollectorConfig(k.text, "collector.toml", &c);
    EXPECT_FALSE(s.ok()) << k.text;
    EXPECT_NE(s.message().find(k.named), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace latch::collector
