#include "collector/index/event_index.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include "collector/index/index_schema.h"
#include "collector/index/sqlite_statement.h"

namespace latch::index {

struct EventIndex::Statements {
  Stmt insert_entry, insert_ref, insert_name, insert_grant, update_grant_identity,
      update_entry_subject, insert_request, insert_request_entry, delete_request,
      delete_request_entries, insert_resource_name, save_state;
};

EventIndex::~EventIndex() {
  st_.reset();
  if (db_ != nullptr && claimed_) {
    // A clean close: everything written so far reaches the disk (the synced
    // commit syncs the whole WAL before it), and no rebuild is needed later.
    (void)Exec(db_, "PRAGMA synchronous=FULL; UPDATE writer SET boot_id = '' WHERE id = 1;");
  }
  if (db_ != nullptr) sqlite3_close(db_);
}

Status EventIndex::ClaimWriter(bool* left_open_by_a_crash) {
  *left_open_by_a_crash = false;
  std::string boot;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot;
  if (boot.empty()) return Status::Ok();  // no way to tell: stay with synced writes
  Status status;
  Stmt q;
  LATCH_RETURN_IF_ERROR(q.Prepare(db_, "SELECT boot_id FROM writer WHERE id = 1"));
  std::string stored;
  while (q.Row(&status)) stored = q.ColText(0);
  LATCH_RETURN_IF_ERROR(status);
  if (!stored.empty() && stored != boot) {
    *left_open_by_a_crash = true;
    return Status::Ok();
  }
  Stmt mark;
  LATCH_RETURN_IF_ERROR(
      mark.Prepare(db_, "INSERT OR REPLACE INTO writer(id, boot_id) VALUES (1, ?1)"));
  LATCH_RETURN_IF_ERROR(mark.Text(1, boot).Run());  // synced: synchronous is FULL until now
  LATCH_RETURN_IF_ERROR(Exec(db_, "PRAGMA synchronous=OFF;"));
  claimed_ = true;
  return Status::Ok();
}

Status EventIndex::Open(const std::string& path, const std::string& origin, const RootAt& root_at,
                        std::unique_ptr<EventIndex>* out, bool* rebuilt) {
  if (rebuilt != nullptr) *rebuilt = false;
  bool reset = false;
  Status s = OpenOnce(path, origin, root_at, out, &reset);
  if (s.ok() && !reset) return s;
  // Another ledger's index, one this ledger does not confirm, one a crash of
  // the machine may have damaged, or one that cannot be read: it is derived
  // from the ledger, so start over (a failure on the fresh file is returned).
  out->reset();
  LATCH_RETURN_IF_ERROR(Remove(path));
  reset = false;
  LATCH_RETURN_IF_ERROR(OpenOnce(path, origin, root_at, out, &reset));
  if (reset) return Status::Corruption("events index " + path + ": a fresh index is refused");
  if (rebuilt != nullptr) *rebuilt = true;
  return Status::Ok();
}

Status EventIndex::Remove(const std::string& path) {
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::error_code ec;
    std::filesystem::remove(path + suffix, ec);
    if (ec) return Status::IoError("removing " + path + suffix + ": " + ec.message());
  }
  return Status::Ok();
}

Status EventIndex::CheckIntegrity() {
  // quick_check reads every page and checks the b-trees' structure (not that
  // each index matches its table, which integrity_check adds at several
  // times the cost): what random bytes or a torn write break.
  Stmt q;
  LATCH_RETURN_IF_ERROR(q.Prepare(db_, "PRAGMA quick_check"));
  Status status;
  std::string first;
  int problems = 0;
  while (q.Row(&status)) {
    std::string line = q.ColText(0);
    if (line == "ok") continue;
    if (problems++ == 0) first = line;
  }
  LATCH_RETURN_IF_ERROR(status);
  if (problems > 0) {
    return Status::Corruption("events index: " + std::to_string(problems) +
                              " problem(s), the first: " + first);
  }
  return Status::Ok();
}

Status EventIndex::OpenOnce(const std::string& path, const std::string& origin,
                            const RootAt& root_at, std::unique_ptr<EventIndex>* out, bool* reset) {
  *reset = false;
  std::unique_ptr<EventIndex> x(new EventIndex());
  x->origin_ = origin;
  LATCH_RETURN_IF_ERROR(OpenDb(path, false, &x->db_));
  // Until ClaimWriter, every commit is synced (FULL). The WAL is copied back
  // into the database once it passes 1,024 pages (16 MiB) and cut back to
  // 16 MiB after that, so on a disk it shares with the ledger it never holds
  // more than that plus one transaction (it held up to 256 MiB: a 64 MB disk
  // filled with index before the ledger).
  LATCH_RETURN_IF_ERROR(
      Exec(x->db_,
           "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; "
           "PRAGMA cache_size=-65536; PRAGMA wal_autocheckpoint=1024; "
           "PRAGMA journal_size_limit=16777216;"));
  LATCH_RETURN_IF_ERROR(Exec(x->db_, kSchema));
  LATCH_RETURN_IF_ERROR(Exec(x->db_, kEntryIndexes));
  LATCH_RETURN_IF_ERROR(x->Prepare());
  LATCH_RETURN_IF_ERROR(x->ClaimWriter(reset));
  if (*reset) return Status::Ok();
  LATCH_RETURN_IF_ERROR(x->LoadState(origin, root_at, reset));
  if (*reset) return Status::Ok();
  *out = std::move(x);
  return Status::Ok();
}

Status EventIndex::Prepare() {
  st_ = std::make_unique<Statements>();
  LATCH_RETURN_IF_ERROR(st_->insert_entry.Prepare(
      db_,
      "INSERT INTO entries(idx, time_ns, kind, host, identity, uid, resource, verdict) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"));
  LATCH_RETURN_IF_ERROR(st_->insert_ref.Prepare(
      db_, "INSERT OR IGNORE INTO entry_grants(grant_id, idx) VALUES (?1, ?2)"));
  LATCH_RETURN_IF_ERROR(
      st_->insert_name.Prepare(db_, "INSERT INTO names(id, kind, name) VALUES (?1, ?2, ?3)"));
  LATCH_RETURN_IF_ERROR(st_->insert_grant.Prepare(
      db_,
      "INSERT OR REPLACE INTO grants(grant_id, identity, resource_id, issued_idx) "
      "VALUES (?1, ?2, ?3, ?4)"));
  LATCH_RETURN_IF_ERROR(st_->update_entry_subject.Prepare(
      db_, "UPDATE entries SET identity = ?2, resource = ?3 WHERE idx = ?1"));
  LATCH_RETURN_IF_ERROR(st_->insert_request.Prepare(
      db_, "INSERT OR REPLACE INTO requests(request_id, identity, resource) VALUES (?1, ?2, ?3)"));
  LATCH_RETURN_IF_ERROR(st_->insert_request_entry.Prepare(
      db_, "INSERT OR IGNORE INTO request_entries(request_id, idx) VALUES (?1, ?2)"));
  LATCH_RETURN_IF_ERROR(
      st_->delete_request.Prepare(db_, "DELETE FROM requests WHERE request_id = ?1"));
  LATCH_RETURN_IF_ERROR(st_->delete_request_entries.Prepare(
      db_, "DELETE FROM request_entries WHERE request_id = ?1"));
  LATCH_RETURN_IF_ERROR(st_->insert_resource_name.Prepare(
      db_, "INSERT OR REPLACE INTO resource_names(resource_id, name) VALUES (?1, ?2)"));
  return st_->save_state.Prepare(
      db_, "INSERT OR REPLACE INTO state(id, origin, size, root) VALUES (1, ?1, ?2, ?3)");
}

Status EventIndex::LoadState(const std::string& origin, const RootAt& root_at, bool* reset) {
  Status status;
  Stmt q;
  LATCH_RETURN_IF_ERROR(q.Prepare(db_, "SELECT origin, size, root FROM state WHERE id = 1"));
  if (q.Row(&status)) {
    std::string stored_origin = q.ColText(0);
    uint64_t size = static_cast<uint64_t>(q.ColInt(1));
    std::string root = q.ColBlob(2);
    while (q.Row(&status)) {
    }
    if (stored_origin != origin || root.size() != 32) {
      *reset = true;
      return Status::Ok();
    }
    tlog::Hash ledger_root{};
    if (!root_at(size, &ledger_root).ok() ||
        std::memcmp(ledger_root.data(), root.data(), root.size()) != 0) {
      *reset = true;
      return Status::Ok();
    }
    size_ = size;
  }
  LATCH_RETURN_IF_ERROR(status);
  Stmt names;
  LATCH_RETURN_IF_ERROR(names.Prepare(db_, "SELECT id, kind, name FROM names"));
  while (names.Row(&status)) {
    int kind = static_cast<int>(names.ColInt(1));
    if (kind < 0 || kind >= static_cast<int>(names_.size())) {
      return Status::Corruption("events index: a name of unknown kind");
    }
    names_[static_cast<size_t>(kind)][names.ColText(2)] = names.ColInt(0);
    name_count_ = std::max(name_count_, names.ColInt(0));
  }
  Stmt grants;
  LATCH_RETURN_IF_ERROR(
      grants.Prepare(db_, "SELECT grant_id, identity, resource_id, issued_idx FROM grants"));
  while (grants.Row(&status)) {
    grants_[static_cast<uint64_t>(grants.ColInt(0))] = {grants.ColText(1),
                                                        static_cast<uint32_t>(grants.ColInt(2)),
                                                        static_cast<uint64_t>(grants.ColInt(3))};
  }
  Stmt requests;
  LATCH_RETURN_IF_ERROR(
      requests.Prepare(db_, "SELECT request_id, identity, resource FROM requests"));
  while (requests.Row(&status)) {
    requests_[static_cast<uint64_t>(requests.ColInt(0))] = {
        requests.ColText(1), requests.ColText(2), {}};
  }
  Stmt request_entries;
  LATCH_RETURN_IF_ERROR(
      request_entries.Prepare(db_, "SELECT request_id, idx FROM request_entries ORDER BY idx"));
  while (request_entries.Row(&status)) {
    auto it = requests_.find(static_cast<uint64_t>(request_entries.ColInt(0)));
    if (it != requests_.end()) it->second.entries.push_back(request_entries.ColInt(1));
  }
  Stmt resources;
  LATCH_RETURN_IF_ERROR(resources.Prepare(db_, "SELECT resource_id, name FROM resource_names"));
  while (resources.Row(&status)) {
    resource_names_[static_cast<uint32_t>(resources.ColInt(0))] = resources.ColText(1);
  }
  return status;
}

Status EventIndex::NameId(int kind, const std::string& name, int64_t* id) {
  auto& of_kind = names_[static_cast<size_t>(kind)];
  auto it = of_kind.find(name);
  if (it != of_kind.end()) {
    *id = it->second;
    return Status::Ok();
  }
  int64_t next = name_count_ + 1;
  LATCH_RETURN_IF_ERROR(st_->insert_name.Int(1, next).Int(2, kind).Text(3, name).Run());
  of_kind[name] = next;
  name_count_ = next;
  *id = next;
  return Status::Ok();
}

RecordView EventIndex::ViewForIndex(std::string_view entry) {
  RecordView v;
  if (!ViewRecord(entry, &v, /*with_detail=*/false).ok()) {
    // An entry that does not decode is indexed by position only, so the
    // index never stalls on it; the ledger's verify names it.
    v = RecordView();
    v.kind = "undecodable";
  }
  return v;
}

Status EventIndex::AddViews(const std::vector<RecordView>& views, const tlog::Hash& root) {
  LATCH_RETURN_IF_ERROR(Exec(db_, "BEGIN"));
  // On failure, the transaction and the in-memory attribution go back to
  // where they were (the next Add starts from size()).
  auto grants = grants_;
  auto requests = requests_;
  auto resource_names = resource_names_;
  auto names = names_;
  int64_t name_count = name_count_;
  Status status;
  uint64_t idx = size_;
  for (const RecordView& v : views) {
    status = AddOne(idx, v);
    if (!status.ok()) break;
    ++idx;
  }
  if (status.ok()) {
    status = st_->save_state.Text(1, origin_)
                 .Int(2, static_cast<int64_t>(idx))
                 .Blob(3, root.data(), root.size())
                 .Run();
  }
  if (status.ok()) status = Exec(db_, "COMMIT");
  if (!status.ok()) {
    (void)Exec(db_, "ROLLBACK");
    grants_ = std::move(grants);
    requests_ = std::move(requests);
    resource_names_ = std::move(resource_names);
    names_ = std::move(names);
    name_count_ = name_count;
    return status;
  }
  size_ = idx;
  return Status::Ok();
}

Status EventIndex::AddOne(uint64_t idx, const RecordView& v) {
  // Who the record is about, and which resource, from what earlier records taught.
  std::string subject;
  std::string resource = v.resource;
  uint64_t grant_id = v.grant_ids.empty() ? 0 : v.grant_ids.front();
  auto resource_name = [&](uint32_t id) {
    auto it = resource_names_.find(id);
    return it != resource_names_.end() ? it->second : "#" + std::to_string(id);
  };
  Request* request = nullptr;
  if (v.request_id != 0) {
    auto it = requests_.find(v.request_id);
    if (it != requests_.end()) request = &it->second;
  }
  if (v.kind == "decision") {
    auto g = grant_id != 0 ? grants_.find(grant_id) : grants_.end();
    // The grant's holder; without one, whom the agent found holding the uid
    // or cgroup (a denial, issue 16).
    subject = g != grants_.end() ? g->second.identity : v.identity;
    resource = resource_name(v.resource_id);
  } else if (v.activity) {
    // Done under a grant: its holder, on its resource.
    auto g = grant_id != 0 ? grants_.find(grant_id) : grants_.end();
    if (g != grants_.end()) {
      subject = g->second.identity;
      resource = resource_name(g->second.resource_id);
    }
  } else if (v.kind == "requestCreated") {
    subject = v.identity;
    requests_[v.request_id] = {v.identity, v.resource, {}};
    request = &requests_[v.request_id];
    LATCH_RETURN_IF_ERROR(st_->insert_request.Int(1, static_cast<int64_t>(v.request_id))
                              .Text(2, v.identity)
                              .Text(3, v.resource)
                              .Run());
  } else if (v.kind == "requestReviewed" || v.kind == "requestDecided") {
    if (request != nullptr) {
      subject = request->identity;
      resource = request->resource;
    }
  } else if (v.kind == "grantIssued") {
    // Its holder is learnt from the requestDecided record that follows it;
    // a grant issued by an operator keeps the operator as its subject.
    subject = v.identity;
    resource = resource_name(v.resource_id);
    grants_[grant_id] = {subject, v.resource_id, idx};
    LATCH_RETURN_IF_ERROR(st_->insert_grant.Int(1, static_cast<int64_t>(grant_id))
                              .Text(2, subject)
                              .Int(3, v.resource_id)
                              .Int(4, static_cast<int64_t>(idx))
                              .Run());
  } else if (v.kind == "refusal") {
    subject = v.identity;  // set for a refusal of one identity (a 403)
  } else if (v.kind == "sessionStarted" || v.kind == "sessionEnded") {
    subject = v.identity;  // one's own console sign-ins and sign-outs
  } else if (v.kind == "grantRevoked" || v.kind == "grantExpired") {
    auto g = grants_.find(grant_id);
    if (g != grants_.end()) {
      subject = g->second.identity;
      resource = resource_name(g->second.resource_id);
    }
  }

  int64_t kind_id = 0, host_id = 0, identity_id = 0, resource_id = 0, verdict_id = 0;
  LATCH_RETURN_IF_ERROR(NameId(kKind, v.kind, &kind_id));
  LATCH_RETURN_IF_ERROR(NameId(kHost, v.host, &host_id));
  if (!subject.empty()) LATCH_RETURN_IF_ERROR(NameId(kIdentity, subject, &identity_id));
  if (!resource.empty()) LATCH_RETURN_IF_ERROR(NameId(kResource, resource, &resource_id));
  if (!v.verdict.empty()) LATCH_RETURN_IF_ERROR(NameId(kVerdict, v.verdict, &verdict_id));
  Stmt& ins = st_->insert_entry;
  ins.Int(1, static_cast<int64_t>(idx)).Int(2, v.time_ns).Int(3, kind_id).Int(4, host_id);
  identity_id ? ins.Int(5, identity_id) : ins.Null(5);
  v.has_uid ? ins.Int(6, v.uid) : ins.Null(6);
  resource_id ? ins.Int(7, resource_id) : ins.Null(7);
  verdict_id ? ins.Int(8, verdict_id) : ins.Null(8);
  LATCH_RETURN_IF_ERROR(ins.Run());
  for (uint64_t g : v.grant_ids) {
    LATCH_RETURN_IF_ERROR(
        st_->insert_ref.Int(1, static_cast<int64_t>(g)).Int(2, static_cast<int64_t>(idx)).Run());
  }

  for (const auto& [id, name] : v.resource_names) {  // a policy names its resources
    resource_names_[id] = name;
    LATCH_RETURN_IF_ERROR(st_->insert_resource_name.Int(1, id).Text(2, name).Run());
  }
  if (request != nullptr) {
    request->entries.push_back(idx);
    LATCH_RETURN_IF_ERROR(st_->insert_request_entry.Int(1, static_cast<int64_t>(v.request_id))
                              .Int(2, static_cast<int64_t>(idx))
                              .Run());
  }
  if (v.kind == "requestDecided" && request != nullptr) {
    auto g = grant_id != 0 ? grants_.find(grant_id) : grants_.end();
    if (v.approved && g != grants_.end()) {
      // The request's whole story belongs to its grant; the grant to its requester.
      g->second.identity = request->identity;
      resource_names_[g->second.resource_id] = request->resource;
      LATCH_RETURN_IF_ERROR(
          st_->insert_resource_name.Int(1, g->second.resource_id).Text(2, request->resource).Run());
      LATCH_RETURN_IF_ERROR(st_->insert_grant.Int(1, static_cast<int64_t>(grant_id))
                                .Text(2, request->identity)
                                .Int(3, g->second.resource_id)
                                .Int(4, static_cast<int64_t>(g->second.issued_idx))
                                .Run());
      int64_t holder = 0, name = 0;
      LATCH_RETURN_IF_ERROR(NameId(kIdentity, request->identity, &holder));
      LATCH_RETURN_IF_ERROR(NameId(kResource, request->resource, &name));
      LATCH_RETURN_IF_ERROR(
          st_->update_entry_subject.Int(1, static_cast<int64_t>(g->second.issued_idx))
              .Int(2, holder)
              .Int(3, name)
              .Run());
      for (uint64_t e : request->entries) {
        LATCH_RETURN_IF_ERROR(st_->insert_ref.Int(1, static_cast<int64_t>(grant_id))
                                  .Int(2, static_cast<int64_t>(e))
                                  .Run());
      }
    }
    LATCH_RETURN_IF_ERROR(st_->delete_request.Int(1, static_cast<int64_t>(v.request_id)).Run());
    LATCH_RETURN_IF_ERROR(
        st_->delete_request_entries.Int(1, static_cast<int64_t>(v.request_id)).Run());
    requests_.erase(v.request_id);
  }
  return Status::Ok();
}

Status EventIndex::SetBulkLoad(bool on) {
  if (on == bulk_load_) return Status::Ok();
  LATCH_RETURN_IF_ERROR(Exec(db_, on ? kDropEntryIndexes : kEntryIndexes));
  bulk_load_ = on;
  return Status::Ok();
}

}  // namespace latch::index
