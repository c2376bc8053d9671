// Signed grants and grant sets: what the collector's grant key vouches for and
// what an agent checks before anything reaches its kernel (promise 6).
//
// A signature is Ed25519 over a context string and the canonical bytes of the
// Grant or GrantSet, so a signature made for one kind of record can never be
// replayed as the other. The grant key is a signed-note key
// (tlog/signed_note.h): its key id travels with each signature.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lib/status/status.h"
#include "lib/tlog/signed_note.h"
#include "schemas/grant.capnp.h"
#include "schemas/wire.capnp.h"

namespace latch::schema {

inline constexpr char kGrantContext[] = "latch grant v1\n";
inline constexpr char kGrantSetContext[] = "latch grant set v1\n";

// The grant keys a checker trusts: one, or during a key rotation the new one
// and those it replaces. A signature names its key by id; one by any other
// key is refused.
class GrantKeys {
 public:
  GrantKeys() = default;
  GrantKeys(tlog::NoteVerifier key) : keys_{std::move(key)} {}  // NOLINT: one key is common
  explicit GrantKeys(std::vector<tlog::NoteVerifier> keys) : keys_(std::move(keys)) {}

  const tlog::NoteVerifier* Find(uint32_t key_id) const;
  const std::vector<tlog::NoteVerifier>& keys() const { return keys_; }

 private:
  std::vector<tlog::NoteVerifier> keys_;
};

// Signs the canonical form of `grant` into `out`.
Status SignGrant(const tlog::NoteSigner& key, Grant::Reader grant, SignedGrant::Builder out);
// Checks `signed_grant` against `keys` and, if it holds, returns its canonical
// Grant bytes. VerifyFailed for a bad signature or one by a key not in `keys`,
// Corruption for bytes that are not a canonical Grant.
Status OpenSignedGrant(const GrantKeys& keys, SignedGrant::Reader signed_grant,
                       std::string* grant_bytes);

Status SignGrantSet(const tlog::NoteSigner& key, GrantSet::Reader set, SignedGrantSet::Builder out);
Status OpenSignedGrantSet(const GrantKeys& keys, SignedGrantSet::Reader signed_set,
                          std::string* set_bytes);

}  // namespace latch::schema
