// EventIndex: the SQLite index behind the events query. It is derived from
// the ledger and nothing else: entries are added in ledger order, and the
// attribution the records do not carry themselves (whose grant a decision
// was made under, which request a grant came from, a resource id's name) is
// learnt from earlier records as they are indexed. The index remembers how
// far it got and the tree root there, so it resumes after a restart and
// notices a ledger that is not the one it was built from.
//
// One writer (the follower thread, or `latch-ledger reindex`); queries open
// their own read-only connections (WAL lets them run beside the writer).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "collector/index/record_view.h"
#include "lib/status/status.h"
#include "lib/tlog/merkle_hash.h"

struct sqlite3;

namespace latch::index {

// What the query filters on; unset fields match everything.
struct EventFilter {
  std::optional<std::string> host;
  std::optional<std::string> identity;
  std::optional<std::string> resource;  // a name, or "#<id>" for an unnamed resource id
  std::optional<uint64_t> grant_id;
  std::optional<std::string> verdict;  // allow | deny | audit
  std::optional<std::string> kind;     // decision | loss | requestCreated | ...
  std::optional<uint32_t> uid;
  int64_t since_ns = 0;          // inclusive
  int64_t until_ns = INT64_MAX;  // exclusive
  uint64_t min_index = 0;        // ledger index, inclusive
};

// Position after the last result of a page: results are ordered by (time, index).
struct EventCursor {
  int64_t time_ns = INT64_MIN;
  uint64_t index = 0;
  bool set = false;
};

struct EventHit {
  uint64_t index = 0;
  int64_t time_ns = 0;
  std::string identity;  // as attributed at indexing time ("" if none)
  std::string resource;
};

class EventIndex {
 public:
  // Opens (creating if absent) the index at `path` for the ledger named
  // `origin`. If the file belongs to another ledger, records a root that
  // `root_at(size)` does not confirm, cannot be read, or was left open by a
  // writer when the machine went down, it is emptied and *rebuilt is set.
  //
  // The index is derived from the ledger, so its writes are not synced (they
  // would hold up the ledger's own syncs on a shared disk): a process crash
  // loses nothing SQLite wrote, and after an operating-system crash or power
  // loss, which unsynced writes may not survive intact, the index is rebuilt.
  // What tells the two apart: the kernel's boot id, stored (synced) while a
  // writer has the index open and cleared when it closes it.
  using RootAt = std::function<Status(uint64_t size, tlog::Hash* root)>;
  static Status Open(const std::string& path, const std::string& origin, const RootAt& root_at,
                     std::unique_ptr<EventIndex>* out, bool* rebuilt = nullptr);
  ~EventIndex();
  EventIndex(const EventIndex&) = delete;
  EventIndex& operator=(const EventIndex&) = delete;

  // Removes the index's files (the database, its WAL and shared memory).
  static Status Remove(const std::string& path);
  // Reads the whole file and checks its structure: Corruption if it is
  // damaged (EventIndex::Open notices only damage in what it reads).
  Status CheckIntegrity();

  // Entries indexed: the next one to add is at this ledger index.
  uint64_t size() const { return size_; }

  // Adds entries [size(), size() + views.size()) in one transaction, and
  // records `root` as the tree's root at the new size. The entries come
  // decoded (ViewForIndex), so decoding can run on another thread than the
  // inserts.
  Status AddViews(const std::vector<RecordView>& views, const tlog::Hash& root);
  static RecordView ViewForIndex(std::string_view entry);
  // Bulk load: on, the entries' secondary indexes are dropped so that rows go
  // in several times faster; off, they are built again (a sort each). Queries
  // during a bulk load still answer, by scanning. Not for small additions:
  // rebuilding costs in proportion to everything indexed.
  Status SetBulkLoad(bool on);
  bool bulk_load() const { return bulk_load_; }

  // Up to `limit` hits below ledger index `below`, after `cursor`, ordered by
  // (time, index); or, `by_index` (the live tail), by ledger index alone.
  static Status Query(const std::string& path, const EventFilter& filter, uint64_t below,
                      const EventCursor& cursor, int limit, std::vector<EventHit>* out,
                      bool by_index = false);

 private:
  EventIndex() = default;
  // One attempt; *reset: the file must be emptied and opened again.
  static Status OpenOnce(const std::string& path, const std::string& origin, const RootAt& root_at,
                         std::unique_ptr<EventIndex>* out, bool* reset);
  Status Prepare();
  Status LoadState(const std::string& origin, const RootAt& root_at, bool* rebuilt);
  // Whether a writer had the index open when the machine last went down;
  // else marks it open by this boot, durably, and stops syncing.
  Status ClaimWriter(bool* left_open_by_a_crash);
  Status AddOne(uint64_t idx, const RecordView& v);
  Status NameId(int kind, const std::string& name, int64_t* id);

  struct Grant {
    std::string identity;
    uint32_t resource_id = 0;
    uint64_t issued_idx = 0;
  };
  struct Request {
    std::string identity;
    std::string resource;
    std::vector<uint64_t> entries;  // its records, linked to its grant once approved
  };

  sqlite3* db_ = nullptr;
  std::string origin_;
  uint64_t size_ = 0;
  struct Statements;
  std::unique_ptr<Statements> st_;
  // Interned names by kind (index = the kind), name -> id; ids count from 1.
  std::array<std::unordered_map<std::string, int64_t>, 6> names_;
  int64_t name_count_ = 0;
  std::map<uint64_t, Grant> grants_;
  std::map<uint64_t, Request> requests_;
  std::map<uint32_t, std::string> resource_names_;
  bool bulk_load_ = false;
  bool claimed_ = false;  // this writer's boot id is stored: clear it on close
};

}  // namespace latch::index
