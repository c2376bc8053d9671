// PostgresLedger: the ledger (ledger.h) kept in PostgreSQL, so that several
// collectors can serve one ledger and no single machine holds the only copy
// (issue 17). Rows and transactions are PostgresLog's; this class adds what
// an appender needs on top: the signing key, the right edge of the tree, and
// the tiles a batch touches, and it serves reads from its own view of the
// tree.
//
// One writer at a time, by two guards. The sequencer's lock (a session
// advisory lock on the writing connection) decides who should write; the
// compare-and-set of every move (PostgresLog::Append) makes sure that a
// writer that lost the lock without knowing it (paused, cut off) cannot
// append: its move is refused, the ledger marks itself superseded, and its
// owner must step down (the collector exits and starts again as a standby).
//
// A ledger opens as a reader. TryBecomeSequencer takes the lock, reads the
// tree as the database has it then, and only then takes commits.
//
// The lock lives as long as the sequencer's session, and the server ends
// that session once it is idle for kLeaseMs; a thread of the ledger pings
// every kLeaseMs / 5. So a sequencer that stops (kill -9, a dead machine,
// SIGSTOP, a partition) frees the lock within kLeaseMs, while a live idle
// one keeps it.
//
// Threads: Commit, Recover, TryBecomeSequencer and the pings serialise on
// one connection; reads use a second connection of their own. Tiles only
// ever grow (a narrower tile is a prefix of a wider one), so a bounded cache
// keeps the widest bytes known of each tile, from reads and from this
// sequencer's own commits, and serves any width up to them: the proofs for
// the receipts of a busy sequencer (the right edge, just written) cost no
// query.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "collector/ledger/ledger.h"
#include "collector/ledger/postgres/postgres_log.h"
#include "collector/ledger/right_edge.h"
#include "collector/ledger/shared_ledger.h"
#include "lib/sync/mutex.h"

namespace latch::ledger::postgres {

class PostgresLedger : public Ledger, public SharedLedger {
 public:
  static constexpr int kLeaseMs = 5000;

  // Opens the ledger of `signer`'s origin, which the database at `conninfo`
  // must hold (latch-collector storage init, or latch-ledger migrate).
  // `setting` names the connection string's source in errors.
  static Status Open(const std::string& conninfo, const std::string& setting,
                     tlog::NoteSigner signer, std::unique_ptr<PostgresLedger>* out);
  ~PostgresLedger() override;

  // Tries to take the sequencer's lock. Once this ledger holds it: reads the
  // tree as the database has it now (a previous sequencer may have moved
  // it), signs the empty tree's first checkpoint if it has none, and takes
  // commits. *became: whether this ledger is the sequencer now.
  Status TryBecomeSequencer(bool* became) override;
  bool is_sequencer() const override { return sequencer_.load(); }
  // A standby's view follows the sequencer: reads the tree's size and
  // checkpoint from the database and, if it grew, makes them this ledger's
  // (reads then serve the new entries). The new tree must extend the old
  // one (same root at the old size); a database whose tree shrank or forked
  // is Corruption, and the view stays. *grew: whether the view moved on.
  // Does nothing on the sequencer, whose view is its own commits.
  Status Follow(bool* grew) override;
  // As the sequencing session's application_name ("latch-collector URL").
  void Advertise(const std::string& address) override;
  Status SequencerAddress(std::string* address) override;
  // Whether another writer moved the tree past this one: this ledger then
  // refuses every commit for good, and its owner must step down.
  bool superseded() const override { return superseded_.load(); }
  // Rows written to the database by commits since open (tiles and bundles).
  uint64_t rows_written() const { return rows_written_.load(); }

  // Ledger.
  Status Commit(std::span<const EntryBatch* const> batches, uint64_t* first_index) override;
  bool write_failed() const override { return failed_.load(); }
  // Reconnects, takes the lock again, and checks that the database is still
  // at this ledger's last acknowledged tree. A database that moved on (a
  // commit that landed though its answer was lost, or another sequencer)
  // makes this ledger superseded: FailedPrecondition, for good.
  Status Recover() override;
  uint64_t size() const override;
  uint64_t commits() const override { return commits_.load(); }
  tlog::Checkpoint checkpoint() const override;
  std::string checkpoint_note() const override;
  const tlog::NoteVerifier& verifier() const override { return verifier_; }

  // TileSource and StoredHashReader over this ledger's tree.
  Status ReadCheckpoint(std::string* note) override;
  Status ReadTile(const tlog::TileId& tile, std::string* data) override;
  Status ReadHashes(int level, uint64_t start, uint64_t count, tlog::Hash* out) override;
  std::string Describe() const override { return description_; }

 private:
  PostgresLedger(std::string conninfo, std::string setting, tlog::NoteSigner signer)
      : conninfo_(std::move(conninfo)),
        setting_(std::move(setting)),
        signer_(std::move(signer)),
        verifier_(signer_.verifier()) {}
  // Reads size and checkpoint from the database and makes them this
  // ledger's view; with `load_edge`, also the right edge and the partial
  // bundle an appender extends.
  Status LoadTree(PostgresLog& log, bool load_edge) LATCH_REQUIRES(commit_mu_);
  // The checkpoint a tree row holds, checked against its size and the key.
  Status OpenTreeState(uint64_t size, const std::string& note, tlog::Checkpoint* out) const;
  // The rows of every tile and bundle that `batches` touch, appended at the
  // edge (which moves on by them).
  void BuildRows(std::span<const EntryBatch* const> batches, std::vector<TileRow>* rows,
                 std::string* partial_bundle) LATCH_REQUIRES(commit_mu_);
  Status ReadStored(const tlog::TileId& tile, std::string* data);
  void Supersede(const std::string& why);
  void PingWhileSequencer();

  const std::string conninfo_, setting_;
  const tlog::NoteSigner signer_;
  const tlog::NoteVerifier verifier_;
  std::string description_;

  Mutex commit_mu_;  // one Commit, Recover or TryBecomeSequencer at a time
  std::unique_ptr<PostgresLog> writer_ LATCH_GUARDED_BY(commit_mu_);  // holds the lock
  std::string advertised_ LATCH_GUARDED_BY(commit_mu_);
  // Names the writer's session after advertised_ (a failure is logged: only
  // standbys' hints depend on it).
  void NameSession() LATCH_REQUIRES(commit_mu_);
  RightEdge edge_ LATCH_GUARDED_BY(commit_mu_);
  std::string partial_bundle_ LATCH_GUARDED_BY(commit_mu_);  // entries past the last full bundle
  std::vector<std::vector<tlog::Hash>> completed_ LATCH_GUARDED_BY(commit_mu_);
  std::atomic<bool> sequencer_{false}, failed_{false}, superseded_{false};
  std::atomic<uint64_t> commits_{0}, rows_written_{0};

  std::atomic<bool> closing_{false};
  std::thread pinger_;

  struct CachedTile {
    uint32_t width = 0;
    std::string data;
  };
  void Remember(const tlog::TileId& tile, const std::string& data) LATCH_REQUIRES(read_mu_);
  // Runs `read` on the reading connection, made (or made again, once, if
  // the server dropped it) as needed.
  Status OnReader(const std::function<Status(PostgresLog&)>& read) LATCH_REQUIRES(read_mu_);
  Mutex read_mu_;
  std::unique_ptr<PostgresLog> reader_ LATCH_GUARDED_BY(read_mu_);
  // (level, index) -> the widest bytes of that tile known to be stored.
  std::map<std::pair<int, uint64_t>, CachedTile> tiles_ LATCH_GUARDED_BY(read_mu_);
  size_t cached_bytes_ LATCH_GUARDED_BY(read_mu_) = 0;

  mutable Mutex state_mu_;  // the committed view: what readers see
  uint64_t size_ LATCH_GUARDED_BY(state_mu_) = 0;
  tlog::Checkpoint checkpoint_ LATCH_GUARDED_BY(state_mu_);
  std::string checkpoint_note_ LATCH_GUARDED_BY(state_mu_);
};

}  // namespace latch::ledger::postgres
