// The enrolment book as the ledger's records build it: tokens' lives, a key
// per host, and a snapshot that gives back the same book.
#include "collector/enrolment/enrolment_book.h"

#include <capnp/message.h>
#include <gtest/gtest.h>

#include "collector/enrolment/credential_book.h"

namespace latch::collector {
namespace {

constexpr int64_t kNow = 1'800'000'000'000'000'000;

class EnrolmentBookTest : public ::testing::Test {
 protected:
  void Created(const std::string& hash, const std::string& host, int64_t expires) {
    capnp::MallocMessageBuilder m;
    auto c = m.initRoot<schema::WorkflowAction>().initJoinTokenCreated();
    c.setHostId(host);
    c.setSecretHash(hash);
    c.setExpiresAtNs(expires);
    book_.Apply(m.getRoot<schema::WorkflowAction>().asReader());
  }
  void Enrolled(const std::string& hash, const std::string& host, const std::string& key) {
    capnp::MallocMessageBuilder m;
    auto e = m.initRoot<schema::WorkflowAction>().initAgentEnrolled();
    e.setHostId(host);
    e.setSecretHash(hash);
    e.setCurvePublicKey(key);
    book_.Apply(m.getRoot<schema::WorkflowAction>().asReader());
  }
  void Removed(const std::string& host, const std::string& key) {
    capnp::MallocMessageBuilder m;
    auto r = m.initRoot<schema::WorkflowAction>().initAgentRemoved();
    r.setHostId(host);
    r.setCurvePublicKey(key);
    book_.Apply(m.getRoot<schema::WorkflowAction>().asReader());
  }
  EnrolmentBook book_;
};

TEST_F(EnrolmentBookTest, ATokenEnrolsItsHostOnceUntilItExpires) {
  EXPECT_FALSE(book_.AnyOpen(kNow));
  Created("h1", "host-b", kNow + 60'000'000'000);
  EXPECT_TRUE(book_.AnyOpen(kNow));
  EXPECT_EQ(book_.Refusal("h1", "host-b", kNow), "");
  EXPECT_EQ(book_.Refusal("h1", "host-c", kNow), "join token is for another host");
  EXPECT_EQ(book_.Refusal("nope", "host-b", kNow), "unknown join token");
  EXPECT_EQ(book_.Refusal("h1", "host-b", kNow + 60'000'000'000), "join token expired");
  EXPECT_FALSE(book_.AnyOpen(kNow + 60'000'000'000));
  Enrolled("h1", "host-b", "KEY1");
  EXPECT_EQ(book_.Refusal("h1", "host-b", kNow), "join token already used");
  EXPECT_FALSE(book_.AnyOpen(kNow));
  ASSERT_EQ(book_.keys().size(), 1u);
  EXPECT_EQ(book_.keys().at("KEY1"), "host-b");
}

TEST_F(EnrolmentBookTest, AHostEnrolledAgainKeepsOnlyItsNewKeyAndARemovalTakesItOut) {
  Created("h1", "host-b", kNow + 1);
  Created("h2", "host-b", kNow + 1);
  Created("h3", "host-c", kNow + 1);
  Enrolled("h1", "host-b", "OLD");
  Enrolled("h3", "host-c", "OTHER");
  Enrolled("h2", "host-b", "NEW");  // the machine reinstalled, a new key
  EXPECT_EQ(book_.keys().count("OLD"), 0u);
  EXPECT_EQ(book_.keys().at("NEW"), "host-b");
  EXPECT_EQ(book_.keys().at("OTHER"), "host-c");
  Removed("host-b", "NEW");
  EXPECT_EQ(book_.keys().count("NEW"), 0u);
  EXPECT_EQ(book_.keys().size(), 1u);
}

TEST_F(EnrolmentBookTest, ASnapshotGivesBackTheSameBookAndAnOldOneAnEmptyBook) {
  Created("h1", "host-b", kNow + 5);
  Created("h2", "host-c", kNow + 7);
  Enrolled("h1", "host-b", "KEY1");
  nlohmann::json state = {{"enrolment", book_.ToSnapshot()}};
  EnrolmentBook back;
  ASSERT_TRUE(back.FromSnapshot(state).ok());
  EXPECT_EQ(back.ToSnapshot(), book_.ToSnapshot());
  EXPECT_EQ(back.Refusal("h1", "host-b", kNow), "join token already used");
  EXPECT_EQ(back.Refusal("h2", "host-c", kNow), "");
  EnrolmentBook old;
  ASSERT_TRUE(old.FromSnapshot(nlohmann::json{{"requests", 1}}).ok());  // before enrolment
  EXPECT_TRUE(old.keys().empty());
  // A damaged snapshot is refused (the collector then replays the ledger).
  nlohmann::json bad = {{"enrolment", {{"tokens", {{"h", {{"host", 7}}}}}, {"keys", {}}}}};
  EXPECT_FALSE(back.FromSnapshot(bad).ok());
  EXPECT_TRUE(back.keys().empty());
}

}  // namespace
}  // namespace latch::collector

namespace latch::collector {
namespace {

void ApplyCredential(CredentialBook* book, bool add, const std::string& kind,
                     const std::string& hash, const std::string& who) {
  capnp::MallocMessageBuilder m;
  auto a = m.initRoot<schema::WorkflowAction>();
  auto c = add ? a.initApiCredentialAdded() : a.initApiCredentialRemoved();
  c.setIdentity(who);
  c.setKind(kind);
  c.setSha256(hash);
  book->Apply(a.asReader());
}

TEST(CredentialBookTest, AddsAndRemovalsReplayAndSnapshotToTheSameBook) {
  const std::string h1(64, 'a'), h2(64, 'b');
  CredentialBook book;
  ApplyCredential(&book, true, "token", h1, "rob");
  ApplyCredential(&book, true, "cert", h2, "ann");
  ApplyCredential(&book, true, "token", h2, "tess");
  ApplyCredential(&book, false, "token", h2, "tess");
  EXPECT_EQ(book.tokens(), (std::map<std::string, std::string>{{h1, "rob"}}));
  EXPECT_EQ(book.certs(), (std::map<std::string, std::string>{{h2, "ann"}}));
  CredentialBook back;
  ASSERT_TRUE(back.FromSnapshot({{"api_credentials", book.ToSnapshot()}}).ok());
  EXPECT_EQ(back.tokens(), book.tokens());
  EXPECT_EQ(back.certs(), book.certs());
  EXPECT_TRUE(back.FromSnapshot(nlohmann::json::object()).ok());  // from before credentials
  EXPECT_TRUE(back.tokens().empty());
  EXPECT_FALSE(back.FromSnapshot({{"api_credentials", {{"tokens", 5}}}}).ok());
  EXPECT_TRUE(CredentialBook::IsSha256Hex(h1));
  EXPECT_FALSE(CredentialBook::IsSha256Hex(std::string(64, 'A')));
  EXPECT_FALSE(CredentialBook::IsSha256Hex(std::string(63, 'a')));
}

}  // namespace
}  // namespace latch::collector
