#include "lib/tlog/cosignature.h"

#include <algorithm>

#include "lib/tlog/signed_note.h"

namespace latch::tlog {

namespace {
constexpr std::string_view kPrivatePrefix = "PRIVATE+KEY+";
constexpr uint64_t kMaxTimestamp = (uint64_t{1} << 63) - 1;
}  // namespace

std::string CosignedMessage(std::string_view text, uint64_t timestamp) {
  return "cosignature/v1\ntime " + std::to_string(timestamp) + "\n" + std::string(text);
}

CosignatureVerifier::CosignatureVerifier(std::string name, const Ed25519PublicKey& key)
    : name_(std::move(name)), key_(key), key_id_(KeyId(name_, kCosignatureV1, key_)) {}

Status CosignatureVerifier::Parse(std::string_view vkey, CosignatureVerifier* out) {
  std::string name;
  uint32_t id = 0;
  Ed25519PublicKey key;
  LATCH_RETURN_IF_ERROR(
      ParseKeyText(vkey, kCosignatureV1, &name, &id, &key).WithContext("witness key"));
  *out = CosignatureVerifier(std::move(name), key);
  if (out->key_id() != id) return Status::InvalidArgument("witness key: id does not match key");
  return Status::Ok();
}

std::string CosignatureVerifier::ToString() const {
  return KeyText(name_, key_id_, kCosignatureV1, key_);
}

bool CosignatureVerifier::Verify(std::string_view text, std::span<const uint8_t> payload,
                                 uint64_t* timestamp) const {
  if (payload.size() != 8 + 64) return false;
  uint64_t t = 0;
  for (size_t i = 0; i < 8; ++i) t = (t << 8) | payload[i];
  if (t == 0 || t > kMaxTimestamp) return false;
  const std::string message = CosignedMessage(text, t);
  if (!VerifyEd25519(key_, {reinterpret_cast<const uint8_t*>(message.data()), message.size()},
                     payload.subspan(8))) {
    return false;
  }
  *timestamp = t;
  return true;
}

Status CosignatureSigner::Generate(std::string name, CosignatureSigner* out) {
  if (!IsValidKeyName(name)) {
    return Status::InvalidArgument("witness name '" + name +
                                   "' must be printable ASCII without spaces or '+'");
  }
  CosignatureSigner s;
  LATCH_RETURN_IF_ERROR(GenerateEd25519Seed(&s.seed_));
  Ed25519PublicKey pub;
  LATCH_RETURN_IF_ERROR(DeriveEd25519PublicKey(s.seed_, &pub));
  s.name_ = std::move(name);
  s.verifier_ = CosignatureVerifier(s.name_, pub);
  *out = std::move(s);
  return Status::Ok();
}

Status CosignatureSigner::Parse(std::string_view skey, CosignatureSigner* out) {
  if (!skey.starts_with(kPrivatePrefix)) {
    return Status::InvalidArgument("witness signing key does not start with PRIVATE+KEY+");
  }
  CosignatureSigner s;
  uint32_t id = 0;
  LATCH_RETURN_IF_ERROR(
      ParseKeyText(skey.substr(kPrivatePrefix.size()), kCosignatureV1, &s.name_, &id, &s.seed_)
          .WithContext("witness signing key"));
  Ed25519PublicKey pub;
  LATCH_RETURN_IF_ERROR(DeriveEd25519PublicKey(s.seed_, &pub));
  s.verifier_ = CosignatureVerifier(s.name_, pub);
  if (s.verifier_.key_id() != id) {
    return Status::InvalidArgument("witness signing key: id does not match key");
  }
  *out = std::move(s);
  return Status::Ok();
}

std::string CosignatureSigner::ToString() const {
  return std::string(kPrivatePrefix) + KeyText(name_, verifier_.key_id(), kCosignatureV1, seed_);
}

Status CosignatureSigner::Cosign(std::string_view text, uint64_t timestamp,
                                 std::string* line) const {
  if (timestamp == 0 || timestamp > kMaxTimestamp) {
    return Status::InvalidArgument("a cosignature's timestamp must be 1 to 2^63-1");
  }
  const std::string message = CosignedMessage(text, timestamp);
  Ed25519Signature sig;
  LATCH_RETURN_IF_ERROR(
      SignEd25519(seed_, {reinterpret_cast<const uint8_t*>(message.data()), message.size()}, &sig));
  std::vector<uint8_t> payload(8);
  for (size_t i = 0; i < 8; ++i) payload[i] = static_cast<uint8_t>(timestamp >> (56 - 8 * i));
  payload.insert(payload.end(), sig.begin(), sig.end());
  *line = SignatureLine(name_, verifier_.key_id(), payload);
  return Status::Ok();
}

Status FindCosignatures(std::string_view note, std::span<const CosignatureVerifier> witnesses,
                        std::vector<size_t>* cosigned) {
  cosigned->clear();
  std::string_view text;
  std::vector<NoteSignature> signatures;
  LATCH_RETURN_IF_ERROR(SplitNote(note, &text, &signatures));
  for (const NoteSignature& sig : signatures) {
    for (size_t w = 0; w < witnesses.size(); ++w) {
      const CosignatureVerifier& witness = witnesses[w];
      if (sig.name != witness.name() || sig.key_id != witness.key_id()) continue;
      uint64_t timestamp = 0;
      if (!witness.Verify(text, sig.payload, &timestamp)) {
        return Status::VerifyFailed("cosignature by " + witness.name() + " is invalid");
      }
      if (std::find(cosigned->begin(), cosigned->end(), w) == cosigned->end()) {
        cosigned->push_back(w);
      }
    }
  }
  return Status::Ok();
}

}  // namespace latch::tlog
