// Ed25519 keys and signatures (RFC 8032) through OpenSSL's EVP interface.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "lib/status/status.h"

namespace latch::tlog {

using Ed25519Seed = std::array<uint8_t, 32>;  // the private key
using Ed25519PublicKey = std::array<uint8_t, 32>;
using Ed25519Signature = std::array<uint8_t, 64>;

// A fresh private key from OpenSSL's CSPRNG.
Status GenerateEd25519Seed(Ed25519Seed* seed);
Status DeriveEd25519PublicKey(const Ed25519Seed& seed, Ed25519PublicKey* out);
Status SignEd25519(const Ed25519Seed& seed, std::span<const uint8_t> message,
                   Ed25519Signature* out);
// True iff `signature` is a valid signature of `message` by `key`.
bool VerifyEd25519(const Ed25519PublicKey& key, std::span<const uint8_t> message,
                   std::span<const uint8_t> signature);

}  // namespace latch::tlog
