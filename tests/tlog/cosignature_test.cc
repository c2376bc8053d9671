// C2SP tlog-cosignature/v1: what a witness signs, checked against the spec's
// text by OpenSSL directly (the key id and the signed message rebuilt here
// from the spec's words, not from our code), and how a verifier finds a
// quorum's cosignatures on a checkpoint.
#include "lib/tlog/cosignature.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "lib/tlog/base64.h"
#include "lib/tlog/signed_note.h"

namespace latch::tlog {
namespace {

const std::string kText =
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

// The payload of a signature line "— <name> <base64>\n".
std::vector<uint8_t> LineBytes(const std::string& line, std::string* name) {
  const std::string dash = "\xE2\x80\x94 ";
  EXPECT_EQ(line.rfind(dash, 0), 0u) << line;
  EXPECT_EQ(line.back(), '\n');
  const size_t space = line.find(' ', dash.size());
  *name = line.substr(dash.size(), space - dash.size());
  auto raw = Base64Decode(line.substr(space + 1, line.size() - space - 2));
  EXPECT_TRUE(raw.has_value());
  return raw.value_or(std::vector<uint8_t>{});
}

TEST(Cosignature, MatchesTheSpecByOpenSsl) {
  CosignatureSigner signer;
  ASSERT_TRUE(CosignatureSigner::Generate("witness.example/w1", &signer).ok());
  // The public key from its vkey text: name+id+base64(0x04 || key).
  const std::string vkey = signer.verifier().ToString();
  // (The base64 may hold '+' too: the key starts after the second one.)
  auto raw = Base64Decode(vkey.substr(vkey.find('+', vkey.find('+') + 1) + 1));
  ASSERT_TRUE(raw && raw->size() == 33);
  ASSERT_EQ((*raw)[0], 0x04);
  const std::vector<uint8_t> pub(raw->begin() + 1, raw->end());

  std::string line;
  ASSERT_TRUE(signer.Cosign(kText, 1679315147, &line).ok());
  std::string name;
  const std::vector<uint8_t> bytes = LineBytes(line, &name);
  EXPECT_EQ(name, "witness.example/w1");
  ASSERT_EQ(bytes.size(), 4u + 8u + 64u);
  // Key id: SHA-256(<name> || "\n" || 0x04 || 32-byte key)[:4].
  std::string id_input = name + "\n";
  id_input += '\x04';
  id_input.append(pub.begin(), pub.end());
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(id_input.data()), id_input.size(), digest);
  EXPECT_TRUE(std::equal(digest, digest + 4, bytes.begin()));
  // timestamped_signature: u64 big-endian timestamp, then the signature.
  uint64_t t = 0;
  for (size_t i = 4; i < 12; ++i) t = (t << 8) | bytes[i];
  EXPECT_EQ(t, 1679315147u);
  // Signed message: "cosignature/v1", "time <t>", then the note body.
  const std::string message = "cosignature/v1\ntime 1679315147\n" + kText;
  EVP_PKEY* key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, pub.data(), pub.size());
  ASSERT_NE(key, nullptr);
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ASSERT_EQ(EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, key), 1);
  EXPECT_EQ(EVP_DigestVerify(ctx, bytes.data() + 12, 64,
                             reinterpret_cast<const uint8_t*>(message.data()), message.size()),
            1);
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(key);

  // Keys round-trip through their texts.
  CosignatureSigner again;
  ASSERT_TRUE(CosignatureSigner::Parse(signer.ToString(), &again).ok());
  EXPECT_EQ(again.verifier().ToString(), vkey);
  CosignatureVerifier parsed;
  ASSERT_TRUE(CosignatureVerifier::Parse(vkey, &parsed).ok());
  EXPECT_EQ(parsed.key_id(), signer.verifier().key_id());
  // A note signature key (type 0x01) is not a witness key, nor the reverse.
  NoteSigner log;
  ASSERT_TRUE(NoteSigner::Generate("example.com/behind-the-sofa", &log).ok());
  EXPECT_FALSE(CosignatureVerifier::Parse(log.verifier().ToString(), &parsed).ok());
  NoteVerifier note_verifier;
  EXPECT_FALSE(NoteVerifier::Parse(vkey, &note_verifier).ok());
}

TEST(Cosignature, AQuorumIsFoundOnTheLogsOwnSignedNote) {
  NoteSigner log;
  ASSERT_TRUE(NoteSigner::Generate("example.com/behind-the-sofa", &log).ok());
  CosignatureSigner w1, w2, w3;
  ASSERT_TRUE(CosignatureSigner::Generate("witness.example/w1", &w1).ok());
  ASSERT_TRUE(CosignatureSigner::Generate("witness.example/w2", &w2).ok());
  ASSERT_TRUE(CosignatureSigner::Generate("witness.example/w3", &w3).ok());
  std::string note, c1, c3;
  ASSERT_TRUE(log.Sign(kText, &note).ok());
  ASSERT_TRUE(w1.Cosign(kText, 1700000000, &c1).ok());
  ASSERT_TRUE(w3.Cosign(kText, 1700000001, &c3).ok());
  const std::string cosigned = note + c1 + c3 + c1;  // w1's line twice counts once
  const std::vector<CosignatureVerifier> witnesses = {w1.verifier(), w2.verifier(), w3.verifier()};
  std::vector<size_t> found;
  ASSERT_TRUE(FindCosignatures(cosigned, witnesses, &found).ok());
  EXPECT_EQ(found, (std::vector<size_t>{0, 2}));
  // The log's own signature still verifies, as any signed-note client sees it.
  std::string text;
  ASSERT_TRUE(OpenNote(cosigned, log.verifier(), &text).ok());
  EXPECT_EQ(text, kText);
  // A cosignature of another text, or with its timestamp or signature
  // changed, under a known witness's name and id: the note is malformed.
  std::string other;
  ASSERT_TRUE(w2.Cosign("example.com/behind-the-sofa\n1\nAAAA\n", 1700000000, &other).ok());
  EXPECT_EQ(FindCosignatures(note + other, witnesses, &found).code(), Status::Code::kVerifyFailed);
  for (size_t at : {size_t{4}, size_t{11}, size_t{12}, size_t{75}}) {
    std::string name;
    std::vector<uint8_t> bytes = LineBytes(c1, &name);
    bytes[at] ^= 0x01;
    const std::string bad = "\xE2\x80\x94 " + name + " " + Base64Encode(bytes) + "\n";
    Status s = FindCosignatures(note + bad, witnesses, &found);
    EXPECT_EQ(s.code(), Status::Code::kVerifyFailed) << "byte " << at;
  }
  // A witness we do not know, and garbage that is not a note: ignored, refused.
  CosignatureSigner stranger;
  ASSERT_TRUE(CosignatureSigner::Generate("witness.example/w1", &stranger).ok());
  std::string theirs;
  ASSERT_TRUE(stranger.Cosign(kText, 1700000000, &theirs).ok());
  ASSERT_TRUE(FindCosignatures(note + theirs, witnesses, &found).ok());
  EXPECT_TRUE(found.empty());
  EXPECT_FALSE(FindCosignatures("no blank line", witnesses, &found).ok());
  // Timestamps must be 1 to 2^63-1.
  EXPECT_FALSE(w1.Cosign(kText, 0, &c1).ok());
  EXPECT_FALSE(w1.Cosign(kText, uint64_t{1} << 63, &c1).ok());
}

}  // namespace
}  // namespace latch::tlog
