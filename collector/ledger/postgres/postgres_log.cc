#include "collector/ledger/postgres/postgres_log.h"

#include <algorithm>
#include <optional>

#include "collector/ledger/tile_hash_reader.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/tree_reader.h"

namespace latch::ledger::postgres {

namespace {

using tlog::kTileWidth;

// Whether `tile` is served by a tree of `size`: within its level, a full tile
// or a partial one no wider than what the tree has there.
bool Serves(uint64_t size, const tlog::TileId& tile) {
  return tile.width >= 1 && tile.width <= TileWidthAt(size, tile);
}

// Where entry `count` of a tile's bytes begins: entries of a bundle are a
// big-endian uint16 length and that many bytes, of a hash tile 32 bytes
// each. False if the bytes hold fewer than `count` entries.
bool OffsetOfEntry(const tlog::TileId& tile, uint32_t count, const std::string& data,
                   size_t* offset) {
  if (!tile.is_entries()) {
    *offset = size_t{count} * 32;
    return *offset <= data.size();
  }
  size_t at = 0;
  for (uint32_t i = 0; i < count; ++i) {
    if (at + 2 > data.size()) return false;
    at += 2 + ((static_cast<uint8_t>(data[at]) << 8) | static_cast<uint8_t>(data[at + 1]));
    if (at > data.size()) return false;
  }
  *offset = at;
  return true;
}

// Drops the first `count` entries of a tile's bytes: what is left is the
// piece from entry `count` on.
Status DropFirst(const tlog::TileId& tile, uint32_t count, std::string* data) {
  size_t at = 0;
  if (!OffsetOfEntry(tile, count, *data, &at)) {
    return Status::InvalidArgument(tile.Path() + ": holds fewer than " + std::to_string(count) +
                                   " entries");
  }
  data->erase(0, at);
  return Status::Ok();
}

// Every tile a tree of `size` serves, in the exporter's order: entry bundles,
// then each level of hash tiles; each full tile, and the partial one at the
// right edge.
std::vector<tlog::TileId> TilesOf(uint64_t size) {
  std::vector<tlog::TileId> tiles;
  for (int level = tlog::TileId::kEntries;; ++level) {
    const uint64_t count = level < 0 ? size : tlog::HashesAtLevel(size, level);
    if (count == 0) break;
    for (uint64_t index = 0; index * kTileWidth < count; ++index) {
      tiles.push_back(
          {level, index, static_cast<uint32_t>(std::min(kTileWidth, count - index * kTileWidth))});
    }
  }
  return tiles;
}

}  // namespace

uint32_t TileWidthAt(uint64_t size, const tlog::TileId& tile) {
  const uint64_t count = tile.is_entries() ? size : tlog::HashesAtLevel(size, tile.level);
  // Divided, not multiplied: a client names any index, and index * 256
  // overflows past 2^56.
  if (tile.index >= count / kTileWidth + 1) return 0;
  const uint64_t first = tile.index * kTileWidth;
  if (count <= first) return 0;
  return static_cast<uint32_t>(std::min<uint64_t>(kTileWidth, count - first));
}

// The first tile.width entries of a tile's bytes: a narrower partial tile is
// a prefix of a wider one.
Status CutTileToWidth(const tlog::TileId& tile, std::string* data) {
  size_t at = 0;
  if (!OffsetOfEntry(tile, tile.width, *data, &at)) {
    return Status::Corruption(tile.Path() + ": the stored bytes hold fewer entries than its width");
  }
  data->resize(at);
  return Status::Ok();
}

Status PostgresLog::Init(const std::string& conninfo, const std::string& origin,
                         const std::string& setting) {
  if (origin.empty()) return Status::InvalidArgument("a ledger needs an origin");
  std::unique_ptr<PgConnection> c;
  LATCH_RETURN_IF_ERROR(PgConnection::Connect(conninfo, setting, &c));
  PgTransaction tx(*c);
  LATCH_RETURN_IF_ERROR(tx.Begin());
  // One initialiser at a time; others wait, then find the tables made.
  LATCH_RETURN_IF_ERROR(
      c->Exec("locking for the schema", "SELECT pg_advisory_xact_lock(7355240117)", {}));
  // One statement each: parameterised execution takes one at a time.
  for (const char* ddl :
       {"CREATE TABLE IF NOT EXISTS latch_schema (version integer NOT NULL)",
        "CREATE TABLE IF NOT EXISTS latch_tree (origin text PRIMARY KEY,"
        " size bigint NOT NULL CHECK (size >= 0), checkpoint bytea NOT NULL)",
        "CREATE TABLE IF NOT EXISTS latch_tiles (level smallint NOT NULL, idx bigint NOT NULL,"
        " start smallint NOT NULL CHECK (start BETWEEN 0 AND 255),"
        " width smallint NOT NULL CHECK (width BETWEEN 1 AND 256), data bytea NOT NULL,"
        " CHECK (start < width), PRIMARY KEY (level, idx, start))",
        "ALTER TABLE latch_tiles ALTER COLUMN data SET STORAGE EXTERNAL"}) {
    LATCH_RETURN_IF_ERROR(c->Exec("creating the schema", ddl));
  }
  std::optional<PgResult> r;
  LATCH_RETURN_IF_ERROR(
      c->Exec("reading the schema version", "SELECT version FROM latch_schema", {}, &r));
  if (r->rows() == 0) {
    LATCH_RETURN_IF_ERROR(c->Exec("writing the schema version",
                                  "INSERT INTO latch_schema (version) VALUES ($1)",
                                  {PgParam::Int(kSchemaVersion)}));
  } else {
    int64_t version = 0;
    LATCH_RETURN_IF_ERROR(r->Int(0, 0, &version));
    if (version != kSchemaVersion) {
      return Status::FailedPrecondition("the database holds schema version " +
                                        std::to_string(version) + ", this build knows " +
                                        std::to_string(kSchemaVersion));
    }
  }
  LATCH_RETURN_IF_ERROR(
      c->Exec("reading the ledger's origin", "SELECT origin FROM latch_tree", {}, &r));
  if (r->rows() > 0 && r->value(0, 0) != origin) {
    return Status::FailedPrecondition("the database holds ledger '" + r->value(0, 0) + "', not '" +
                                      origin + "'");
  }
  if (r->rows() == 0) {
    LATCH_RETURN_IF_ERROR(c->Exec("creating the ledger's tree",
                                  "INSERT INTO latch_tree (origin, size, checkpoint) "
                                  "VALUES ($1, 0, ''::bytea)",
                                  {PgParam::Text(origin)}));
  }
  return tx.Commit();
}

Status PostgresLog::Open(const std::string& conninfo, const std::string& setting,
                         const std::string& origin, std::unique_ptr<PostgresLog>* out) {
  std::unique_ptr<PgConnection> c;
  LATCH_RETURN_IF_ERROR(PgConnection::Connect(conninfo, setting, &c));
  std::optional<PgResult> r;
  Status s = c->Exec("reading the schema version", "SELECT version FROM latch_schema", {}, &r);
  if (!s.ok() || r->rows() != 1) {
    return Status::FailedPrecondition(setting + ": " + c->Describe() +
                                      " holds no Latch ledger (run latch-collector storage init, "
                                      "or latch-ledger migrate)");
  }
  int64_t version = 0;
  LATCH_RETURN_IF_ERROR(r->Int(0, 0, &version));
  if (version != kSchemaVersion) {
    return Status::FailedPrecondition(setting + ": the database holds schema version " +
                                      std::to_string(version) + ", this build knows " +
                                      std::to_string(kSchemaVersion));
  }
  LATCH_RETURN_IF_ERROR(
      c->Exec("reading the ledger's origin", "SELECT origin FROM latch_tree", {}, &r));
  if (r->rows() != 1) return Status::Corruption(setting + ": the database has no ledger tree");
  const std::string held = r->value(0, 0);
  if (!origin.empty() && held != origin) {
    return Status::FailedPrecondition(setting + ": the database holds ledger '" + held +
                                      "', not '" + origin + "'");
  }
  out->reset(new PostgresLog(std::move(c), held));
  return Status::Ok();
}

std::string PostgresLog::Describe() const { return "postgres " + conn_->Describe(); }

Status PostgresLog::ReadState(uint64_t* size, std::string* checkpoint_note) {
  std::optional<PgResult> r;
  LATCH_RETURN_IF_ERROR(conn_->Exec(
      "reading the tree", "SELECT size::text, checkpoint FROM latch_tree WHERE origin = $1",
      {PgParam::Text(origin_)}, &r, /*binary_results=*/true));
  if (r->rows() != 1) return Status::Corruption("the database lost the tree of " + origin_);
  // Binary results: size as text (cast), checkpoint as raw bytes.
  int64_t n = 0;
  LATCH_RETURN_IF_ERROR(r->Int(0, 0, &n));
  *size = static_cast<uint64_t>(n);
  *checkpoint_note = r->value(0, 1);
  return Status::Ok();
}

Status PostgresLog::TryLockSequencer(int lease_ms, bool* held) {
  std::optional<PgResult> r;
  // Key: the origin's hash, in its own namespace of advisory locks (the
  // two-int form), so it cannot collide with the schema's lock.
  LATCH_RETURN_IF_ERROR(conn_->Exec("taking the sequencer's lock",
                                    "SELECT pg_try_advisory_lock(1281450851, hashtext($1))",
                                    {PgParam::Text(origin_)}, &r));
  *held = r->rows() == 1 && r->value(0, 0) == "t";
  if (!*held) return Status::Ok();
  return conn_->Exec("setting the sequencer's lease",
                     "SELECT set_config('idle_session_timeout', $1, false)",
                     {PgParam::Text(std::to_string(lease_ms))});
}

Status PostgresLog::SetApplicationName(const std::string& name) {
  return conn_->Exec("naming the session", "SELECT set_config('application_name', $1, false)",
                     {PgParam::Text(name)});
}

Status PostgresLog::ReadSequencerName(std::string* name) {
  // The lock of TryLockSequencer: an advisory lock on two int4 keys is
  // (classid, objid) with objsubid 2.
  std::optional<PgResult> r;
  LATCH_RETURN_IF_ERROR(
      conn_->Exec("reading who holds the sequencer's lock",
                  "SELECT coalesce(a.application_name, '') FROM pg_locks l JOIN pg_stat_activity a "
                  "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 "
                  "AND l.classid = 1281450851::oid AND l.objid = hashtext($1)::oid",
                  {PgParam::Text(origin_)}, &r));
  *name = r->rows() >= 1 ? r->value(0, 0) : "";
  return Status::Ok();
}

Status PostgresLog::Ping() { return conn_->Exec("pinging the database", "SELECT 1"); }

Status PostgresLog::Append(uint64_t expected_size, const std::vector<TileRow>& tiles,
                           uint64_t new_size, const std::string& checkpoint_note,
                           AppendResult* result) {
  // Each tile is stored as the pieces the tree grew it by: this move writes,
  // per tile, the entries past what the tree of `expected_size` holds (none
  // if it holds them all), so no byte once written is written again.
  std::vector<PgStatement> statements;
  statements.push_back({"beginning a transaction", "BEGIN", {}});
  // In a pipeline nothing can look at one statement's result before the
  // next is sent, so the compare-and-set checks itself: it divides by the
  // number of rows it moved, and a refusal (no row) is a division by zero,
  // which aborts the pipeline and with it the transaction.
  statements.push_back(
      {"moving the tree",
       "WITH moved AS (UPDATE latch_tree SET size = $1, checkpoint = $2 "
       "WHERE origin = $3 AND size = $4 RETURNING 1) "
       "SELECT 1 / (SELECT count(*)::int FROM moved)",
       {PgParam::Int(static_cast<int64_t>(new_size)), PgParam::Bytes(checkpoint_note),
        PgParam::Text(origin_), PgParam::Int(static_cast<int64_t>(expected_size))}});
  // The pieces in multi-row INSERTs of up to kPiecesPerInsert rows: one
  // statement to parse and plan per move (a commit grows a few tiles), and
  // within PostgreSQL's 65,535 parameters per statement however many a
  // migration copies. A plain INSERT: a piece already stored at its start
  // is a unique violation, never an overwrite.
  constexpr size_t kPiecesPerInsert = 256;
  const size_t first_insert = statements.size();
  uint64_t written = 0, present = 0;
  for (const TileRow& tile : tiles) {
    if (tile.id.width < 1 || TileWidthAt(new_size, tile.id) != tile.id.width) {
      return Status::InvalidArgument(tile.id.Path() + " is not a tile of the tree of size " +
                                     std::to_string(new_size));
    }
    const uint32_t start = TileWidthAt(expected_size, tile.id);
    if (start >= tile.id.width) {
      ++present;  // the tree holds all of it already
      continue;
    }
    std::string piece = tile.data;
    LATCH_RETURN_IF_ERROR(DropFirst(tile.id, start, &piece));
    if (written % kPiecesPerInsert == 0) {
      statements.push_back({"writing the tiles' new pieces",
                            "INSERT INTO latch_tiles (level, idx, start, width, data) VALUES ",
                            {}});
    }
    PgStatement& insert = statements.back();
    const size_t n = insert.params.size();
    if (n > 0) insert.sql += ", ";
    insert.sql += "($" + std::to_string(n + 1) + ", $" + std::to_string(n + 2) + ", $" +
                  std::to_string(n + 3) + ", $" + std::to_string(n + 4) + ", $" +
                  std::to_string(n + 5) + ")";
    insert.params.push_back(PgParam::Int(tile.id.level));
    insert.params.push_back(PgParam::Int(static_cast<int64_t>(tile.id.index)));
    insert.params.push_back(PgParam::Int(start));
    insert.params.push_back(PgParam::Int(tile.id.width));
    insert.params.push_back(PgParam::Bytes(std::move(piece)));
    ++written;
  }
  const size_t end_insert = statements.size();
  statements.push_back({"committing", "COMMIT", {}});
  size_t failed = 0;
  std::string sqlstate;
  Status s = conn_->ExecPipeline(statements, &failed, &sqlstate);
  if (s.ok()) {
    result->rows_written += written;
    result->rows_present += present;
    return s;
  }
  constexpr char kDivisionByZero[] = "22012";
  constexpr char kUniqueViolation[] = "23505";
  if (failed == 1 && sqlstate == kDivisionByZero) {
    result->moved_elsewhere = true;
    return Status::FailedPrecondition("the tree of " + origin_ + " is no longer at size " +
                                      std::to_string(expected_size) +
                                      ": another writer moved it; nothing of this move is served");
  }
  if (failed >= first_insert && failed < end_insert && sqlstate == kUniqueViolation) {
    // The compare-and-set held, yet the database holds entries past the
    // tree it serves: something other than a sequencer wrote them.
    return Status::Corruption("the database holds entries past the tree it serves (" + s.message() +
                              "): the logs fork; nothing of this move is served");
  }
  return s;
}

Status PostgresLog::ReadCheckpoint(std::string* note) {
  uint64_t size = 0;
  LATCH_RETURN_IF_ERROR(ReadState(&size, note));
  if (note->empty()) return Status::NotFound(origin_ + " has no checkpoint yet");
  return Status::Ok();
}

Status PostgresLog::ReadTile(const tlog::TileId& tile, std::string* data) {
  uint64_t size = 0;
  std::string note;
  LATCH_RETURN_IF_ERROR(ReadState(&size, &note));
  if (!Serves(size, tile)) {
    return Status::NotFound(tile.Path() + " is beyond the tree of size " + std::to_string(size));
  }
  return ReadStoredTile(tile, data);
}

Status PostgresLog::ReadStoredTile(const tlog::TileId& tile, std::string* data) {
  std::optional<PgResult> r;
  LATCH_RETURN_IF_ERROR(
      conn_->Exec("reading " + tile.Path(),
                  "SELECT start::text, width::text, data FROM latch_tiles "
                  // By the column, not the text the list casts it to ("10" < "2").
                  "WHERE level = $1 AND idx = $2 AND start < $3 ORDER BY latch_tiles.start",
                  {PgParam::Int(tile.level), PgParam::Int(static_cast<int64_t>(tile.index)),
                   PgParam::Int(tile.width)},
                  &r, /*binary_results=*/true));
  // The pieces, each starting where the one before ended.
  data->clear();
  int64_t at = 0;
  for (int row = 0; row < r->rows(); ++row) {
    int64_t start = 0, width = 0;
    LATCH_RETURN_IF_ERROR(r->Int(row, 0, &start));
    LATCH_RETURN_IF_ERROR(r->Int(row, 1, &width));
    if (start != at || width <= start) {
      return Status::Corruption(tile.Path() + ": stored pieces do not follow on at entry " +
                                std::to_string(at));
    }
    data->append(r->value(row, 2));
    at = width;
  }
  if (at < tile.width) {
    return Status::Corruption(tile.Path() + " is served but missing from the database");
  }
  // The last piece may reach past a narrower partial.
  return CutTileToWidth(tile, data);
}

Status MigrateLog(TileSource& source, const tlog::NoteVerifier& key, PostgresLog& log,
                  MigrateResult* result) {
  std::string note;
  LATCH_RETURN_IF_ERROR(source.ReadCheckpoint(&note).WithContext(source.Describe()));
  tlog::Checkpoint cp;
  LATCH_RETURN_IF_ERROR(tlog::OpenCheckpoint(note, key, &cp).WithContext(source.Describe()));
  if (cp.origin != log.origin()) {
    return Status::FailedPrecondition("the source is ledger '" + cp.origin +
                                      "', the database holds '" + log.origin() + "'");
  }
  uint64_t held_size = 0;
  std::string held_note;
  LATCH_RETURN_IF_ERROR(log.ReadState(&held_size, &held_note));
  if (held_size > cp.size) {
    return Status::FailedPrecondition("the database is ahead of the source (" +
                                      std::to_string(held_size) + " > " + std::to_string(cp.size) +
                                      " entries)");
  }
  if (!held_note.empty()) {
    // What the database serves must be a prefix of the source's tree.
    tlog::Checkpoint held;
    LATCH_RETURN_IF_ERROR(
        tlog::OpenCheckpoint(held_note, key, &held).WithContext("the database's checkpoint"));
    TileHashReader hashes(source, cp.size);
    tlog::TreeReader reader(hashes);
    tlog::Hash root{};
    LATCH_RETURN_IF_ERROR(reader.Root(held.size, &root));
    if (root != held.root) {
      return Status::VerifyFailed("the database's tree of " + std::to_string(held.size) +
                                  " entries is not a prefix of the source's: the logs fork");
    }
  }
  std::vector<TileRow> rows;
  for (const tlog::TileId& id : TilesOf(cp.size)) {
    TileRow row{id, {}};
    LATCH_RETURN_IF_ERROR(source.ReadTile(id, &row.data).WithContext(source.Describe()));
    rows.push_back(std::move(row));
  }
  AppendResult appended;
  LATCH_RETURN_IF_ERROR(log.Append(held_size, rows, cp.size, note, &appended));
  const uint64_t written = appended.rows_written;
  // Read back: every tile, byte for byte, and the checkpoint.
  std::string back;
  for (const TileRow& row : rows) {
    LATCH_RETURN_IF_ERROR(log.ReadStoredTile(row.id, &back));
    if (back != row.data) {
      return Status::Corruption(row.id.Path() + " reads back from the database changed");
    }
    ++result->tiles_checked;
  }
  LATCH_RETURN_IF_ERROR(log.ReadCheckpoint(&back));
  if (back != note)
    return Status::Corruption("the checkpoint reads back from the database changed");
  result->size = cp.size;
  result->tiles_written = written;
  result->tiles_present = rows.size() - written;
  return Status::Ok();
}

}  // namespace latch::ledger::postgres
