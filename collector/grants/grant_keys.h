// The collector's grant keys on disk, in data_dir, and their rotation.
//
//   grant.key       the key that signs grants and grant sets (made on first
//                   start, mode 0600)
//   grant.vkey      its verifier key: what agents hold as grant_key
//   grant.next.key  a successor, prepared ahead (latch-collector grant-key --next)
//   grant.retired   verifier keys it replaced, one per line
//
// A rotation never stops enforcement: the successor's verifier key is added
// to every agent's grant_key list first, then the successor becomes the
// signing key (with the collector stopped), and the replaced key is retired:
// grants it signed stay valid until they end, so the ledger replay and the
// agents still accept them; grant sets are always signed with the new key.
#pragma once

#include <string>
#include <vector>

#include "lib/status/status.h"
#include "lib/tlog/signed_note.h"

namespace latch::collector {

// Loads the signing key (making it on first start, named "<origin>/grants")
// and the retired verifier keys; rewrites grant.vkey.
Status LoadGrantKeys(const std::string& dir, const std::string& origin, tlog::NoteSigner* signer,
                     std::vector<tlog::NoteVerifier>* retired);

// The signing key's verifier, read without writing anything (NotFound before
// the first start made the key).
Status ReadGrantVerifier(const std::string& dir, tlog::NoteVerifier* verifier);

// Makes grant.next.key unless there is one already; its verifier key in *vkey.
Status PrepareNextGrantKey(const std::string& dir, const std::string& origin, std::string* vkey);

// The prepared key becomes the signing key and the current one is retired.
// The collector must not be running. FailedPrecondition without a prepared key.
Status PromoteNextGrantKey(const std::string& dir, std::string* retired_vkey,
                           std::string* new_vkey);

}  // namespace latch::collector
