// Where the collector's ledger lives, as its configuration says (issue 17):
// files under <data_dir>/ledger, made on first start (the embedded
// default); or PostgreSQL ([storage] postgres), which several collectors
// share. There the ledger's signing key is a file of its own
// ([storage] key), the same on every collector, and one collector at a time
// is the sequencer: the others follow as standbys until its lock is free.
#pragma once

#include <memory>
#include <string>

#include "collector/ingest/collector_config.h"
#include "collector/ledger/ledger.h"
#include "collector/ledger/shared_ledger.h"
#include "lib/status/status.h"
#include "lib/tlog/signed_note.h"

namespace latch::collector {

// Opens the ledger. The files' ledger is this collector's to write. The
// PostgreSQL one opens as a reader, and *shared is its shared side: the
// collector follows it as a standby until it becomes the sequencer
// (standby.cc). *shared is null for files.
Status OpenCollectorLedger(const CollectorConfig& config, std::unique_ptr<ledger::Ledger>* out,
                           ledger::SharedLedger** shared);

// The ledger's verifier key, without opening it for writing (latch-collector
// keys): from the files, made on first use; or from the [storage] key file.
Status ReadLedgerVerifier(const CollectorConfig& config, tlog::NoteVerifier* out);

// latch-collector storage init: makes the signing key if its file is absent
// (mode 0600), then the database's tables and this origin's empty tree
// (idempotent). *vkey: the ledger's verifier key, for agents and auditors.
Status InitPostgresStorage(const CollectorConfig& config, std::string* vkey);

}  // namespace latch::collector
