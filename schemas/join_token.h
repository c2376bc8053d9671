// Join tokens: how a new agent enrols without anyone copying keys by hand
// (issue 16). `latch-collector token create` prints one; `latch-agent enrol`
// spends it. A token carries the collector's CURVE public key (so the agent
// can reach it at all: CURVE needs the server's key before the handshake)
// and a 32-byte one-time secret; the ledger keeps only the secret's SHA-256.
//
// The token alone is not trusted for the collector's identity: the agent is
// also given the key's pin (`sha256:<hex>` of the raw public key, printed by
// `latch-collector keys`), which may travel by a channel more trusted than
// the token's, and refuses a token whose key does not match it. Once
// connected, the CURVE handshake proves the collector holds that key.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "lib/status/status.h"

namespace latch::schema {

struct JoinToken {
  std::array<uint8_t, 32> collector_key{};  // CURVE public key, raw
  std::array<uint8_t, 32> secret{};
};

// "latchjoin1." followed by the 64 bytes in unpadded base64url: safe to
// paste into a shell, and never mistaken for a flag.
std::string EncodeJoinToken(const JoinToken& token);
// Strict: the prefix, exactly 86 base64url characters, nothing around them.
// The error never repeats the input (it may be a real token, mistyped).
Status DecodeJoinToken(std::string_view text, JoinToken* out);
// A fresh secret for `collector_key_z85` (40 Z85 characters).
Status MakeJoinToken(const std::string& collector_key_z85, JoinToken* out);

// What the ledger keeps of a token: the hex SHA-256 of its secret.
std::string JoinSecretHash(const std::array<uint8_t, 32>& secret);

// The pin of a CURVE public key: "sha256:" and the hex SHA-256 of its raw
// 32 bytes; "" if `z85` is not a CURVE key.
std::string CurveKeyPin(const std::string& z85);
std::string CurveKeyPin(const std::array<uint8_t, 32>& raw);
// The Z85 text of a raw CURVE key.
std::string CurveKeyZ85(const std::array<uint8_t, 32>& raw);

}  // namespace latch::schema
