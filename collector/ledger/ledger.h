// Ledger: the durable, append-only Merkle log that every event and decision
// lives in, served as C2SP tlog-tiles with a signed C2SP checkpoint after
// every committed batch. A batch is durable before its indexes are returned.
//
// Two storages implement it: FileLedger (file_ledger.h), a few append-only
// files on one disk, the embedded default; and PostgresLedger
// (postgres/postgres_ledger.h), rows in a PostgreSQL database that several
// collectors share (issue 17). Both serve byte-identical tiles and
// checkpoints for the same entries and key.
//
// Thread safety: one thread commits at a time (Commit serialises); readers on
// any thread see only what the latest checkpoint covers.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "collector/ledger/entry_batch.h"
#include "collector/ledger/tile_source.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/signed_note.h"
#include "lib/tlog/tree_reader.h"

namespace latch::ledger {

class Ledger : public TileSource, public tlog::StoredHashReader {
 public:
  ~Ledger() override = default;

  // Appends every entry of `batches`, in order, as one batch: durable and
  // covered by a new signed checkpoint when this returns OK, with the first
  // entry at *first_index. After a failed write the ledger refuses further
  // commits (FailedPrecondition) until Recover succeeds.
  virtual Status Commit(std::span<const EntryBatch* const> batches, uint64_t* first_index) = 0;
  // Whether a commit failed to write (a full or failing disk, a lost
  // database): the ledger then refuses every further commit until recovered.
  virtual bool write_failed() const = 0;
  // After a failed commit: brings the storage back to the last acknowledged
  // checkpoint and takes commits again. An error (the storage still
  // refuses) leaves it refusing; call again later. OK and nothing done when
  // no commit failed.
  virtual Status Recover() = 0;
  // Whether another writer moved the ledger past this one (several
  // collectors sharing one storage): it then refuses commits for good, and
  // its owner must step down. Never for a storage with one writer.
  virtual bool superseded() const { return false; }

  virtual uint64_t size() const = 0;
  // Commits written (each one durable batch and one signed checkpoint) since open.
  virtual uint64_t commits() const = 0;
  virtual tlog::Checkpoint checkpoint() const = 0;
  virtual std::string checkpoint_note() const = 0;
  virtual const tlog::NoteVerifier& verifier() const = 0;

  // Reads through the tiles and stored hashes of the committed tree.
  Status ReadEntry(uint64_t index, std::string* entry);
  // Proofs against the tree of `size` leaves (size <= size()).
  Status InclusionProof(uint64_t index, uint64_t size, std::vector<tlog::Hash>* proof);
  Status ConsistencyProof(uint64_t size1, uint64_t size2, std::vector<tlog::Hash>* proof);
  Status RootAt(uint64_t size, tlog::Hash* root);
};

}  // namespace latch::ledger
