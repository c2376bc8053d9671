#include "schemas/join_token.h"

#include <openssl/rand.h>
#include <zmq.h>

#include <optional>
#include <vector>

#include "lib/tlog/base64.h"
#include "lib/tlog/hex.h"
#include "lib/tlog/sha256.h"

namespace latch::schema {

namespace {
constexpr std::string_view kPrefix = "latchjoin1.";
constexpr size_t kEncodedLength = 86;  // 64 bytes, unpadded base64url

bool IsBase64Url(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_';
}
}  // namespace

std::string EncodeJoinToken(const JoinToken& token) {
  std::vector<uint8_t> raw(token.collector_key.begin(), token.collector_key.end());
  raw.insert(raw.end(), token.secret.begin(), token.secret.end());
  std::string b64 = tlog::Base64Encode(raw);
  std::string out(kPrefix);
  for (char c : b64) {
    if (c == '=') break;
    out += c == '+' ? '-' : c == '/' ? '_' : c;
  }
  return out;
}

Status DecodeJoinToken(std::string_view text, JoinToken* out) {
  if (text.substr(0, kPrefix.size()) != kPrefix) {
    return Status::InvalidArgument("not a join token (they start with latchjoin1.)");
  }
  std::string_view body = text.substr(kPrefix.size());
  if (body.size() != kEncodedLength) {
    return Status::InvalidArgument("join token has " + std::to_string(body.size()) +
                                   " characters after latchjoin1., not " +
                                   std::to_string(kEncodedLength) + " (cut short when copied?)");
  }
  std::string b64;
  for (char c : body) {
    if (!IsBase64Url(c))
      return Status::InvalidArgument("join token holds a character not in base64url");
    b64 += c == '-' ? '+' : c == '_' ? '/' : c;
  }
  b64 += "==";
  std::optional<std::vector<uint8_t>> raw = tlog::Base64Decode(b64);
  if (!raw || raw->size() != 64) return Status::InvalidArgument("join token does not decode");
  std::copy(raw->begin(), raw->begin() + 32, out->collector_key.begin());
  std::copy(raw->begin() + 32, raw->end(), out->secret.begin());
  return Status::Ok();
}

Status MakeJoinToken(const std::string& collector_key_z85, JoinToken* out) {
  if (collector_key_z85.size() != 40 ||
      zmq_z85_decode(out->collector_key.data(), collector_key_z85.c_str()) == nullptr) {
    return Status::InvalidArgument("the collector's CURVE key is not 40 Z85 characters");
  }
  if (RAND_bytes(out->secret.data(), static_cast<int>(out->secret.size())) != 1) {
    return Status::IoError("no randomness for a join token (RAND_bytes)");
  }
  return Status::Ok();
}

std::string JoinSecretHash(const std::array<uint8_t, 32>& secret) {
  return tlog::HexEncode(tlog::Sha256::Of(secret));
}

std::string CurveKeyPin(const std::array<uint8_t, 32>& raw) {
  return "sha256:" + tlog::HexEncode(tlog::Sha256::Of(raw));
}

std::string CurveKeyPin(const std::string& z85) {
  std::array<uint8_t, 32> raw{};
  if (z85.size() != 40 || zmq_z85_decode(raw.data(), z85.c_str()) == nullptr) return "";
  return CurveKeyPin(raw);
}

std::string CurveKeyZ85(const std::array<uint8_t, 32>& raw) {
  char z85[41];
  zmq_z85_encode(z85, raw.data(), raw.size());
  return z85;
}

}  // namespace latch::schema
