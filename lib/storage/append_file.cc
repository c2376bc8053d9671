#include "lib/storage/append_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <utility>
#include <vector>

namespace latch::storage {

AppendFile::~AppendFile() {
  if (fd_ >= 0) ::close(fd_);
}

AppendFile::AppendFile(AppendFile&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)), size_(other.size_), path_(std::move(other.path_)) {}

AppendFile& AppendFile::operator=(AppendFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    size_ = other.size_;
    path_ = std::move(other.path_);
  }
  return *this;
}

Status AppendFile::Open(const std::string& path, bool read_only, bool create, AppendFile* out,
                        bool* created) {
  int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  int fd = ::open(path.c_str(), flags);
  bool made = false;
  if (fd < 0 && errno == ENOENT && create && !read_only) {
    fd = ::open(path.c_str(), flags | O_CREAT | O_EXCL, 0644);
    made = true;
  }
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound(path + " is missing");
    return Status::FromErrno("open " + path, errno);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return Status::FromErrno("stat " + path, e);
  }
  AppendFile f;
  f.fd_ = fd;
  f.size_ = static_cast<uint64_t>(st.st_size);
  f.path_ = path;
  *out = std::move(f);
  if (created != nullptr) *created = made;
  return Status::Ok();
}

Status AppendFile::Append(std::span<const uint8_t> data) {
  iovec v{const_cast<uint8_t*>(data.data()), data.size()};
  return AppendV({&v, 1});
}

Status AppendFile::AppendV(std::span<const iovec> parts) {
  // pwritev at our own idea of the end: a short write is retried from where
  // it stopped, so a partial write never leaves a hole or a duplicate.
  std::vector<iovec> rest(parts.begin(), parts.end());
  size_t first = 0;
  while (first < rest.size()) {
    int count = static_cast<int>(std::min<size_t>(rest.size() - first, IOV_MAX));
    ssize_t n = ::pwritev(fd_, rest.data() + first, count, static_cast<off_t>(size_));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("write " + path_, errno);
    }
    size_ += static_cast<uint64_t>(n);
    auto left = static_cast<size_t>(n);
    while (first < rest.size() && left >= rest[first].iov_len) left -= rest[first++].iov_len;
    if (first < rest.size()) {
      rest[first].iov_base = static_cast<uint8_t*>(rest[first].iov_base) + left;
      rest[first].iov_len -= left;
    }
  }
  return Status::Ok();
}

Status AppendFile::Sync() {
  if (::fdatasync(fd_) != 0) return Status::FromErrno("fdatasync " + path_, errno);
  return Status::Ok();
}

Status AppendFile::Truncate(uint64_t size) {
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    return Status::FromErrno("truncate " + path_, errno);
  }
  size_ = size;
  return Sync();
}

Status AppendFile::ReadAt(uint64_t offset, std::span<uint8_t> data) const {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n =
        ::pread(fd_, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("read " + path_, errno);
    }
    if (n == 0) {
      return Status::Corruption(path_ + " ends at byte " + std::to_string(offset + done) +
                                ", before the data a checkpoint covers");
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

Status SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open directory " + dir, errno);
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return Status::FromErrno("fsync directory " + dir, e);
  return Status::Ok();
}

Status WriteFileAtomically(const std::string& dir, const std::string& name, std::string_view data,
                           int mode) {
  std::string tmp = dir + "/." + name + ".tmp";
  std::string dst = dir + "/" + name;
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Status::FromErrno("create " + tmp, errno);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return Status::FromErrno("write " + tmp, e);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    return Status::FromErrno("fsync " + tmp, e);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), dst.c_str()) != 0) return Status::FromErrno("rename to " + dst, errno);
  return SyncDirectory(dir);
}

Status ReadWholeFile(const std::string& path, std::string* out, size_t max_size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return Status::NotFound(path + " is missing");
    return Status::FromErrno("open " + path, errno);
  }
  out->clear();
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      return Status::FromErrno("read " + path, e);
    }
    if (n == 0) break;
    out->append(buf, static_cast<size_t>(n));
    if (out->size() > max_size) {
      ::close(fd);
      return Status::InvalidArgument(path + " is larger than " + std::to_string(max_size) +
                                     " bytes");
    }
  }
  ::close(fd);
  return Status::Ok();
}

}  // namespace latch::storage
