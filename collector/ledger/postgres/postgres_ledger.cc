#include "collector/ledger/postgres/postgres_ledger.h"

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstring>

#include "lib/logging/logger.h"
#include "lib/tlog/proof.h"

namespace latch::ledger::postgres {

using tlog::Hash;
using tlog::kTileWidth;

namespace {
// Full tiles never change: up to this many bytes of them stay in memory for
// proofs and reads (a hash tile is 8 KiB, a bundle of 256 entries ~64 KiB).
constexpr size_t kCacheBytes = size_t{64} << 20;
}  // namespace

Status PostgresLedger::Open(const std::string& conninfo, const std::string& setting,
                            tlog::NoteSigner signer, std::unique_ptr<PostgresLedger>* out) {
  std::unique_ptr<PostgresLedger> l(new PostgresLedger(conninfo, setting, std::move(signer)));
  std::unique_ptr<PostgresLog> log;
  LATCH_RETURN_IF_ERROR(PostgresLog::Open(conninfo, setting, l->verifier_.name(), &log));
  l->description_ = log->Describe();
  {
    MutexLock lock(l->commit_mu_);
    LATCH_RETURN_IF_ERROR(l->LoadTree(*log, /*load_edge=*/false));
  }
  {
    MutexLock lock(l->read_mu_);
    l->reader_ = std::move(log);
  }
  *out = std::move(l);
  return Status::Ok();
}

PostgresLedger::~PostgresLedger() {
  closing_ = true;
  if (pinger_.joinable()) pinger_.join();
}

void PostgresLedger::PingWhileSequencer() {
  const auto every = std::chrono::milliseconds(kLeaseMs / 5);
  auto next = std::chrono::steady_clock::now() + every;
  while (!closing_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (std::chrono::steady_clock::now() < next) continue;
    next = std::chrono::steady_clock::now() + every;
    MutexLock lock(commit_mu_);
    if (!sequencer_ || failed_ || !writer_) continue;
    Status s = writer_->Ping();
    if (!s.ok()) {
      // The session (and with it, maybe, the lock) is gone: commits stop
      // until Recover finds out whether this ledger is still the sequencer.
      failed_ = true;
      logging::Default().Warn("the sequencer's database session failed",
                              {{"storage", description_}, {"error", s.ToString()}});
    }
  }
}

Status PostgresLedger::OpenTreeState(uint64_t size, const std::string& note,
                                     tlog::Checkpoint* out) const {
  tlog::Checkpoint cp{verifier_.name(), 0, tlog::MerkleHasher::EmptyRoot(), {}};
  if (note.empty()) {
    // A tree made by storage init and never written: the empty tree, whose
    // checkpoint the first sequencer signs.
    if (size != 0) return Status::Corruption(setting_ + ": the database's tree has no checkpoint");
  } else {
    LATCH_RETURN_IF_ERROR(tlog::OpenCheckpoint(note, verifier_, &cp)
                              .WithContext(setting_ + ": the database's checkpoint"));
    if (cp.size != size) {
      return Status::Corruption(setting_ + ": the database's tree is at " + std::to_string(size) +
                                " but its checkpoint at " + std::to_string(cp.size));
    }
  }
  *out = std::move(cp);
  return Status::Ok();
}

Status PostgresLedger::Follow(bool* grew) {
  *grew = false;
  if (sequencer_) return Status::Ok();
  uint64_t size = 0;
  std::string note;
  {
    MutexLock lock(read_mu_);
    LATCH_RETURN_IF_ERROR(
        OnReader([&](PostgresLog& reader) { return reader.ReadState(&size, &note); }));
  }
  tlog::Checkpoint cp;
  LATCH_RETURN_IF_ERROR(OpenTreeState(size, note, &cp));
  const tlog::Checkpoint before = checkpoint();
  if (size == before.size) {
    if (size != 0 && cp.root != before.root) {
      return Status::Corruption(setting_ + ": the database's tree of " + std::to_string(size) +
                                " entries has another root than before (a fork)");
    }
    if (!note.empty() && checkpoint_note().empty()) {
      MutexLock state(state_mu_);
      checkpoint_note_ = std::move(note);  // the empty tree's first checkpoint
    }
    return Status::Ok();
  }
  if (size < before.size) {
    return Status::Corruption(setting_ + ": the database's tree went back from " +
                              std::to_string(before.size) + " to " + std::to_string(size) +
                              " entries (restored from a backup?)");
  }
  const std::string before_note = checkpoint_note();
  {
    MutexLock state(state_mu_);
    size_ = size;
    checkpoint_ = cp;
    checkpoint_note_ = std::move(note);
  }
  // The tree read must extend the one this view had: a consistency proof
  // from the stored hashes, checked against both signed roots.
  Status s = Status::Ok();
  if (before.size != 0) {
    std::vector<Hash> proof;
    s = ConsistencyProof(before.size, size, &proof);
    if (s.ok()) s = tlog::VerifyConsistency(before.size, size, proof, before.root, cp.root);
    if (!s.ok()) {
      s = Status::Corruption(setting_ + ": the database's tree of " + std::to_string(size) +
                             " entries does not extend the one of " + std::to_string(before.size) +
                             " this collector followed: " + s.ToString());
    }
  }
  if (!s.ok()) {
    MutexLock state(state_mu_);
    size_ = before.size;
    checkpoint_ = before;
    checkpoint_note_ = before_note;
    return s;
  }
  *grew = true;
  return Status::Ok();
}

Status PostgresLedger::LoadTree(PostgresLog& log, bool load_edge) {
  uint64_t size = 0;
  std::string note;
  LATCH_RETURN_IF_ERROR(log.ReadState(&size, &note));
  tlog::Checkpoint cp;
  LATCH_RETURN_IF_ERROR(OpenTreeState(size, note, &cp));
  {
    MutexLock state(state_mu_);
    size_ = size;
    checkpoint_ = cp;
    checkpoint_note_ = note;
  }
  if (!load_edge) return Status::Ok();
  RightEdge edge;
  LATCH_RETURN_IF_ERROR(RightEdge::Load(size, *this, &edge));
  if (edge.Root() != cp.root) {
    return Status::Corruption(setting_ +
                              ": the stored hashes do not lead to the checkpoint's root; run "
                              "latch-ledger verify --storage to find the damage");
  }
  std::string bundle;
  if (size % kTileWidth != 0) {
    LATCH_RETURN_IF_ERROR(ReadStored(
        {tlog::TileId::kEntries, size / kTileWidth, static_cast<uint32_t>(size % kTileWidth)},
        &bundle));
  }
  edge_ = std::move(edge);
  partial_bundle_ = std::move(bundle);
  return Status::Ok();
}

Status PostgresLedger::TryBecomeSequencer(bool* became) {
  MutexLock lock(commit_mu_);
  *became = sequencer_.load();
  if (*became) return Status::Ok();
  if (superseded_) return Status::FailedPrecondition(setting_ + ": superseded; start again");
  if (!writer_) {
    LATCH_RETURN_IF_ERROR(PostgresLog::Open(conninfo_, setting_, verifier_.name(), &writer_));
  }
  bool held = false;
  Status s = writer_->TryLockSequencer(kLeaseMs, &held);
  if (!s.ok()) {
    writer_.reset();  // a broken connection: a new one next time
    return s;
  }
  if (!held) return Status::Ok();
  LATCH_RETURN_IF_ERROR(LoadTree(*writer_, /*load_edge=*/true));
  if (checkpoint_note().empty()) {
    std::string note;
    LATCH_RETURN_IF_ERROR(signer_.Sign(checkpoint().Body(), &note));
    AppendResult first;
    LATCH_RETURN_IF_ERROR(writer_->Append(0, {}, 0, note, &first));
    MutexLock state(state_mu_);
    checkpoint_note_ = std::move(note);
  }
  NameSession();
  failed_ = false;
  sequencer_ = true;
  *became = true;
  if (!pinger_.joinable()) pinger_ = std::thread([this] { PingWhileSequencer(); });
  return Status::Ok();
}

void PostgresLedger::BuildRows(std::span<const EntryBatch* const> batches,
                               std::vector<TileRow>* rows, std::string* partial_bundle) {
  const uint64_t base = edge_.size();
  // Entry bundles: the partial one extended, and every one completed.
  uint64_t index = base;
  for (const EntryBatch* b : batches) {
    const auto bytes = b->bundle_bytes();
    uint64_t begin = 0;
    for (size_t i = 0; i < b->size(); ++i) {
      partial_bundle->append(reinterpret_cast<const char*>(bytes.data()) + begin,
                             b->end_offset(i) - begin);
      begin = b->end_offset(i);
      if (++index % kTileWidth == 0) {
        rows->push_back(
            {{tlog::TileId::kEntries, index / kTileWidth - 1, kTileWidth}, *partial_bundle});
        partial_bundle->clear();
      }
    }
  }
  if (index % kTileWidth != 0) {
    rows->push_back(
        {{tlog::TileId::kEntries, index / kTileWidth, static_cast<uint32_t>(index % kTileWidth)},
         *partial_bundle});
  }
  // Hash tiles: per level, the hashes its right tile held before, then the
  // new ones, cut into tiles from that tile on.
  std::vector<std::vector<Hash>> runs(static_cast<size_t>(edge_.levels()));
  for (int level = 0; level < edge_.levels(); ++level) {
    const uint64_t count = tlog::HashesAtLevel(base, level);
    auto& run = runs[static_cast<size_t>(level)];
    run.resize(count % kTileWidth);
    if (!run.empty()) {
      // The edge holds exactly these; it cannot fail.
      Status s = edge_.ReadHashes(level, count - run.size(), run.size(), run.data());
      assert(s.ok());
      (void)s;
    }
  }
  for (auto& level : completed_) level.clear();
  for (const EntryBatch* b : batches) {
    const auto leaves = b->leaf_hashes();
    if (runs.empty()) runs.emplace_back();
    runs[0].insert(runs[0].end(), leaves.begin(), leaves.end());
    edge_.Append(leaves, &completed_);
  }
  for (size_t level = 1; level < completed_.size(); ++level) {
    if (runs.size() <= level) runs.resize(level + 1);
    runs[level].insert(runs[level].end(), completed_[level].begin(), completed_[level].end());
  }
  for (size_t level = 0; level < runs.size(); ++level) {
    const uint64_t before = tlog::HashesAtLevel(base, static_cast<int>(level));
    const auto& run = runs[level];
    if (run.size() == before % kTileWidth) continue;  // nothing new at this level
    const uint64_t first_tile = before / kTileWidth;
    for (size_t at = 0; at < run.size(); at += kTileWidth) {
      const size_t width = std::min<size_t>(kTileWidth, run.size() - at);
      rows->push_back(
          {{static_cast<int>(level), first_tile + at / kTileWidth, static_cast<uint32_t>(width)},
           std::string(reinterpret_cast<const char*>(run.data() + at), width * sizeof(Hash))});
    }
  }
}

Status PostgresLedger::Commit(std::span<const EntryBatch* const> batches, uint64_t* first_index) {
  MutexLock lock(commit_mu_);
  if (superseded_) {
    return Status::FailedPrecondition(setting_ +
                                      ": another sequencer moved the ledger; this one steps down");
  }
  if (!sequencer_) return Status::FailedPrecondition(setting_ + ": not the sequencer");
  if (failed_) return Status::FailedPrecondition(setting_ + ": a commit failed; recovering");
  *first_index = edge_.size();
  uint64_t count = 0;
  for (const EntryBatch* b : batches) count += b->size();
  if (count == 0) return Status::Ok();

  const uint64_t base = edge_.size();
  std::vector<TileRow> rows;
  std::string partial = partial_bundle_;
  BuildRows(batches, &rows, &partial);
  tlog::Checkpoint cp{verifier_.name(), edge_.size(), edge_.Root(), {}};
  std::string note;
  Status s = signer_.Sign(cp.Body(), &note);
  AppendResult appended;
  if (s.ok()) s = writer_->Append(base, rows, cp.size, note, &appended);
  if (!s.ok()) {
    // The edge moved on in memory; Recover reloads it from the database.
    failed_ = true;
    if (appended.moved_elsewhere) Supersede(s.ToString());
    return s;
  }
  partial_bundle_ = std::move(partial);
  commits_++;
  rows_written_ += appended.rows_written;
  {
    // Stored now: the proofs for this commit's receipts read them next.
    MutexLock reads(read_mu_);
    for (const TileRow& row : rows) Remember(row.id, row.data);
  }
  MutexLock state(state_mu_);
  size_ = cp.size;
  checkpoint_ = std::move(cp);
  checkpoint_note_ = std::move(note);
  return Status::Ok();
}

void PostgresLedger::Supersede(const std::string& why) {
  if (superseded_.exchange(true)) return;
  sequencer_ = false;
  logging::Default().Alert("the ledger moved on without this collector; stepping down",
                           {{"storage", description_}, {"why", why}});
}

Status PostgresLedger::Recover() {
  MutexLock lock(commit_mu_);
  if (superseded_) {
    return Status::FailedPrecondition(setting_ +
                                      ": another sequencer moved the ledger; this one steps down");
  }
  if (!failed_) return Status::Ok();
  // A fresh connection: the old one may be broken, and with it the lock.
  std::unique_ptr<PostgresLog> log;
  LATCH_RETURN_IF_ERROR(PostgresLog::Open(conninfo_, setting_, verifier_.name(), &log));
  bool held = false;
  LATCH_RETURN_IF_ERROR(log->TryLockSequencer(kLeaseMs, &held));
  if (!held) {
    // Another collector holds it: the old connection's session may still
    // hold it too (a commit that failed for another reason); keep that one.
    if (writer_ && writer_->connected()) {
      LATCH_RETURN_IF_ERROR(writer_->TryLockSequencer(kLeaseMs, &held));
      if (held) log = std::move(writer_);
    }
  }
  if (!held) {
    Supersede("another collector holds the sequencer's lock");
    return Status::FailedPrecondition(setting_ + ": another collector is the sequencer now");
  }
  uint64_t db_size = 0;
  std::string db_note;
  LATCH_RETURN_IF_ERROR(log->ReadState(&db_size, &db_note));
  if (db_note != checkpoint_note()) {
    Supersede("the database's tree is at " + std::to_string(db_size) + ", this collector's at " +
              std::to_string(size()));
    return Status::FailedPrecondition(setting_ + ": the ledger moved past this collector");
  }
  writer_ = std::move(log);
  LATCH_RETURN_IF_ERROR(LoadTree(*writer_, /*load_edge=*/true));
  NameSession();
  failed_ = false;
  return Status::Ok();
}

namespace {
constexpr char kSessionPrefix[] = "latch-collector ";
}  // namespace

void PostgresLedger::NameSession() {
  if (advertised_.empty() || !writer_) return;
  Status s = writer_->SetApplicationName(kSessionPrefix + advertised_);
  if (!s.ok()) {
    logging::Default().Warn("the sequencer's address was not published; standbys cannot name it",
                            {{"storage", description_}, {"error", s.ToString()}});
  }
}

void PostgresLedger::Advertise(const std::string& address) {
  MutexLock lock(commit_mu_);
  advertised_ = address;
  if (sequencer_) NameSession();
}

Status PostgresLedger::SequencerAddress(std::string* address) {
  address->clear();
  std::string name;
  {
    MutexLock lock(read_mu_);
    LATCH_RETURN_IF_ERROR(
        OnReader([&](PostgresLog& reader) { return reader.ReadSequencerName(&name); }));
  }
  if (name.rfind(kSessionPrefix, 0) == 0) *address = name.substr(sizeof(kSessionPrefix) - 1);
  return Status::Ok();
}

uint64_t PostgresLedger::size() const {
  MutexLock lock(state_mu_);
  return size_;
}

tlog::Checkpoint PostgresLedger::checkpoint() const {
  MutexLock lock(state_mu_);
  return checkpoint_;
}

std::string PostgresLedger::checkpoint_note() const {
  MutexLock lock(state_mu_);
  return checkpoint_note_;
}

Status PostgresLedger::ReadCheckpoint(std::string* note) {
  *note = checkpoint_note();
  if (note->empty()) return Status::NotFound(setting_ + ": the ledger has no checkpoint yet");
  return Status::Ok();
}

void PostgresLedger::Remember(const tlog::TileId& tile, const std::string& data) {
  CachedTile& held = tiles_[{tile.level, tile.index}];
  if (held.width >= tile.width) return;
  if (cached_bytes_ - held.data.size() + data.size() > kCacheBytes) {
    tiles_.clear();  // simple and rare: the cache fills again as it is read
    cached_bytes_ = 0;
    tiles_[{tile.level, tile.index}] = {tile.width, data};
    cached_bytes_ = data.size();
    return;
  }
  cached_bytes_ = cached_bytes_ - held.data.size() + data.size();
  held = {tile.width, data};
}

Status PostgresLedger::OnReader(const std::function<Status(PostgresLog&)>& read) {
  // A connection the server dropped (a restart, a failover) is replaced
  // once, then the read is tried again.
  Status s = Status::IoError("not connected");
  for (int attempt = 0; attempt < 2 && s.code() == Status::Code::kIoError; ++attempt) {
    if (!reader_ || !reader_->connected() || attempt > 0) {
      reader_.reset();
      LATCH_RETURN_IF_ERROR(PostgresLog::Open(conninfo_, setting_, verifier_.name(), &reader_));
    }
    s = read(*reader_);
  }
  return s;
}

Status PostgresLedger::ReadStored(const tlog::TileId& tile, std::string* data) {
  MutexLock lock(read_mu_);
  auto it = tiles_.find({tile.level, tile.index});
  if (it != tiles_.end() && it->second.width >= tile.width) {
    *data = it->second.data;
    return CutTileToWidth(tile, data);
  }
  LATCH_RETURN_IF_ERROR(
      OnReader([&](PostgresLog& reader) { return reader.ReadStoredTile(tile, data); }));
  Remember(tile, *data);
  return Status::Ok();
}

Status PostgresLedger::ReadTile(const tlog::TileId& tile, std::string* data) {
  const uint64_t size = this->size();
  if (tile.width < 1 || tile.width > TileWidthAt(size, tile)) {
    return Status::NotFound(tile.Path() + " is beyond the tree of size " + std::to_string(size));
  }
  return ReadStored(tile, data);
}

Status PostgresLedger::ReadHashes(int level, uint64_t start, uint64_t count, Hash* out) {
  const uint64_t size = this->size();
  const uint64_t at_level = level < 0 ? 0 : tlog::HashesAtLevel(size, level);
  if (level < 0 || start + count > at_level) {
    return Status::NotFound("hashes " + std::to_string(start) + "+" + std::to_string(count) +
                            " of level " + std::to_string(level) + " are not in the tree");
  }
  std::string data;
  for (uint64_t at = start; at < start + count;) {
    const uint64_t index = at / kTileWidth;
    const uint64_t width = std::min<uint64_t>(kTileWidth, at_level - index * kTileWidth);
    LATCH_RETURN_IF_ERROR(ReadStored({level, index, static_cast<uint32_t>(width)}, &data));
    const uint64_t from = at - index * kTileWidth;
    const uint64_t n = std::min(start + count - at, width - from);
    std::memcpy(out + (at - start), data.data() + from * sizeof(Hash), n * sizeof(Hash));
    at += n;
  }
  return Status::Ok();
}

}  // namespace latch::ledger::postgres
