// Verification of RFC 9162 section 2.1.3 inclusion proofs and 2.1.4
// consistency proofs. These run on the agent (every host is a witness) and in
// offline verifiers, so they take nothing but hashes and sizes.
#pragma once

#include <cstdint>
#include <span>

#include "lib/status/status.h"
#include "lib/tlog/sha256.h"

namespace latch::tlog {

// OK iff `proof` shows that the leaf with hash `leaf_hash` is at `index` in
// the tree of `size` leaves whose root is `root`.
Status VerifyInclusion(uint64_t index, uint64_t size, const Hash& leaf_hash,
                       std::span<const Hash> proof, const Hash& root);

// OK iff `proof` shows that the tree of `size1` leaves with root `root1` is a
// prefix of the tree of `size2` leaves with root `root2`. size1 must be > 0:
// the empty tree is a prefix of every tree and needs no proof.
Status VerifyConsistency(uint64_t size1, uint64_t size2, std::span<const Hash> proof,
                         const Hash& root1, const Hash& root2);

// The same for roots as received, of any length (RFC 9162 compares roots as
// byte strings): a root that is not 32 bytes long can only equal the other
// root in the equal-sizes case.
Status VerifyConsistency(uint64_t size1, uint64_t size2, std::span<const Hash> proof,
                         std::span<const uint8_t> root1, std::span<const uint8_t> root2);

}  // namespace latch::tlog
