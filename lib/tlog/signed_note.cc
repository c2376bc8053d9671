#include "lib/tlog/signed_note.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <vector>

#include "lib/tlog/base64.h"
#include "lib/tlog/sha256.h"

namespace latch::tlog {
namespace {

constexpr uint8_t kAlgEd25519 = 0x01;
constexpr std::string_view kSigPrefix = "\xE2\x80\x94 ";  // U+2014 EM DASH, space
constexpr std::string_view kPrivatePrefix = "PRIVATE+KEY+";
constexpr size_t kMaxSignatures = 100;

std::optional<uint32_t> ParseHexId(std::string_view s) {
  if (s.size() != 8) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else
      return std::nullopt;
    v = (v << 4) | static_cast<uint32_t>(d);
  }
  return v;
}

// A note text is non-empty, ends in newline, and has no control characters
// other than newline. (UTF-8 validity beyond that is the caller's content.)
bool IsValidNoteText(std::string_view text) {
  if (text.empty() || text.back() != '\n') return false;
  for (char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 && c != '\n') return false;
  }
  return true;
}

}  // namespace

bool IsValidKeyName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (c <= ' ' || c > '~' || c == '+') return false;
  }
  return true;
}

namespace {
std::string HexKeyId(uint32_t id) {
  char buf[9];
  std::snprintf(buf, sizeof(buf), "%08x", id);
  return buf;
}
}  // namespace

Status ParseKeyText(std::string_view text, uint8_t algorithm, std::string* name, uint32_t* id,
                    std::array<uint8_t, 32>* key) {
  size_t p1 = text.find('+');
  size_t p2 = p1 == std::string_view::npos ? p1 : text.find('+', p1 + 1);
  if (p2 == std::string_view::npos) return Status::InvalidArgument("key is not name+id+key");
  std::string_view n = text.substr(0, p1);
  auto parsed_id = ParseHexId(text.substr(p1 + 1, p2 - p1 - 1));
  auto raw = Base64Decode(text.substr(p2 + 1));
  if (!IsValidKeyName(n)) return Status::InvalidArgument("key name is not valid");
  if (!parsed_id) return Status::InvalidArgument("key id is not 8 lowercase hex digits");
  if (!raw || raw->size() != 33 || (*raw)[0] != algorithm) {
    return Status::InvalidArgument("key is not base64 of an Ed25519 key of this kind");
  }
  *name = n;
  *id = *parsed_id;
  std::copy(raw->begin() + 1, raw->end(), key->begin());
  return Status::Ok();
}

std::string KeyText(std::string_view name, uint32_t id, uint8_t algorithm,
                    const std::array<uint8_t, 32>& key) {
  std::vector<uint8_t> raw{algorithm};
  raw.insert(raw.end(), key.begin(), key.end());
  return std::string(name) + "+" + HexKeyId(id) + "+" + Base64Encode(raw);
}

uint32_t KeyId(std::string_view name, uint8_t algorithm, const std::array<uint8_t, 32>& key) {
  Sha256 sha;
  sha.Update(name.data(), name.size());
  const uint8_t sep[2] = {'\n', algorithm};
  sha.Update(sep, sizeof(sep));
  sha.Update(key);
  Hash h = sha.Finish();
  return (uint32_t{h[0]} << 24) | (uint32_t{h[1]} << 16) | (uint32_t{h[2]} << 8) | h[3];
}

std::string SignatureLine(std::string_view name, uint32_t id, std::span<const uint8_t> payload) {
  std::vector<uint8_t> blob = {static_cast<uint8_t>(id >> 24), static_cast<uint8_t>(id >> 16),
                               static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id)};
  blob.insert(blob.end(), payload.begin(), payload.end());
  return std::string(kSigPrefix) + std::string(name) + " " + Base64Encode(blob) + "\n";
}

Status SplitNote(std::string_view note, std::string_view* text,
                 std::vector<NoteSignature>* signatures) {
  signatures->clear();
  // The text ends at the last blank line; everything after is signatures.
  size_t split = note.rfind("\n\n");
  if (split == std::string_view::npos) return Status::VerifyFailed("note has no signature block");
  std::string_view body = note.substr(0, split + 1);
  std::string_view sigs = note.substr(split + 2);
  if (!IsValidNoteText(body)) return Status::VerifyFailed("note text is malformed");
  if (sigs.empty() || sigs.back() != '\n') return Status::VerifyFailed("note has no signatures");
  for (char c : sigs) {
    if (static_cast<unsigned char>(c) < 0x20 && c != '\n') {
      return Status::VerifyFailed("note signatures contain a control character");
    }
  }
  while (!sigs.empty()) {
    size_t eol = sigs.find('\n');
    std::string_view line = sigs.substr(0, eol);
    sigs.remove_prefix(eol + 1);
    if (signatures->size() >= kMaxSignatures) {
      return Status::VerifyFailed("note has too many signatures");
    }
    if (!line.starts_with(kSigPrefix)) return Status::VerifyFailed("malformed signature line");
    line.remove_prefix(kSigPrefix.size());
    size_t space = line.find(' ');
    if (space == std::string_view::npos) return Status::VerifyFailed("malformed signature line");
    std::string_view name = line.substr(0, space);
    auto blob = Base64Decode(line.substr(space + 1));
    if (!IsValidKeyName(name) || !blob || blob->size() < 5) {
      return Status::VerifyFailed("malformed signature line");
    }
    NoteSignature sig;
    sig.name = name;
    sig.key_id = (uint32_t{(*blob)[0]} << 24) | (uint32_t{(*blob)[1]} << 16) |
                 (uint32_t{(*blob)[2]} << 8) | (*blob)[3];
    sig.payload.assign(blob->begin() + 4, blob->end());
    signatures->push_back(std::move(sig));
  }
  *text = body;
  return Status::Ok();
}

uint32_t NoteKeyId(std::string_view name, const Ed25519PublicKey& key) {
  return KeyId(name, kAlgEd25519, key);
}

NoteVerifier::NoteVerifier(std::string name, const Ed25519PublicKey& key)
    : name_(std::move(name)), key_(key), key_id_(NoteKeyId(name_, key_)) {}

Status NoteVerifier::Parse(std::string_view vkey, NoteVerifier* out) {
  std::string name;
  uint32_t id = 0;
  Ed25519PublicKey key;
  LATCH_RETURN_IF_ERROR(
      ParseKeyText(vkey, kAlgEd25519, &name, &id, &key).WithContext("verifier key"));
  *out = NoteVerifier(std::move(name), key);
  if (out->key_id() != id) return Status::InvalidArgument("verifier key: id does not match key");
  return Status::Ok();
}

std::string NoteVerifier::ToString() const { return KeyText(name_, key_id_, kAlgEd25519, key_); }

bool NoteVerifier::Verify(std::string_view text, std::span<const uint8_t> signature) const {
  return VerifyEd25519(key_, {reinterpret_cast<const uint8_t*>(text.data()), text.size()},
                       signature);
}

Status NoteSigner::SignBytes(std::string_view message, Ed25519Signature* out) const {
  return SignEd25519(seed_, {reinterpret_cast<const uint8_t*>(message.data()), message.size()},
                     out);
}

Status NoteSigner::Generate(std::string name, NoteSigner* out) {
  if (!IsValidKeyName(name)) {
    return Status::InvalidArgument("key name '" + name +
                                   "' must be printable ASCII without spaces or '+'");
  }
  NoteSigner s;
  LATCH_RETURN_IF_ERROR(GenerateEd25519Seed(&s.seed_));
  Ed25519PublicKey pub;
  LATCH_RETURN_IF_ERROR(DeriveEd25519PublicKey(s.seed_, &pub));
  s.name_ = std::move(name);
  s.verifier_ = NoteVerifier(s.name_, pub);
  *out = std::move(s);
  return Status::Ok();
}

Status NoteSigner::Parse(std::string_view skey, NoteSigner* out) {
  if (!skey.starts_with(kPrivatePrefix)) {
    return Status::InvalidArgument("signer key does not start with PRIVATE+KEY+");
  }
  NoteSigner s;
  uint32_t id = 0;
  LATCH_RETURN_IF_ERROR(
      ParseKeyText(skey.substr(kPrivatePrefix.size()), kAlgEd25519, &s.name_, &id, &s.seed_)
          .WithContext("signer key"));
  Ed25519PublicKey pub;
  LATCH_RETURN_IF_ERROR(DeriveEd25519PublicKey(s.seed_, &pub));
  s.verifier_ = NoteVerifier(s.name_, pub);
  if (s.verifier_.key_id() != id)
    return Status::InvalidArgument("signer key: id does not match key");
  *out = std::move(s);
  return Status::Ok();
}

std::string NoteSigner::ToString() const {
  return std::string(kPrivatePrefix) + KeyText(name_, verifier_.key_id(), kAlgEd25519, seed_);
}

Status NoteSigner::Sign(std::string_view text, std::string* note) const {
  if (!IsValidNoteText(text) || text.find("\n\n") != std::string_view::npos) {
    return Status::InvalidArgument(
        "note text must end in a newline, have no blank line and no "
        "control characters");
  }
  Ed25519Signature sig;
  LATCH_RETURN_IF_ERROR(
      SignEd25519(seed_, {reinterpret_cast<const uint8_t*>(text.data()), text.size()}, &sig));
  note->assign(text);
  *note += '\n';
  *note += SignatureLine(name_, verifier_.key_id(), sig);
  return Status::Ok();
}

Status OpenNote(std::string_view note, const NoteVerifier& verifier, std::string* text) {
  std::string_view body;
  std::vector<NoteSignature> signatures;
  LATCH_RETURN_IF_ERROR(SplitNote(note, &body, &signatures));
  bool verified = false;
  for (const NoteSignature& sig : signatures) {
    if (sig.name != verifier.name() || sig.key_id != verifier.key_id()) continue;  // another's
    if (verified) continue;  // a second line for the same key changes nothing
    if (!verifier.Verify(body, sig.payload)) {
      return Status::VerifyFailed("signature by " + verifier.name() + " is invalid");
    }
    verified = true;
  }
  if (!verified) return Status::VerifyFailed("note is not signed by " + verifier.name());
  text->assign(body);
  return Status::Ok();
}

}  // namespace latch::tlog
