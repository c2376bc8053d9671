// Durable files: one append-only file (the ledger's internal storage, the
// agent's spool segments), and whole files written atomically. Writes go to the end;
// reads (pread) may run concurrently from other threads for any range that a
// committed checkpoint covers. Not thread-safe for concurrent appends.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <string>

#include "lib/status/status.h"

namespace latch::storage {

class AppendFile {
 public:
  AppendFile() = default;
  ~AppendFile();
  AppendFile(AppendFile&& other) noexcept;
  AppendFile& operator=(AppendFile&& other) noexcept;
  AppendFile(const AppendFile&) = delete;
  AppendFile& operator=(const AppendFile&) = delete;

  // Opens `path` (creating it if `create`; read-only if `read_only`).
  // *created tells whether the file did not exist before.
  static Status Open(const std::string& path, bool read_only, bool create, AppendFile* out,
                     bool* created = nullptr);

  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  Status Append(std::span<const uint8_t> data);
  Status AppendV(std::span<const iovec> parts);
  // Makes everything appended so far durable (fdatasync).
  Status Sync();
  // Cuts the file back to `size` bytes and makes that durable.
  Status Truncate(uint64_t size);
  // Reads exactly data.size() bytes at `offset`; Corruption if the file is shorter.
  Status ReadAt(uint64_t offset, std::span<uint8_t> data) const;

 private:
  int fd_ = -1;
  uint64_t size_ = 0;
  std::string path_;
};

// Fsyncs a directory, making creations and renames in it durable.
Status SyncDirectory(const std::string& dir);
// Writes `data` to `path` atomically: temp file, fsync, rename, fsync of the directory.
Status WriteFileAtomically(const std::string& dir, const std::string& name, std::string_view data,
                           int mode = 0644);
Status ReadWholeFile(const std::string& path, std::string* out, size_t max_size = 1 << 20);

}  // namespace latch::storage
