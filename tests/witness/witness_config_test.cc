// latch-witness's configuration: what it reads, and one line naming the
// setting for each kind of mistake.
#include "witness/witness_config.h"

#include <gtest/gtest.h>

namespace latch::witness {
namespace {

TEST(WitnessConfig, ReadsEverySettingAndNamesEachMistake) {
  tlog::NoteSigner log, other;
  ASSERT_TRUE(tlog::NoteSigner::Generate("latch.example/ledger", &log).ok());
  ASSERT_TRUE(tlog::NoteSigner::Generate("other.example/ledger", &other).ok());
  const std::string vkey = log.verifier().ToString();
  const std::string head = "name = \"witness.example/w1\"\ndata_dir = \"/var/lib/w\"\n";
  const std::string log_table =
      "[[log]]\norigin = \"latch.example/ledger\"\nkeys = [\"" + vkey + "\"]\n";
  WitnessConfig c;
  Status s = ParseWitnessConfig(
      head + "listen = \"0.0.0.0:9444\"\nidle_timeout_ms = 5000\n" + log_table, "witness.toml", &c);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(c.name, "witness.example/w1");
  EXPECT_EQ(c.listen_address, "0.0.0.0");
  EXPECT_EQ(c.port, 9444);
  EXPECT_EQ(c.idle_timeout_ms, 5000);
  ASSERT_EQ(c.logs.count("latch.example/ledger"), 1u);
  EXPECT_EQ(c.logs.at("latch.example/ledger").front().ToString(), vkey);
  EXPECT_EQ(c.key_path(), "/var/lib/w/witness.key");

  struct Case {
    std::string text;
    std::string named;
  } cases[] = {
      {"data_dir = \"/d\"\n" + log_table, "name"},
      {"name = \"w\"\n" + log_table, "data_dir"},
      {"name = \"a witness\"\ndata_dir = \"/d\"\n" + log_table, "name"},
      {head, "[[log]]"},
      {head + "listen = \"nowhere\"\n" + log_table, "listen"},
      {head + "listen = \"1.2.3.4:99999\"\n" + log_table, "listen"},
      {head + "idle_timeout_ms = 0\n" + log_table, "idle_timeout_ms"},
      {head + "colour = \"blue\"\n" + log_table, "colour"},
      {head + "[[log]]\norigin = \"latch.example/ledger\"\n", "keys"},
      {head + "[[log]]\norigin = \"latch.example/ledger\"\nkeys = [\"nonsense\"]\n",
       "latch.example"},
      {head + "[[log]]\norigin = \"latch.example/ledger\"\nkeys = [\"" +
           other.verifier().ToString() + "\"]\n",
       "other.example"},
      {head + log_table + log_table, "twice"},
      {head + "log = 3\n", "log"},
  };
  for (const Case& k : cases) {
    WitnessConfig bad;
    s = ParseWitnessConfig(k.text, "witness.toml", &bad);
    EXPECT_FALSE(s.ok()) << k.text;
    EXPECT_NE(s.message().find(k.named), std::string::npos) << s.message();
    EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
  }
}

}  // namespace
}  // namespace latch::witness
