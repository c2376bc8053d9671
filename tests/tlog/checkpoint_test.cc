#include "lib/tlog/checkpoint.h"

#include <gtest/gtest.h>

#include "lib/tlog/merkle_hash.h"

namespace latch::tlog {
namespace {

TEST(Checkpoint, BodyRoundTrip) {
  Checkpoint c{"example.com/log", 1234, MerkleHasher::EmptyRoot(), {"ext one"}};
  EXPECT_EQ(c.Body(),
            "example.com/log\n1234\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\n");
  Checkpoint parsed;
  ASSERT_TRUE(Checkpoint::ParseBody(c.Body(), &parsed).ok());
  EXPECT_EQ(parsed.origin, c.origin);
  EXPECT_EQ(parsed.size, c.size);
  EXPECT_EQ(parsed.root, c.root);
  EXPECT_EQ(parsed.extensions, c.extensions);
}

TEST(Checkpoint, RejectsMalformedBodies) {
  const std::string root = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
  for (const std::string& bad : std::vector<std::string>{
           std::string("o\n1\n") + root, "o\n1\n", "\n1\n" + root + "\n", "o\n01\n" + root + "\n",
           "o\n-1\n" + root + "\n", "o\n1x\n" + root + "\n", "o\n\n" + root + "\n",
           "o\n18446744073709551616\n" + root + "\n", std::string("o\n1\nAAAA\n"),
           "o\n1\n" + root + "\n\n"}) {
    Checkpoint c;
    EXPECT_FALSE(Checkpoint::ParseBody(bad, &c).ok()) << bad;
  }
}

TEST(Checkpoint, OpenChecksSignatureAndOrigin) {
  NoteSigner signer;
  ASSERT_TRUE(NoteSigner::Generate("example.com/log", &signer).ok());
  Checkpoint c{"example.com/log", 7, MerkleHasher::EmptyRoot(), {}};
  std::string note;
  ASSERT_TRUE(signer.Sign(c.Body(), &note).ok());
  Checkpoint opened;
  ASSERT_TRUE(OpenCheckpoint(note, signer.verifier(), &opened).ok());
  EXPECT_EQ(opened.size, 7u);

  // A log's key signing another origin's checkpoint is not that log's checkpoint.
  Checkpoint other{"other.example/log", 7, MerkleHasher::EmptyRoot(), {}};
  ASSERT_TRUE(signer.Sign(other.Body(), &note).ok());
  EXPECT_FALSE(OpenCheckpoint(note, signer.verifier(), &opened).ok());
}

}  // namespace
}  // namespace latch::tlog
