#include "collector/record/ledger_health.h"

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "lib/logging/logger.h"

namespace latch::collector {

namespace {
// Big enough that a disk with a few blocks free but not room for a batch does
// not look recovered; small enough to cost nothing once a second.
constexpr size_t kProbeBytes = 1 << 20;
}  // namespace

void LedgerHealth::Failed(const Status& why) {
  failures_++;
  if (!writable_) return;  // the same outage
  writable_ = false;
  outages_++;
  since_ = Clock::now();
  next_try_ = since_ + std::chrono::seconds(1);
  reason_ = "the ledger cannot be written: " + why.ToString();
  logging::Default().Alert(
      "ledger commit failed; refusing writes and retrying",
      {{"dir", dir_},
       {"error", why.ToString()},
       {"hint",
        "free space or fix the disk under data_dir (with [storage] postgres: bring the "
        "database back); reads go on, agents keep their records in their spools, and writes "
        "resume by themselves once the storage takes them"}});
}

bool LedgerHealth::TryRecover(ledger::Ledger& ledger, bool idle, Clock::time_point now) {
  if (writable_) return false;
  if (!idle || now < next_try_) return false;
  next_try_ = now + std::chrono::seconds(1);
  Status s = Probe();
  if (s.ok()) s = ledger.Recover();
  if (!s.ok()) {
    // One line per distinct error, not one a second.
    if (s.ToString() != last_retry_error_) {
      logging::Default().Warn("the ledger still cannot be written; retrying every second",
                              {{"error", s.ToString()}});
      last_retry_error_ = s.ToString();
    }
    return false;
  }
  writable_ = true;
  reason_.clear();
  last_retry_error_.clear();
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(now - since_).count();
  logging::Default().Info("the ledger takes writes again; resuming",
                          {{"dir", dir_}, {"outage_s", secs}, {"failed_commits", failures_}});
  return true;
}

Status LedgerHealth::Probe() const {
  const std::string path = dir_ + "/.write-probe";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::FromErrno("open " + path, errno);
  std::string block(64 * 1024, '\0');
  Status s;
  for (size_t done = 0; done < kProbeBytes && s.ok();) {
    ssize_t n = ::write(fd, block.data(), block.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      s = Status::FromErrno("write " + path, n < 0 ? errno : ENOSPC);
    } else {
      done += static_cast<size_t>(n);
    }
  }
  if (s.ok() && ::fdatasync(fd) != 0) s = Status::FromErrno("fdatasync " + path, errno);
  ::close(fd);
  ::unlink(path.c_str());
  return s;
}

}  // namespace latch::collector
