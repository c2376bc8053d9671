// EventIndex::Query: which ledger entries match a filter, newest first,
// read on a connection of the caller's own.
#include <sqlite3.h>

#include <string>
#include <vector>

#include "collector/index/event_index.h"
#include "collector/index/index_schema.h"
#include "collector/index/sqlite_statement.h"

namespace latch::index {

Status EventIndex::Query(const std::string& path, const EventFilter& f, uint64_t below,
                         const EventCursor& cursor, int limit, std::vector<EventHit>* out,
                         bool by_index) {
  out->clear();
  sqlite3* db = nullptr;
  LATCH_RETURN_IF_ERROR(OpenDb(path, true, &db));
  struct Closer {
    sqlite3* db;
    ~Closer() { sqlite3_close(db); }
  } closer{db};
  Status status;
  // Names to ids; a name the index has never seen matches nothing.
  auto lookup = [&](int kind, const std::string& name, int64_t* id) -> bool {
    Stmt q;
    if (!q.Prepare(db, "SELECT id FROM names WHERE kind = ?1 AND name = ?2").ok()) return false;
    q.Int(1, kind).Text(2, name);
    bool found = q.Row(&status);
    if (found) *id = q.ColInt(0);
    while (found && q.Row(&status)) {
    }
    return found;
  };
  std::string sql =
      "SELECT e.idx, e.time_ns, i.name, r.name FROM entries e "
      "LEFT JOIN names i ON i.id = e.identity LEFT JOIN names r ON r.id = e.resource ";
  if (f.grant_id) sql += "JOIN entry_grants g ON g.idx = e.idx AND g.grant_id = :grant ";
  sql += "WHERE e.idx < :below AND e.time_ns >= :since AND e.time_ns < :until ";
  struct Bound {
    const char* column;
    int kind;
    const std::optional<std::string>* value;
  } named[] = {{"host", kHost, &f.host},
               {"identity", kIdentity, &f.identity},
               {"resource", kResource, &f.resource},
               {"verdict", kVerdict, &f.verdict},
               {"kind", kKind, &f.kind}};
  std::vector<std::pair<std::string, int64_t>> binds;
  for (const Bound& b : named) {
    if (!*b.value) continue;
    int64_t id = 0;
    if (!lookup(b.kind, **b.value, &id)) return status;  // unknown name: no results
    sql += std::string("AND e.") + b.column + " = :" + b.column + " ";
    binds.emplace_back(std::string(":") + b.column, id);
  }
  if (f.uid) sql += "AND e.uid = :uid ";
  if (f.min_index > 0) sql += "AND e.idx >= :min_index ";
  if (cursor.set && !by_index) sql += "AND (e.time_ns, e.idx) > (:ctime, :cidx) ";
  sql += by_index ? "ORDER BY e.idx LIMIT :limit" : "ORDER BY e.time_ns, e.idx LIMIT :limit";
  Stmt q;
  LATCH_RETURN_IF_ERROR(q.Prepare(db, sql.c_str()));
  binds.emplace_back(":below", static_cast<int64_t>(std::min<uint64_t>(below, INT64_MAX)));
  binds.emplace_back(":since", f.since_ns);
  binds.emplace_back(":until", f.until_ns);
  binds.emplace_back(":limit", limit);
  if (f.grant_id) binds.emplace_back(":grant", static_cast<int64_t>(*f.grant_id));
  if (f.uid) binds.emplace_back(":uid", *f.uid);
  if (f.min_index > 0) {
    binds.emplace_back(":min_index",
                       static_cast<int64_t>(std::min<uint64_t>(f.min_index, INT64_MAX)));
  }
  if (cursor.set && !by_index) {
    binds.emplace_back(":ctime", cursor.time_ns);
    binds.emplace_back(":cidx", static_cast<int64_t>(cursor.index));
  }
  for (const auto& [name, v] : binds) q.IntNamed(name.c_str(), v);
  while (q.Row(&status)) {
    out->push_back({static_cast<uint64_t>(q.ColInt(0)), q.ColInt(1), q.ColText(2), q.ColText(3)});
  }
  return status;
}

}  // namespace latch::index
