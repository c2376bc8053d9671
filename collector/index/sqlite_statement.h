// The events index's SQLite plumbing: opening a database, running SQL, a
// prepared statement with typed binds and columns, and the one rule for
// what a failure means (a damaged file is Corruption, which has the index
// rebuilt; anything else is an I/O error, retried).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>

#include "lib/status/status.h"

namespace latch::index {

Status SqlFailure(sqlite3* db, std::string message);
// "events index: <what>: <SQLite's message>".
Status SqlError(sqlite3* db, const std::string& what);
Status Exec(sqlite3* db, const char* sql);
// Opens (read-only, or read-write creating it) without SQLite's own mutex:
// each connection is used by one thread.
Status OpenDb(const std::string& path, bool read_only, sqlite3** db);

// A prepared statement, reset for reuse after each step loop.
class Stmt {
 public:
  Stmt() = default;
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Status Prepare(sqlite3* db, const char* sql) {
    db_ = db;
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) {
      return SqlError(db, std::string("preparing ") + sql);
    }
    return Status::Ok();
  }
  Stmt& Int(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& IntNamed(const char* name, int64_t v) {
    sqlite3_bind_int64(s_, sqlite3_bind_parameter_index(s_, name), v);
    return *this;
  }
  Stmt& Null(int i) {
    sqlite3_bind_null(s_, i);
    return *this;
  }
  Stmt& Text(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& Blob(int i, const void* p, size_t n) {
    sqlite3_bind_blob(s_, i, p, static_cast<int>(n), SQLITE_TRANSIENT);
    return *this;
  }
  // Runs a statement that returns no rows.
  Status Run() {
    int rc = sqlite3_step(s_);
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
    if (rc != SQLITE_DONE) return SqlError(db_, "writing");
    return Status::Ok();
  }
  // Steps once: true while there is a row.
  bool Row(Status* status) {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) *status = SqlError(db_, "reading");
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
    return false;
  }
  int64_t ColInt(int i) const { return sqlite3_column_int64(s_, i); }
  std::string ColText(int i) const {
    const unsigned char* t = sqlite3_column_text(s_, i);
    return t ? std::string(reinterpret_cast<const char*>(t),
                           static_cast<size_t>(sqlite3_column_bytes(s_, i)))
             : std::string();
  }
  std::string ColBlob(int i) const {
    const void* b = sqlite3_column_blob(s_, i);
    return b ? std::string(static_cast<const char*>(b),
                           static_cast<size_t>(sqlite3_column_bytes(s_, i)))
             : std::string();
  }
  bool ColNull(int i) const { return sqlite3_column_type(s_, i) == SQLITE_NULL; }

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* s_ = nullptr;
};

}  // namespace latch::index
