// Where the collector's ledger lives, as its configuration says (issue 17):
// files under <data_dir>/ledger, made on first start (the embedded
// default); or PostgreSQL ([storage] postgres), which several collectors
// share. There the ledger's signing key is a file of its own
// ([storage] key), the same on every collector, and one collector at a time
// is the sequencer: the others wait as standbys until its lock is free.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "collector/ingest/collector_config.h"
#include "collector/ledger/ledger.h"
#include "lib/status/status.h"
#include "lib/tlog/signed_note.h"

namespace latch::collector {

// Opens the ledger for writing. With PostgreSQL, waits (logging once, then
// every minute) until this collector holds the sequencer's lock, or until
// `*stop` is set (then FailedPrecondition "stopped while a standby").
Status OpenCollectorLedger(const CollectorConfig& config, const std::atomic<bool>* stop,
                           std::unique_ptr<ledger::Ledger>* out);

// The ledger's verifier key, without opening it for writing (latch-collector
// keys): from the files, made on first use; or from the [storage] key file.
Status ReadLedgerVerifier(const CollectorConfig& config, tlog::NoteVerifier* out);

// latch-collector storage init: makes the signing key if its file is absent
// (mode 0600), then the database's tables and this origin's empty tree
// (idempotent). *vkey: the ledger's verifier key, for agents and auditors.
Status InitPostgresStorage(const CollectorConfig& config, std::string* vkey);

}  // namespace latch::collector
