#include "lib/tlog/signed_note.h"

#include <gtest/gtest.h>

namespace latch::tlog {
namespace {

// Known-answer vector of the Go reference implementation (golang.org/x/mod/sumdb/note).
constexpr char kSkey[] =
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
constexpr char kVkey[] = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
constexpr char kText[] =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n";
constexpr char kSignedNote[] =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "\xE2\x80\x94 PeterNeumann "
    "x08go/ZJkuBS9UG/"
    "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

TEST(SignedNote, MatchesTheReferenceImplementation) {
  NoteSigner signer;
  ASSERT_TRUE(NoteSigner::Parse(kSkey, &signer).ok());
  EXPECT_EQ(signer.verifier().ToString(), kVkey);
  EXPECT_EQ(signer.ToString(), kSkey);
  std::string note;
  ASSERT_TRUE(signer.Sign(kText, &note).ok());
  EXPECT_EQ(note, kSignedNote);

  NoteVerifier verifier;
  ASSERT_TRUE(NoteVerifier::Parse(kVkey, &verifier).ok());
  std::string text;
  ASSERT_TRUE(OpenNote(kSignedNote, verifier, &text).ok());
  EXPECT_EQ(text, kText);
}

class SignedNoteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(NoteSigner::Generate("log.example/a", &signer_).ok());
    ASSERT_TRUE(NoteSigner::Generate("witness.example/w", &other_).ok());
    ASSERT_TRUE(signer_.Sign("hello\nworld\n", &note_).ok());
  }
  NoteSigner signer_;
  NoteSigner other_;
  std::string note_;
  std::string text_;
};

TEST_F(SignedNoteTest, RoundTrip) {
  ASSERT_TRUE(OpenNote(note_, signer_.verifier(), &text_).ok());
  EXPECT_EQ(text_, "hello\nworld\n");
  NoteSigner reparsed;
  ASSERT_TRUE(NoteSigner::Parse(signer_.ToString(), &reparsed).ok());
  EXPECT_EQ(reparsed.verifier().ToString(), signer_.verifier().ToString());
}

TEST_F(SignedNoteTest, AnyFlippedBitIsRejected) {
  for (size_t i = 0; i < note_.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = note_;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      EXPECT_FALSE(OpenNote(bad, signer_.verifier(), &text_).ok())
          << "byte " << i << " bit " << bit;
    }
  }
}

TEST_F(SignedNoteTest, WrongKeyIsRejected) {
  EXPECT_FALSE(OpenNote(note_, other_.verifier(), &text_).ok());
  // Same name, different key: the key id differs, so it is "not signed by".
  NoteSigner impostor;
  ASSERT_TRUE(NoteSigner::Generate("log.example/a", &impostor).ok());
  EXPECT_FALSE(OpenNote(note_, impostor.verifier(), &text_).ok());
}

TEST_F(SignedNoteTest, ExtraUnknownSignatureIsIgnored) {
  std::string cosigned;
  ASSERT_TRUE(other_.Sign("hello\nworld\n", &cosigned).ok());
  std::string extra_line = cosigned.substr(cosigned.rfind("\n\n") + 2);
  ASSERT_TRUE(OpenNote(note_ + extra_line, signer_.verifier(), &text_).ok());
  ASSERT_TRUE(OpenNote(note_ + extra_line, other_.verifier(), &text_).ok());
  // Unknown signature first, ours second.
  std::string body = note_.substr(0, note_.rfind("\n\n") + 2);
  std::string ours = note_.substr(note_.rfind("\n\n") + 2);
  ASSERT_TRUE(OpenNote(body + extra_line + ours, signer_.verifier(), &text_).ok());
}

TEST_F(SignedNoteTest, MissingSignatureIsRejected) {
  std::string body = note_.substr(0, note_.rfind("\n\n") + 2);
  EXPECT_FALSE(OpenNote(body, signer_.verifier(), &text_).ok());
  EXPECT_FALSE(OpenNote("hello\nworld\n", signer_.verifier(), &text_).ok());
  // Only someone else's signature.
  std::string cosigned;
  ASSERT_TRUE(other_.Sign("hello\nworld\n", &cosigned).ok());
  EXPECT_FALSE(OpenNote(cosigned, signer_.verifier(), &text_).ok());
}

TEST_F(SignedNoteTest, BadSignatureFromTheKnownKeyFailsEvenWithAGoodOne) {
  std::string body = note_.substr(0, note_.rfind("\n\n") + 2);
  std::string ours = note_.substr(note_.rfind("\n\n") + 2);
  std::string forged = ours;
  forged[forged.size() - 5] = forged[forged.size() - 5] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(OpenNote(body + forged + ours, signer_.verifier(), &text_).ok());
}

TEST_F(SignedNoteTest, MalformedInputs) {
  NoteSigner s;
  EXPECT_FALSE(NoteSigner::Generate("has space", &s).ok());
  EXPECT_FALSE(NoteSigner::Generate("has+plus", &s).ok());
  EXPECT_FALSE(NoteSigner::Generate("", &s).ok());
  std::string note;
  EXPECT_FALSE(signer_.Sign("no final newline", &note).ok());
  EXPECT_FALSE(signer_.Sign("blank\n\nline\n", &note).ok());
  EXPECT_FALSE(signer_.Sign("tab\there\n", &note).ok());
  NoteVerifier v;
  EXPECT_FALSE(
      NoteVerifier::Parse("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", &v)
          .ok());
  EXPECT_FALSE(NoteVerifier::Parse("PeterNeumann+c74f20a3", &v).ok());
  EXPECT_FALSE(NoteVerifier::Parse("PeterNeumann+c74f20a3+AQ==", &v).ok());
  // Too many signature lines.
  std::string many = note_;
  std::string line = note_.substr(note_.rfind("\n\n") + 2);
  for (int i = 0; i < 100; ++i) many += line;
  EXPECT_FALSE(OpenNote(many, signer_.verifier(), &text_).ok());
}

}  // namespace
}  // namespace latch::tlog
