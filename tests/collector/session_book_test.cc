// SessionBook: sessions end at their time, by sign-out, with their
// credential, and within their bounds; secrets are random and kept hashed.
#include "collector/api/session_book.h"

#include <gtest/gtest.h>

#include <set>

namespace latch::api {
namespace {

constexpr int64_t kMinute = 60'000'000'000;

SessionBook::Session For(const std::string& who, int64_t start, const std::string& cred = "c") {
  SessionBook::Session s;
  s.identity = who;
  s.csrf = "x";
  s.via = "token";
  s.credential = cred;
  s.started_at_ns = start;
  s.expires_at_ns = start + 10 * kMinute;
  return s;
}

TEST(SessionBookTest, MintedSecretsAreRandomAndKeptOnlyHashed) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    SessionBook::Minted m = SessionBook::Mint();
    ASSERT_EQ(m.secret.size(), 64u);
    ASSERT_EQ(m.csrf.size(), 64u);
    EXPECT_NE(m.secret, m.csrf);
    EXPECT_EQ(m.hash, SessionBook::HashOf(m.secret));
    EXPECT_TRUE(seen.insert(m.secret).second);
  }
}

TEST(SessionBookTest, ASessionEndsAtItsTimeAndBySignOut) {
  SessionBook book;
  SessionBook::Minted m = SessionBook::Mint();
  book.Admit(m, For("tess", 0));
  ASSERT_NE(book.Find(m.secret, 9 * kMinute), nullptr);
  EXPECT_EQ(book.Find(m.secret, 9 * kMinute)->identity, "tess");
  EXPECT_EQ(book.Find(m.hash, 9 * kMinute), nullptr);  // the hash is not the cookie
  EXPECT_EQ(book.Find(m.secret, 10 * kMinute), nullptr);
  EXPECT_EQ(book.size(), 0u);  // forgotten once past its time

  SessionBook::Minted n = SessionBook::Mint();
  book.Admit(n, For("tess", 0));
  EXPECT_TRUE(book.End(n.hash));
  EXPECT_FALSE(book.End(n.hash));
  EXPECT_EQ(book.Find(n.secret, 1), nullptr);
}

TEST(SessionBookTest, SessionsEndWithTheirCredential) {
  SessionBook book;
  SessionBook::Minted a = SessionBook::Mint(), b = SessionBook::Mint();
  book.Admit(a, For("tess", 0, "cred-a"));
  book.Admit(b, For("sam", 0, "cred-b"));
  EXPECT_EQ(book.KeepOnly({"cred-b"}), 1u);
  EXPECT_EQ(book.Find(a.secret, 1), nullptr);
  EXPECT_NE(book.Find(b.secret, 1), nullptr);
}

TEST(SessionBookTest, TheBookIsBoundedPerIdentityAndInAll) {
  SessionBook book(/*max_sessions=*/5, /*max_per_identity=*/3);
  std::vector<SessionBook::Minted> tess;
  for (int i = 0; i < 4; ++i) {
    tess.push_back(SessionBook::Mint());
    book.Admit(tess.back(), For("tess", i));
  }
  // tess's oldest ended for her fourth.
  EXPECT_EQ(book.Find(tess[0].secret, 10), nullptr);
  for (int i = 1; i < 4; ++i) EXPECT_NE(book.Find(tess[i].secret, 10), nullptr);
  std::vector<SessionBook::Minted> others;
  for (int i = 0; i < 3; ++i) {
    others.push_back(SessionBook::Mint());
    book.Admit(others.back(), For("p" + std::to_string(i), 100 + i));
  }
  EXPECT_EQ(book.size(), 5u);
  // The one nearest its end went: tess's second-oldest.
  EXPECT_EQ(book.Find(tess[1].secret, 10), nullptr);
  EXPECT_NE(book.Find(others[2].secret, 10), nullptr);
}

TEST(SessionBookTest, SecretsCompareInFull) {
  EXPECT_TRUE(SecretsEqual("abc", "abc"));
  EXPECT_FALSE(SecretsEqual("abc", "abd"));
  EXPECT_FALSE(SecretsEqual("abc", "ab"));
  EXPECT_FALSE(SecretsEqual("", "a"));
}

}  // namespace
}  // namespace latch::api
