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

#include "schemas/grant.capnp.h"
#include "schemas/wire.capnp.h"
#include "tlog/signed_note.h"
#include "tlog/status.h"

namespace latch::schema {

inline constexpr char kGrantContext[] = "latch grant v1\n";
inline constexpr char kGrantSetContext[] = "latch grant set v1\n";

// Signs the canonical form of `grant` into `out`.
Status SignGrant(const tlog::NoteSigner& key, Grant::Reader grant, SignedGrant::Builder out);
// Checks `signed_grant` against `key` and, if it holds, decodes its grant
// into `message` (whose root is then the Grant). VerifyFailed for a bad
// or foreign signature, Corruption for bytes that are not a canonical Grant.
Status OpenSignedGrant(const tlog::NoteVerifier& key, SignedGrant::Reader signed_grant,
                       std::string* grant_bytes);

Status SignGrantSet(const tlog::NoteSigner& key, GrantSet::Reader set, SignedGrantSet::Builder out);
Status OpenSignedGrantSet(const tlog::NoteVerifier& key, SignedGrantSet::Reader signed_set,
                          std::string* set_bytes);

}  // namespace latch::schema
