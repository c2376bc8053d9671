#include "collector/ledger/file_ledger.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace latch::ledger {

using tlog::Hash;
using tlog::kTileWidth;

namespace {

constexpr char kFormatFile[] = "format";
constexpr char kFormatText[] = "latch-ledger 1\n";
constexpr char kKeyFile[] = "key";
constexpr char kVkeyFile[] = "vkey";
constexpr char kCheckpointFile[] = "checkpoint";
constexpr char kEntriesFile[] = "entries";
constexpr char kBundlesFile[] = "bundles";

std::string HashFileName(int level) { return "hashes." + std::to_string(level); }

void PutLittleEndian64(uint64_t v, uint8_t* out) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t GetLittleEndian64(const uint8_t* in) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | in[i];
  return v;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Cuts `data` (entries back to back) after `count` entries; Corruption if it
// holds fewer or a length runs past its end.
Status CutAfterEntries(std::string* data, uint64_t count, const std::string& where) {
  size_t pos = 0;
  for (uint64_t i = 0; i < count; ++i) {
    if (pos + 2 > data->size()) {
      return Status::Corruption(where + ": ends inside the length of entry " + std::to_string(i));
    }
    size_t len = (static_cast<uint8_t>((*data)[pos]) << 8) | static_cast<uint8_t>((*data)[pos + 1]);
    pos += 2 + len;
    if (pos > data->size()) {
      return Status::Corruption(where + ": entry " + std::to_string(i) + " runs past the bundle");
    }
  }
  data->resize(pos);
  return Status::Ok();
}

}  // namespace

bool FileLedger::IsLedgerDirectory(const std::string& dir) {
  std::string format;
  return storage::ReadWholeFile(dir + "/" + kFormatFile, &format).ok() && format == kFormatText;
}

Status FileLedger::Create(const std::string& dir, const std::string& origin) {
  tlog::NoteSigner signer;
  LATCH_RETURN_IF_ERROR(tlog::NoteSigner::Generate(origin, &signer).WithContext("origin"));
  if (IsLedgerDirectory(dir)) return Status::AlreadyExists(dir + " is already a ledger");
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) {
    if (!std::filesystem::is_directory(dir, ec)) {
      return Status::InvalidArgument(dir + " exists and is not a directory");
    }
    if (!std::filesystem::is_empty(dir, ec)) {
      return Status::InvalidArgument(dir + " exists and is not empty");
    }
  } else {
    if (::mkdir(dir.c_str(), 0755) != 0) return Status::FromErrno("create directory " + dir, errno);
    // The new directory's own entry must survive a crash too.
    std::string parent = std::filesystem::path(dir).parent_path().string();
    LATCH_RETURN_IF_ERROR(storage::SyncDirectory(parent.empty() ? "." : parent));
  }

  LATCH_RETURN_IF_ERROR(
      storage::WriteFileAtomically(dir, kKeyFile, signer.ToString() + "\n", 0600));
  LATCH_RETURN_IF_ERROR(
      storage::WriteFileAtomically(dir, kVkeyFile, signer.verifier().ToString() + "\n"));
  for (const char* name : {kEntriesFile, kBundlesFile}) {
    storage::AppendFile f;
    LATCH_RETURN_IF_ERROR(storage::AppendFile::Open(dir + "/" + name, false, true, &f));
  }
  tlog::Checkpoint empty{origin, 0, tlog::MerkleHasher::EmptyRoot(), {}};
  std::string note;
  LATCH_RETURN_IF_ERROR(signer.Sign(empty.Body(), &note));
  LATCH_RETURN_IF_ERROR(storage::WriteFileAtomically(dir, kCheckpointFile, note));
  // The marker comes last: a directory without it was never a complete ledger.
  return storage::WriteFileAtomically(dir, kFormatFile, kFormatText);
}

Status FileLedger::Open(const std::string& dir, Mode mode, std::unique_ptr<Ledger>* out) {
  std::unique_ptr<FileLedger> l;
  LATCH_RETURN_IF_ERROR(Open(dir, mode, &l));
  *out = std::move(l);
  return Status::Ok();
}

Status FileLedger::Open(const std::string& dir, Mode mode, std::unique_ptr<FileLedger>* out) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return Status::NotFound(dir + " is not a directory");
  if (!IsLedgerDirectory(dir)) {
    return Status::InvalidArgument(dir + " is not a ledger (no " + kFormatFile + " marker)");
  }
  std::unique_ptr<FileLedger> l(new FileLedger());
  l->dir_ = dir;
  l->read_only_ = mode == Mode::kReadOnly;

  if (!l->read_only_) {
    std::string lock_path = dir + "/" + kFormatFile;
    l->lock_fd_ = ::open(lock_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (l->lock_fd_ < 0) return Status::FromErrno("open " + lock_path, errno);
    if (::flock(l->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
      return Status::FailedPrecondition(dir + " is open for writing by another process");
    }
  }

  std::string text;
  LATCH_RETURN_IF_ERROR(storage::ReadWholeFile(dir + "/" + kVkeyFile, &text));
  LATCH_RETURN_IF_ERROR(tlog::NoteVerifier::Parse(Trim(text), &l->verifier_));
  if (!l->read_only_) {
    LATCH_RETURN_IF_ERROR(storage::ReadWholeFile(dir + "/" + kKeyFile, &text));
    LATCH_RETURN_IF_ERROR(tlog::NoteSigner::Parse(Trim(text), &l->signer_));
    if (l->signer_.verifier().ToString() != l->verifier_.ToString()) {
      return Status::Corruption(dir + ": key and vkey do not belong together");
    }
  }
  std::string note;
  tlog::Checkpoint cp;
  LATCH_RETURN_IF_ERROR(storage::ReadWholeFile(dir + "/" + kCheckpointFile, &note));
  LATCH_RETURN_IF_ERROR(
      tlog::OpenCheckpoint(note, l->verifier_, &cp).WithContext(dir + "/checkpoint"));
  {
    MutexLock state(l->state_mu_);
    l->size_ = cp.size;
    l->checkpoint_ = cp;
    l->checkpoint_note_ = std::move(note);
  }
  LATCH_RETURN_IF_ERROR(l->OpenFiles(l->read_only_));
  {
    MutexLock commit(l->commit_mu_);
    LATCH_RETURN_IF_ERROR(l->RecoverTail(l->read_only_));
    if (!l->read_only_) {
      // An appender must not build on a damaged right edge. (Readers do not
      // need the edge; verify finds and names any damage itself.)
      LATCH_RETURN_IF_ERROR(RightEdge::Load(cp.size, *l, &l->edge_));
      if (l->edge_.Root() != cp.root) {
        return Status::Corruption(dir +
                                  ": stored hashes do not lead to the checkpoint's root; "
                                  "run latch-ledger verify to find the damage");
      }
    }
  }
  *out = std::move(l);
  return Status::Ok();
}

FileLedger::~FileLedger() {
  if (lock_fd_ >= 0) ::close(lock_fd_);
}

Status FileLedger::OpenFiles(bool read_only) {
  LATCH_RETURN_IF_ERROR(
      storage::AppendFile::Open(dir_ + "/" + kEntriesFile, read_only, false, &entries_));
  LATCH_RETURN_IF_ERROR(
      storage::AppendFile::Open(dir_ + "/" + kBundlesFile, read_only, false, &bundles_));
  for (int level = 0; level < static_cast<int>(hashes_.size()); ++level) {
    auto f = std::make_unique<storage::AppendFile>();
    Status s =
        storage::AppendFile::Open(dir_ + "/" + HashFileName(level), read_only, false, f.get());
    if (s.code() == Status::Code::kNotFound) break;
    LATCH_RETURN_IF_ERROR(s);
    hashes_[level] = std::move(f);
  }
  return Status::Ok();
}

// Everything the checkpoint covers must be there; anything after it is the
// torn tail of a batch that never committed, and is cut (read-write only).
Status FileLedger::RecoverTail(bool read_only) {
  const uint64_t tree_size = size();  // the checkpoint's: only the committer changes it
  auto fit = [&](storage::AppendFile& f, uint64_t need) -> Status {
    if (f.size() < need) {
      return Status::Corruption(f.path() + " holds " + std::to_string(f.size()) +
                                " bytes but the checkpoint of size " + std::to_string(tree_size) +
                                " needs " + std::to_string(need));
    }
    if (f.size() > need && !read_only) return f.Truncate(need);
    return Status::Ok();
  };
  LATCH_RETURN_IF_ERROR(fit(bundles_, tree_size / kTileWidth * 8));
  for (int level = 0; level < static_cast<int>(hashes_.size()); ++level) {
    uint64_t need = tlog::HashesAtLevel(tree_size, level) * sizeof(Hash);
    if (!hashes_[level]) {
      if (need > 0) return Status::Corruption(dir_ + "/" + HashFileName(level) + " is missing");
      continue;
    }
    LATCH_RETURN_IF_ERROR(fit(*hashes_[level], need));
  }
  // The end of the last committed entry: after the last full bundle, walk
  // the length prefixes of the partial one.
  uint64_t full = tree_size / kTileWidth;
  uint64_t end = 0;
  if (full > 0) {
    uint8_t buf[8];
    LATCH_RETURN_IF_ERROR(bundles_.ReadAt((full - 1) * 8, buf));
    end = GetLittleEndian64(buf);
  }
  for (uint64_t i = 0; i < tree_size % kTileWidth; ++i) {
    uint8_t len[2];
    LATCH_RETURN_IF_ERROR(entries_.ReadAt(end, len));
    end += 2 + ((len[0] << 8) | len[1]);
  }
  LATCH_RETURN_IF_ERROR(fit(entries_, end));
  MutexLock state(state_mu_);
  entries_end_ = end;
  return Status::Ok();
}

Status FileLedger::HashFile(int level, storage::AppendFile** file) {
  if (level >= static_cast<int>(hashes_.size())) return Status::InvalidArgument("tree too tall");
  if (!hashes_[level]) {
    auto f = std::make_unique<storage::AppendFile>();
    LATCH_RETURN_IF_ERROR(storage::AppendFile::Open(dir_ + "/" + HashFileName(level), read_only_,
                                                    !read_only_, f.get()));
    hashes_[level] = std::move(f);
  }
  *file = hashes_[level].get();
  return Status::Ok();
}

Status FileLedger::Commit(std::span<const EntryBatch* const> batches, uint64_t* first_index) {
  MutexLock lock(commit_mu_);
  if (read_only_) return Status::FailedPrecondition(dir_ + " is open read-only");
  if (failed_) {
    return Status::FailedPrecondition(dir_ + " had a write error; reopen it to recover");
  }
  *first_index = edge_.size();
  uint64_t count = 0;
  for (const EntryBatch* b : batches) count += b->size();
  if (count == 0) return Status::Ok();
  Status s = WriteBatch(batches);
  if (!s.ok()) {
    failed_ = true;
  } else {
    commits_++;
  }
  return s;
}

Status FileLedger::Recover() {
  MutexLock lock(commit_mu_);
  if (read_only_) return Status::FailedPrecondition(dir_ + " is open read-only");
  if (!failed_) return Status::Ok();
  std::string note;
  {
    MutexLock state(state_mu_);
    note = checkpoint_note_;
  }
  std::string on_disk;
  Status read = storage::ReadWholeFile(dir_ + "/" + kCheckpointFile, &on_disk);
  if (!read.ok() || on_disk != note) {
    LATCH_RETURN_IF_ERROR(storage::WriteFileAtomically(dir_, kCheckpointFile, note));
  }
  LATCH_RETURN_IF_ERROR(RecoverTail(/*read_only=*/false));
  RightEdge edge;
  LATCH_RETURN_IF_ERROR(RightEdge::Load(size(), *this, &edge));
  if (edge.Root() != checkpoint().root) {
    return Status::Corruption(dir_ + ": stored hashes do not lead to the checkpoint's root");
  }
  edge_ = std::move(edge);
  failed_ = false;
  return Status::Ok();
}

Status FileLedger::WriteBatch(std::span<const EntryBatch* const> batches) {
  const uint64_t base = edge_.size();
  const uint64_t entries_start = entries_.size();

  // Entries, and the end offset of every bundle the batch completes.
  std::vector<iovec> parts;
  std::vector<uint8_t> bundle_ends;
  uint64_t index = base;
  uint64_t offset = entries_start;
  for (const EntryBatch* b : batches) {
    parts.push_back({const_cast<uint8_t*>(b->bundle_bytes().data()), b->bundle_bytes().size()});
    for (size_t i = 0; i < b->size(); ++i) {
      if (++index % kTileWidth == 0) {
        bundle_ends.resize(bundle_ends.size() + 8);
        PutLittleEndian64(offset + b->end_offset(i), &bundle_ends[bundle_ends.size() - 8]);
      }
    }
    offset += b->bundle_bytes().size();
  }
  LATCH_RETURN_IF_ERROR(entries_.AppendV(parts));
  if (!bundle_ends.empty()) LATCH_RETURN_IF_ERROR(bundles_.Append(bundle_ends));

  // Level 0 stores the leaf hashes; higher levels the subtrees completed.
  parts.clear();
  for (auto& level : completed_) level.clear();
  for (const EntryBatch* b : batches) {
    auto hashes = b->leaf_hashes();
    parts.push_back({const_cast<Hash*>(hashes.data()), hashes.size_bytes()});
    edge_.Append(hashes, &completed_);
  }
  bool created = !hashes_[0];
  storage::AppendFile* file = nullptr;
  LATCH_RETURN_IF_ERROR(HashFile(0, &file));
  LATCH_RETURN_IF_ERROR(file->AppendV(parts));
  std::vector<storage::AppendFile*> touched = {&entries_, file};
  if (!bundle_ends.empty()) touched.push_back(&bundles_);
  for (size_t level = 1; level < completed_.size(); ++level) {
    if (completed_[level].empty()) continue;
    created = created || !hashes_[level];
    LATCH_RETURN_IF_ERROR(HashFile(static_cast<int>(level), &file));
    LATCH_RETURN_IF_ERROR(file->Append({reinterpret_cast<const uint8_t*>(completed_[level].data()),
                                        completed_[level].size() * sizeof(Hash)}));
    touched.push_back(file);
  }
  for (storage::AppendFile* f : touched) LATCH_RETURN_IF_ERROR(f->Sync());
  if (created) LATCH_RETURN_IF_ERROR(storage::SyncDirectory(dir_));

  // The commit point.
  tlog::Checkpoint cp{verifier_.name(), edge_.size(), edge_.Root(), {}};
  std::string note;
  LATCH_RETURN_IF_ERROR(signer_.Sign(cp.Body(), &note));
  LATCH_RETURN_IF_ERROR(storage::WriteFileAtomically(dir_, kCheckpointFile, note));

  MutexLock lock(state_mu_);
  size_ = cp.size;
  entries_end_ = entries_.size();
  checkpoint_ = std::move(cp);
  checkpoint_note_ = std::move(note);
  return Status::Ok();
}

uint64_t FileLedger::size() const {
  MutexLock lock(state_mu_);
  return size_;
}

tlog::Checkpoint FileLedger::checkpoint() const {
  MutexLock lock(state_mu_);
  return checkpoint_;
}

std::string FileLedger::checkpoint_note() const {
  MutexLock lock(state_mu_);
  return checkpoint_note_;
}

Status FileLedger::ReadCheckpoint(std::string* note) {
  *note = checkpoint_note();
  return Status::Ok();
}

Status FileLedger::ReadHashes(int level, uint64_t start, uint64_t count, Hash* out) {
  uint64_t size = this->size();
  if (level < 0 || level >= static_cast<int>(hashes_.size()) ||
      start + count > tlog::HashesAtLevel(size, level)) {
    return Status::NotFound("hashes " + std::to_string(start) + "+" + std::to_string(count) +
                            " of level " + std::to_string(level) + " are not in the tree");
  }
  return hashes_[level]->ReadAt(start * sizeof(Hash),
                                {reinterpret_cast<uint8_t*>(out), count * sizeof(Hash)});
}

Status FileLedger::ReadTile(const tlog::TileId& tile, std::string* data) {
  uint64_t size;
  uint64_t committed_end;
  {
    MutexLock lock(state_mu_);
    size = size_;
    committed_end = entries_end_;
  }
  const uint64_t first = tile.index * kTileWidth;
  if (tile.is_entries()) {
    if (tile.index > size / kTileWidth || first + tile.width > size) {
      return Status::NotFound(tile.Path() + " is beyond the tree of size " + std::to_string(size));
    }
    uint8_t buf[8];
    uint64_t begin = 0;
    if (tile.index > 0) {
      LATCH_RETURN_IF_ERROR(bundles_.ReadAt((tile.index - 1) * 8, buf));
      begin = GetLittleEndian64(buf);
    }
    uint64_t end = committed_end;
    if (first + kTileWidth <= size) {
      LATCH_RETURN_IF_ERROR(bundles_.ReadAt(tile.index * 8, buf));
      end = GetLittleEndian64(buf);
    }
    if (end < begin || end > committed_end || end - begin > kTileWidth * (kMaxEntrySize + 2)) {
      return Status::Corruption(tile.Path() + ": bundle index in " + dir_ + "/bundles is damaged");
    }
    data->resize(end - begin);
    LATCH_RETURN_IF_ERROR(
        entries_.ReadAt(begin, {reinterpret_cast<uint8_t*>(data->data()), data->size()}));
    return CutAfterEntries(data, tile.width, tile.Path());
  }
  // The index compared by division first: index * 256 overflows past 2^56,
  // and a wrapped `first` would serve real hashes under a path no tree has.
  if (tile.level < 0 || tile.level >= static_cast<int>(hashes_.size()) ||
      tile.index > tlog::HashesAtLevel(size, tile.level) / kTileWidth ||
      first + tile.width > tlog::HashesAtLevel(size, tile.level)) {
    return Status::NotFound(tile.Path() + " is beyond the tree of size " + std::to_string(size));
  }
  data->resize(tile.width * sizeof(Hash));
  return hashes_[tile.level]->ReadAt(first * sizeof(Hash),
                                     {reinterpret_cast<uint8_t*>(data->data()), data->size()});
}

}  // namespace latch::ledger
