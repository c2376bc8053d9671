// PostgresLog: a ledger kept in PostgreSQL (issue 17), as it is served: the
// signed checkpoint and every tile and entry bundle, full and partial, as
// rows, byte for byte what C2SP tlog-tiles names them. The tree state (size
// and checkpoint) lives in one row per origin, and moves only by
// compare-and-set: a writer names the size it last read, and the move is
// refused if the size is no longer that, so two writers can never fork the
// log and a writer that lost its turn cannot append.
//
// Schema version 2 (created by Init, idempotent):
//   latch_schema(version)                         one row: the schema version
//   latch_tree(origin PK, size, checkpoint)       one row: the served tree
//   latch_tiles(level, idx, start PK, width, data)  level -1: entry bundles
// A tile is stored as the pieces the tree grew it by: a row holds its
// entries [start, width), written once by the move that added them and
// never changed, so the table is append-only (each commit writes its new
// bytes and nothing else; the right edge is not rewritten). A tile of width
// w is read as the pieces from 0 up to w, each starting where the last ended,
// cut at w. The tree moves in the same transaction as the pieces it covers.
// The collector's role needs INSERT on latch_tiles and UPDATE on latch_tree
// only, never DELETE (docs/OPERATIONS.md).
//
// Not thread-safe: one connection, one user at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "collector/ledger/postgres/pg_connection.h"
#include "collector/ledger/tile_source.h"
#include "lib/tlog/signed_note.h"

namespace latch::ledger::postgres {

// What one Append did.
struct AppendResult {
  uint64_t rows_written = 0;     // pieces of tiles and bundles written
  uint64_t rows_present = 0;     // tiles the tree held all of already: nothing written
  bool moved_elsewhere = false;  // refused: the tree was no longer at the expected size
};

// A tile of the tree after the move (id.width wide), whole: Append stores
// the part of it the tree did not hold before.
struct TileRow {
  tlog::TileId id;
  std::string data;
};

class PostgresLog : public TileSource {
 public:
  static constexpr int kSchemaVersion = 2;

  // Creates the tables if missing and the tree row of `origin` (size 0, no
  // checkpoint yet). Refuses a database holding another schema version or
  // another origin.
  static Status Init(const std::string& conninfo, const std::string& origin,
                     const std::string& setting = "storage");
  // Connects and checks the schema version; `origin` empty: whichever the
  // database holds. `setting` names the connection string's source in errors.
  static Status Open(const std::string& conninfo, const std::string& setting,
                     const std::string& origin, std::unique_ptr<PostgresLog>* out);

  const std::string& origin() const { return origin_; }
  // The tree as served now: its size and signed checkpoint ("" before the first).
  Status ReadState(uint64_t* size, std::string* checkpoint_note);
  // Whether the connection still works (not broken by the server going).
  bool connected() const { return conn_->ok(); }
  // This session's application_name: the sequencer's names where clients
  // reach it (PostgreSQL keeps 63 bytes of it).
  Status SetApplicationName(const std::string& name);
  // The application_name of the session holding the sequencer's lock ("":
  // none holds it, or its name cannot be seen).
  Status ReadSequencerName(std::string* name);
  // In one transaction and one round trip (libpq's pipeline mode): moves
  // the tree from `expected_size` to `new_size` with `checkpoint_note` by
  // compare-and-set, and writes of each of `tiles` (every one a tile of the
  // new tree, at its width there) the entries the old tree did not hold.
  // FailedPrecondition if the size is no longer `expected_size` (another
  // writer moved it; result->moved_elsewhere says so): nothing of this move
  // is served, and the caller must read the state again. Corruption if the
  // database already holds a piece this move would write (entries past the
  // served tree: only a writer other than a sequencer puts them there).
  Status Append(uint64_t expected_size, const std::vector<TileRow>& tiles, uint64_t new_size,
                const std::string& checkpoint_note, AppendResult* result);
  // The stored bytes of `tile` (cut to its width), without asking whether
  // the current tree serves it: for a reader that knows its own tree size.
  Status ReadStoredTile(const tlog::TileId& tile, std::string* data);

  // Tries to take, on this connection, the lock that makes its holder the
  // one sequencer of this origin (a session advisory lock: PostgreSQL frees
  // it when the connection ends, so a dead collector's lock goes with its
  // session). *held: whether this connection holds it now.
  // While held, the session is ended by the server once idle for
  // `lease_ms` (idle_session_timeout): a holder that stops talking (a
  // frozen or partitioned machine) loses the lock then; a live one pings
  // (Ping) more often than that.
  Status TryLockSequencer(int lease_ms, bool* held);
  // One round trip.
  Status Ping();

  // TileSource: what the current tree serves, and nothing past it.
  Status ReadCheckpoint(std::string* note) override;
  Status ReadTile(const tlog::TileId& tile, std::string* data) override;
  std::string Describe() const override;

 private:
  PostgresLog(std::unique_ptr<PgConnection> conn, std::string origin)
      : conn_(std::move(conn)), origin_(std::move(origin)) {}
  std::unique_ptr<PgConnection> conn_;
  std::string origin_;
};

// How many entries of `tile` (its level and index; its width aside) a tree
// of `size` holds: 0 for a tile past the tree.
uint32_t TileWidthAt(uint64_t size, const tlog::TileId& tile);

// Cuts the bytes of a tile (a bundle or a hash tile at least tile.width
// wide) to its first tile.width entries: a narrower partial tile is a prefix
// of a wider one. Corruption if the bytes are shorter.
Status CutTileToWidth(const tlog::TileId& tile, std::string* data);

struct MigrateResult {
  uint64_t size = 0;           // the tree size now served from the database
  uint64_t tiles_written = 0;  // tiles and bundles new to the database
  uint64_t tiles_present = 0;  // already there (an earlier, partial or complete, copy)
  uint64_t tiles_checked = 0;  // read back and compared byte for byte
};

// Copies the log `source` serves (checkpoint signed by `key`) into `log`: a
// database behind the source catches up (it must hold a prefix of the
// source's tree: same root at its size), one ahead or forked is refused.
// Every tile is then read back from the database and compared byte for
// byte, and the served checkpoint must be the source's.
Status MigrateLog(TileSource& source, const tlog::NoteVerifier& key, PostgresLog& log,
                  MigrateResult* result);

}  // namespace latch::ledger::postgres
