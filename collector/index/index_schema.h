// The events index's tables (SQLite): the schema, the entries' secondary
// indexes (dropped for a bulk load, built again at its end), and the kinds
// of interned names.
#pragma once

namespace latch::index {

// Interned names, by what they name.
enum NameKind : int { kHost = 1, kIdentity = 2, kKind = 3, kResource = 4, kVerdict = 5 };

inline constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS state(
  id INTEGER PRIMARY KEY CHECK (id = 1),
  origin TEXT NOT NULL, size INTEGER NOT NULL, root BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS writer(
  id INTEGER PRIMARY KEY CHECK (id = 1), boot_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS names(
  id INTEGER PRIMARY KEY, kind INTEGER NOT NULL, name TEXT NOT NULL, UNIQUE(kind, name));
CREATE TABLE IF NOT EXISTS entries(
  idx INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, kind INTEGER NOT NULL,
  host INTEGER NOT NULL, identity INTEGER, uid INTEGER, resource INTEGER, verdict INTEGER);
CREATE TABLE IF NOT EXISTS entry_grants(
  grant_id INTEGER NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (grant_id, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS grants(
  grant_id INTEGER PRIMARY KEY, identity TEXT NOT NULL, resource_id INTEGER NOT NULL,
  issued_idx INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS requests(
  request_id INTEGER PRIMARY KEY, identity TEXT NOT NULL, resource TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS request_entries(
  request_id INTEGER NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (request_id, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS resource_names(resource_id INTEGER PRIMARY KEY, name TEXT NOT NULL);
)sql";

// The entries' secondary indexes: what queries search by. Created with the
// schema; a bulk load drops them and builds them again at its end (one sort
// each, several times faster than keeping them row by row). Opening an index
// whose bulk load was cut short builds them again here.
inline constexpr const char* kEntryIndexes = R"sql(
CREATE INDEX IF NOT EXISTS entries_host_time ON entries(host, time_ns);
CREATE INDEX IF NOT EXISTS entries_time ON entries(time_ns);
CREATE INDEX IF NOT EXISTS entries_identity_time ON entries(identity, time_ns)
  WHERE identity IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_resource_time ON entries(resource, time_ns)
  WHERE resource IS NOT NULL;
)sql";
inline constexpr const char* kDropEntryIndexes = R"sql(
DROP INDEX IF EXISTS entries_host_time;
DROP INDEX IF EXISTS entries_time;
DROP INDEX IF EXISTS entries_identity_time;
DROP INDEX IF EXISTS entries_resource_time;
)sql";

}  // namespace latch::index
