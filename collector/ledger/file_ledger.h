// FileLedger: the ledger (ledger.h) in a few append-only files on one disk,
// the embedded default. It stores entries and tree hashes and serves them as
// C2SP tlog-tiles; after every committed batch it signs a new C2SP
// checkpoint, and a batch is durable before its indexes are returned.
//
// Directory layout (internal; the served tiles are derived from it):
//   format       "latch-ledger 1\n": marks the directory as a ledger
//   key          the checkpoint signing key, signed-note text form, mode 0600
//   vkey         its verifier key, "<origin>+<id>+<base64 key>"
//   checkpoint   the latest signed checkpoint: the commit point. Everything
//                below its size is durable; anything past it is a torn tail
//                of an interrupted batch, cut off at the next read-write open.
//   entries      all entry bundles back to back (uint16 BE length || entry)
//   bundles      uint64 LE end offset in `entries` of each full bundle
//   hashes.<L>   the hashes of tile level L back to back (32 bytes each):
//                tile L/N width W is bytes [N*256*32, (N*256+W)*32)
//
// Commit order: entries, bundles and hashes are written and fdatasync'ed;
// the directory is fsync'ed if a file was created; then the checkpoint is
// replaced atomically (temp file, fsync, rename, directory fsync).
//
// Thread safety: one thread commits at a time (Commit serialises); readers on
// any thread see only what the latest checkpoint covers.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "collector/ledger/ledger.h"
#include "collector/ledger/right_edge.h"
#include "lib/storage/append_file.h"
#include "lib/sync/mutex.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/signed_note.h"
#include "lib/tlog/tree_reader.h"

namespace latch::ledger {

class FileLedger : public Ledger {
 public:
  enum class Mode { kReadWrite, kReadOnly };

  // Creates a ledger in `dir` (absent or empty) with a new signing key named
  // `origin`, and signs the checkpoint of the empty tree.
  static Status Create(const std::string& dir, const std::string& origin);
  // Opens a ledger. Read-write takes an exclusive lock on the directory and
  // cuts back a torn tail; read-only changes nothing. Fails with Corruption if
  // the files are shorter than the checkpoint covers, or (read-write) if the
  // stored right edge does not lead to the checkpoint's root.
  static Status Open(const std::string& dir, Mode mode, std::unique_ptr<FileLedger>* out);
  static Status Open(const std::string& dir, Mode mode, std::unique_ptr<Ledger>* out);
  // True iff `dir` looks like a ledger (has its format marker).
  static bool IsLedgerDirectory(const std::string& dir);

  ~FileLedger() override;

  // Ledger. After an I/O error Commit refuses (FailedPrecondition) until the
  // ledger is reopened or recovered. Recover, in place: cuts every file back
  // to what the last acknowledged checkpoint covers, writes that checkpoint
  // again (a failure after its rename must not leave a newer one behind that
  // no caller was told of), rebuilds the right edge from the stored hashes,
  // and takes commits again.
  Status Commit(std::span<const EntryBatch* const> batches, uint64_t* first_index) override;
  Status Recover() override;
  uint64_t size() const override;
  uint64_t commits() const override { return commits_.load(); }
  bool write_failed() const override { return failed_.load(); }
  tlog::Checkpoint checkpoint() const override;
  std::string checkpoint_note() const override;
  const tlog::NoteVerifier& verifier() const override { return verifier_; }
  const std::string& dir() const { return dir_; }

  // TileSource: tiles and bundles of the committed tree, byte-exact.
  Status ReadCheckpoint(std::string* note) override;
  Status ReadTile(const tlog::TileId& tile, std::string* data) override;
  std::string Describe() const override { return dir_; }

  // StoredHashReader over the committed tree.
  Status ReadHashes(int level, uint64_t start, uint64_t count, tlog::Hash* out) override;

 private:
  FileLedger() = default;
  Status OpenFiles(bool read_only);
  Status RecoverTail(bool read_only) LATCH_REQUIRES(commit_mu_);
  Status HashFile(int level, storage::AppendFile** file);
  // Byte range of bundle `index` holding `width` entries, in a tree of `size`.
  Status BundleRange(uint64_t index, uint64_t width, uint64_t size, uint64_t* begin, uint64_t* end);
  Status WriteBatch(std::span<const EntryBatch* const> batches) LATCH_REQUIRES(commit_mu_);

  std::string dir_;
  bool read_only_ = true;
  int lock_fd_ = -1;
  tlog::NoteVerifier verifier_;
  tlog::NoteSigner signer_;  // read-write only

  storage::AppendFile entries_;
  storage::AppendFile bundles_;
  // Index = tile level. Fixed slots: a reader may use level L's file while the
  // committer creates level L+1's.
  std::array<std::unique_ptr<storage::AppendFile>, 64> hashes_;
  Mutex commit_mu_;  // one Commit (or Recover) at a time
  // The committer's state, ahead of `size_` only inside Commit.
  RightEdge edge_ LATCH_GUARDED_BY(commit_mu_);
  // Scratch: the hashes a batch completes, by level.
  std::vector<std::vector<tlog::Hash>> completed_ LATCH_GUARDED_BY(commit_mu_);
  std::atomic<bool> failed_{false};  // set by Commit on a write error; read by anyone
  std::atomic<uint64_t> commits_{0};

  mutable Mutex state_mu_;  // the committed view below: what readers see
  uint64_t size_ LATCH_GUARDED_BY(state_mu_) = 0;
  uint64_t entries_end_ LATCH_GUARDED_BY(state_mu_) = 0;  // end of the committed entries
  tlog::Checkpoint checkpoint_ LATCH_GUARDED_BY(state_mu_);
  std::string checkpoint_note_ LATCH_GUARDED_BY(state_mu_);
};

}  // namespace latch::ledger
