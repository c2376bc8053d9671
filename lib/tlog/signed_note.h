// C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys:
//
//   <text ending in newline>
//   <blank line>
//   — <key name> <base64(4-byte key id || 64-byte signature)>
//   ...
//
// The key id is SHA-256(name || 0x0A || 0x01 || public key)[:4]. Keys travel
// as text: a verifier key "<name>+<hex id>+<base64(0x01 || public key)>" and a
// signer key "PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>", the forms
// other signed-note tools read.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lib/status/status.h"
#include "lib/tlog/ed25519.h"

namespace latch::tlog {

// Key names are non-empty UTF-8 without spaces or '+'; we accept the printable
// ASCII subset of that, which covers log origins such as "example.com/log".
bool IsValidKeyName(std::string_view name);

class NoteVerifier {
 public:
  // Parses "<name>+<hex id>+<base64(0x01 || key)>" and checks the id.
  static Status Parse(std::string_view vkey, NoteVerifier* out);
  NoteVerifier() = default;
  NoteVerifier(std::string name, const Ed25519PublicKey& key);

  const std::string& name() const { return name_; }
  uint32_t key_id() const { return key_id_; }
  std::string ToString() const;
  bool Verify(std::string_view text, std::span<const uint8_t> signature) const;

 private:
  std::string name_;
  Ed25519PublicKey key_{};
  uint32_t key_id_ = 0;
};

class NoteSigner {
 public:
  static Status Generate(std::string name, NoteSigner* out);
  // Parses "PRIVATE+KEY+<name>+<hex id>+<base64(0x01 || seed)>".
  static Status Parse(std::string_view skey, NoteSigner* out);

  const std::string& name() const { return name_; }
  const NoteVerifier& verifier() const { return verifier_; }
  std::string ToString() const;
  // Returns text || "\n" || signature line. `text` must be a valid note text.
  Status Sign(std::string_view text, std::string* note) const;
  // Ed25519 over `message` as it is: for records signed with the same key
  // format outside notes (callers prefix a context string of their own).
  // NoteVerifier::Verify checks these.
  Status SignBytes(std::string_view message, Ed25519Signature* out) const;

 private:
  std::string name_;
  Ed25519Seed seed_{};
  NoteVerifier verifier_;
};

// Checks that `note` is a well-formed signed note with a valid signature by
// `verifier` and returns its text. Signatures by other keys are ignored, as
// the spec requires; a bad signature claiming to be `verifier`'s fails.
Status OpenNote(std::string_view note, const NoteVerifier& verifier, std::string* text);

uint32_t NoteKeyId(std::string_view name, const Ed25519PublicKey& key);

// One signature line of a note: "— <name> base64(4-byte key id || payload)".
struct NoteSignature {
  std::string name;
  uint32_t key_id = 0;
  std::vector<uint8_t> payload;  // what follows the key id (a signature, ...)
};
// Splits a signed note into its text (ending in newline) and its signature
// lines, checked for form only (at most 100). VerifyFailed if malformed.
Status SplitNote(std::string_view note, std::string_view* text,
                 std::vector<NoteSignature>* signatures);

// The parts keys of every signature type share (signed-note's key
// encodings), for the other types built on them (cosignature.h):
// SHA-256(name || "\n" || algorithm || key)[:4];
uint32_t KeyId(std::string_view name, uint8_t algorithm, const std::array<uint8_t, 32>& key);
// "<name>+<8 hex digits>+<base64(algorithm || key)>", and its parser (the
// algorithm byte must match);
std::string KeyText(std::string_view name, uint32_t id, uint8_t algorithm,
                    const std::array<uint8_t, 32>& key);
Status ParseKeyText(std::string_view text, uint8_t algorithm, std::string* name, uint32_t* id,
                    std::array<uint8_t, 32>* key);
// and a signature line, "— <name> <base64(id || payload)>\n".
std::string SignatureLine(std::string_view name, uint32_t id, std::span<const uint8_t> payload);

}  // namespace latch::tlog
