// The keys agents are configured with (`latch-collector keys`): the CURVE
// public key, the grant key and the ledger key. Read without opening the
// ledger for writing, so they are printed while the collector runs; made on
// first use as the collector's first start would make them. Run as root on
// a data directory the service user owns, whatever it creates is handed to
// that user (issue 16: root-owned keys stopped the service from starting).
#pragma once

#include <string>

#include "collector/ingest/collector_config.h"
#include "lib/status/status.h"

namespace latch::collector {

struct CollectorKeys {
  std::string curve_public_key;  // Z85
  std::string grant_key;         // signed-note verifier key
  std::string ledger_key;        // signed-note verifier key
};

Status LoadOrMakeCollectorKeys(const CollectorConfig& config, CollectorKeys* out);

// Run as root: every entry under `dir` that root owns is given to the owner
// of `dir` (when that is not root). A no-op for anyone else.
Status MatchDataDirOwner(const std::string& dir);

}  // namespace latch::collector
