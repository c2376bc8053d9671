// Join tokens and host ids: what an operator pastes, and what a hostile
// peer or a mangled copy sends.
#include "schemas/join_token.h"

#include <gtest/gtest.h>
#include <zmq.h>

#include "schemas/host_id.h"

namespace latch::schema {
namespace {

std::string NewServerKey() {
  char pub[41], sec[41];
  zmq_curve_keypair(pub, sec);
  return pub;
}

TEST(JoinTokenTest, RoundTripsAndNamesTheCollectorKey) {
  const std::string key = NewServerKey();
  JoinToken t;
  ASSERT_TRUE(MakeJoinToken(key, &t).ok());
  const std::string text = EncodeJoinToken(t);
  EXPECT_EQ(text.rfind("latchjoin1.", 0), 0u);
  EXPECT_EQ(text.size(), 11u + 86u);
  EXPECT_EQ(text.find_first_not_of(
                "latchjoin1.ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
            std::string::npos)
      << "not shell-safe: " << text;
  JoinToken back;
  ASSERT_TRUE(DecodeJoinToken(text, &back).ok());
  EXPECT_EQ(back.secret, t.secret);
  EXPECT_EQ(CurveKeyZ85(back.collector_key), key);
  EXPECT_EQ(CurveKeyPin(back.collector_key), CurveKeyPin(key));
  // Two tokens never share a secret.
  JoinToken other;
  ASSERT_TRUE(MakeJoinToken(key, &other).ok());
  EXPECT_NE(other.secret, t.secret);
  EXPECT_NE(JoinSecretHash(other.secret), JoinSecretHash(t.secret));
}

TEST(JoinTokenTest, APinIsTheSha256OfTheRawKey) {
  std::array<uint8_t, 32> zeros{};
  // SHA-256 of 32 zero bytes.
  EXPECT_EQ(CurveKeyPin(zeros),
            "sha256:66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");
  EXPECT_EQ(CurveKeyPin(CurveKeyZ85(zeros)), CurveKeyPin(zeros));
  EXPECT_EQ(CurveKeyPin("not a key"), "");
}

TEST(JoinTokenTest, MangledAndHostileTokensAreRefusedWithoutEchoingThem) {
  JoinToken t;
  ASSERT_TRUE(MakeJoinToken(NewServerKey(), &t).ok());
  const std::string good = EncodeJoinToken(t);
  const std::vector<std::string> bad = {
      "",
      "latchjoin1.",
      good.substr(0, good.size() - 1),                    // cut short
      good + "A",                                         // one too many
      " " + good,                                         // pasted with a space
      good.substr(0, 20) + "=" + good.substr(21),         // padding inside
      good.substr(0, 20) + "+" + good.substr(21),         // standard base64, not url
      good.substr(0, 20) + "\n" + good.substr(21),        // a control character
      good.substr(0, 20) + "\xc3\xa9" + good.substr(22),  // UTF-8 in place of two
      good.substr(0, 20) + "\xff" + good.substr(21),      // invalid UTF-8
      "latchjoin2." + good.substr(11),                    // another version
      std::string(100000, 'A'),                           // huge
  };
  for (const std::string& b : bad) {
    JoinToken out;
    Status s = DecodeJoinToken(b, &out);
    EXPECT_FALSE(s.ok()) << b;
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
    if (b.size() > 20) {
      EXPECT_EQ(s.message().find(b.substr(11, 20)), std::string::npos) << "echoed: " << s.message();
    }
  }
  EXPECT_FALSE(MakeJoinToken("short", &t).ok());
}

TEST(HostIdTest, HostnameLikeOnly) {
  for (std::string ok : {std::string("a"), std::string("host-a"), std::string("db-1.example.com"),
                         std::string("H_2"), std::string(253, 'x')}) {
    EXPECT_TRUE(IsHostId(ok)) << ok;
  }
  for (std::string bad :
       {std::string(), std::string(254, 'x'), std::string("-a"), std::string(".a"),
        std::string("enrol:abc"), std::string("a b"), std::string("a\nb"), std::string("h\xc3\xa9"),
        std::string("a/b"), std::string("a\0b", 3)}) {
    EXPECT_FALSE(IsHostId(bad)) << bad;
  }
}

}  // namespace
}  // namespace latch::schema
