// C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature), the
// cosignature/v1 type: a witness's Ed25519 statement that, as of its
// timestamp, the checkpoint it signs is the largest consistent tree it has
// seen of that log. It is a note signature line on the checkpoint:
//
//   — <witness name> base64(key id || u64 timestamp (big-endian) || signature)
//
// where the key id is SHA-256(name || "\n" || 0x04 || public key)[:4] and the
// signature is over
//
//   cosignature/v1
//   time <timestamp>
//   <the checkpoint's note text, final newline included>
//
// Keys travel as signed-note keys with type byte 0x04:
// "<name>+<hex id>+<base64(0x04 || key)>" and, for the witness itself,
// "PRIVATE+KEY+<name>+<hex id>+<base64(0x04 || seed)>".
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lib/status/status.h"
#include "lib/tlog/ed25519.h"

namespace latch::tlog {

constexpr uint8_t kCosignatureV1 = 0x04;

// The message a cosignature/v1 signs, for `text` (a checkpoint's note text).
std::string CosignedMessage(std::string_view text, uint64_t timestamp);

class CosignatureVerifier {
 public:
  static Status Parse(std::string_view vkey, CosignatureVerifier* out);
  CosignatureVerifier() = default;
  CosignatureVerifier(std::string name, const Ed25519PublicKey& key);

  const std::string& name() const { return name_; }
  uint32_t key_id() const { return key_id_; }
  std::string ToString() const;
  // Whether `payload` (what follows the key id on the signature line) is a
  // valid cosignature of `text`; its timestamp in *timestamp if so.
  bool Verify(std::string_view text, std::span<const uint8_t> payload, uint64_t* timestamp) const;

 private:
  std::string name_;
  Ed25519PublicKey key_{};
  uint32_t key_id_ = 0;
};

class CosignatureSigner {
 public:
  static Status Generate(std::string name, CosignatureSigner* out);
  static Status Parse(std::string_view skey, CosignatureSigner* out);

  const std::string& name() const { return name_; }
  const CosignatureVerifier& verifier() const { return verifier_; }
  std::string ToString() const;
  // The signature line (ending in newline) cosigning `text` at `timestamp`
  // (seconds since the epoch, 1 to 2^63-1).
  Status Cosign(std::string_view text, uint64_t timestamp, std::string* line) const;

 private:
  std::string name_;
  Ed25519Seed seed_{};
  CosignatureVerifier verifier_;
};

// The witnesses of `witnesses` that cosigned `note` (a signed note; its own
// signatures are not checked here), each at most once, in *cosigned (their
// indexes in `witnesses`). Lines of unknown keys are ignored; a line with a
// known witness's name and key id whose signature does not verify makes the
// note malformed (VerifyFailed), as signed-note requires.
Status FindCosignatures(std::string_view note, std::span<const CosignatureVerifier> witnesses,
                        std::vector<size_t>* cosigned);

}  // namespace latch::tlog
