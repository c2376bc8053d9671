#include "collector/index/sqlite_statement.h"

namespace latch::index {

Status SqlFailure(sqlite3* db, std::string message) {
  int code = db != nullptr ? (sqlite3_errcode(db) & 0xff) : SQLITE_ERROR;
  if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB)
    return Status::Corruption(std::move(message));
  return Status::IoError(std::move(message));
}

Status SqlError(sqlite3* db, const std::string& what) {
  return SqlFailure(db, "events index: " + what + ": " + (db ? sqlite3_errmsg(db) : "no database"));
}

Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return SqlFailure(db, std::string("events index: ") + msg);
  }
  return Status::Ok();
}

Status OpenDb(const std::string& path, bool read_only, sqlite3** db) {
  // Memory statistics take a global mutex on every allocation; nothing here
  // reads them. Must precede SQLite's initialization (a no-op after it).
  static const int memstatus_off = sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  (void)memstatus_off;
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(path.c_str(), db, flags | SQLITE_OPEN_NOMUTEX, nullptr) != SQLITE_OK) {
    Status s = SqlError(*db, "opening " + path);
    sqlite3_close(*db);
    *db = nullptr;
    return s;
  }
  sqlite3_busy_timeout(*db, 5000);
  return Status::Ok();
}

}  // namespace latch::index
