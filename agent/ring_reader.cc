#include "agent/ring_reader.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "lib/logging/logger.h"

namespace latch::agent {
namespace {

// The ring's record header (kernel/bpf/ringbuf.c): length with two flag bits,
// then the page offset the kernel uses for itself.
constexpr uint32_t kBusyBit = 1u << 31;     // reserved, not yet submitted
constexpr uint32_t kDiscardBit = 1u << 30;  // discarded by the program: skip
constexpr uint32_t kHeaderSize = 8;

uint64_t LoadAcquire(const void* p) {
  return __atomic_load_n(static_cast<const uint64_t*>(p), __ATOMIC_ACQUIRE);
}

}  // namespace

std::string RingPosition::Encode() const {
  std::string out = kernel_boot_id;
  out.push_back('\0');
  char b[12];
  std::memcpy(b, &map_id, 4);  // little-endian hosts only, as the spool
  std::memcpy(b + 4, &position, 8);
  out.append(b, sizeof(b));
  return out;
}

bool RingPosition::Decode(const std::string& bytes, RingPosition* out) {
  size_t nul = bytes.find('\0');
  if (nul == std::string::npos || bytes.size() != nul + 1 + 12) return false;
  out->kernel_boot_id = bytes.substr(0, nul);
  std::memcpy(&out->map_id, bytes.data() + nul + 1, 4);
  std::memcpy(&out->position, bytes.data() + nul + 5, 8);
  return true;
}

std::string EncodeRingMarks(const std::vector<RingPosition>& positions) {
  std::string out;
  for (const RingPosition& p : positions) {
    std::string one = p.Encode();
    uint16_t len = static_cast<uint16_t>(one.size());
    out.append(reinterpret_cast<const char*>(&len), 2);
    out += one;
  }
  return out;
}

bool DecodeRingMarks(const std::string& bytes, std::vector<RingPosition>* out) {
  out->clear();
  size_t at = 0;
  while (at < bytes.size()) {
    if (bytes.size() - at < 2) return false;
    uint16_t len;
    std::memcpy(&len, bytes.data() + at, 2);
    at += 2;
    if (bytes.size() - at < len) return false;
    RingPosition p;
    if (!RingPosition::Decode(bytes.substr(at, len), &p)) return false;
    out->push_back(std::move(p));
    at += len;
  }
  return true;
}

Status RingReader::ForDecisionEvents(int ring_fd, DecisionHandler handler,
                                     std::unique_ptr<RingReader>* out) {
  return Create(
      ring_fd,
      [handler = std::move(handler)](std::string_view record) {
        if (record.size() != sizeof(latch_decision_event)) {
          // The kernel and this binary disagree on the layout: count and say so.
          logging::Default().Error(
              "decision event of the wrong size; dropped and counted",
              {{"bytes", record.size()},
               {"expected", sizeof(latch_decision_event)},
               {"hint",
                "should not happen: the kernel program and this agent disagree on the "
                "record's layout; please report it with latch-agent status"}});
          return false;
        }
        latch_decision_event e;
        std::memcpy(&e, record.data(), sizeof(e));
        handler(e);
        return true;
      },
      out);
}

Status RingReader::Create(int events_map_fd, RecordHandler handler,
                          std::unique_ptr<RingReader>* out) {
  std::unique_ptr<RingReader> r(new RingReader());
  r->handler_ = std::move(handler);
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(events_map_fd, &info, &len) != 0) {
    return Status::FromErrno("reading a ring buffer's description", errno);
  }
  if (info.type != BPF_MAP_TYPE_RINGBUF || info.max_entries == 0 ||
      (info.max_entries & (info.max_entries - 1)) != 0) {
    return Status::InvalidArgument("the map to read records from is not a ring buffer");
  }
  r->page_size_ = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  r->mask_ = info.max_entries - 1;
  r->map_id_ = info.id;
  std::ifstream boot_id("/proc/sys/kernel/random/boot_id");
  if (!std::getline(boot_id, r->kernel_boot_id_) || r->kernel_boot_id_.empty()) {
    return Status::FailedPrecondition("reading /proc/sys/kernel/random/boot_id");
  }
  void* cons = ::mmap(nullptr, r->page_size_, PROT_READ | PROT_WRITE, MAP_SHARED, events_map_fd, 0);
  if (cons == MAP_FAILED) return Status::FromErrno("mapping the ring's consumer page", errno);
  r->consumer_page_ = cons;
  // The data is mapped twice back to back, so a record that wraps around the
  // end is still contiguous in memory.
  r->producer_map_size_ = r->page_size_ + 2 * static_cast<size_t>(info.max_entries);
  void* prod = ::mmap(nullptr, r->producer_map_size_, PROT_READ, MAP_SHARED, events_map_fd,
                      static_cast<off_t>(r->page_size_));
  if (prod == MAP_FAILED) return Status::FromErrno("mapping the ring's data", errno);
  r->producer_map_ = prod;
  // Not into children: a process forked from the reader's would copy the
  // ring's page tables (megabytes of them) at every fork for nothing.
  ::madvise(cons, r->page_size_, MADV_DONTFORK);
  ::madvise(prod, r->producer_map_size_, MADV_DONTFORK);
  r->read_pos_ = r->committed_pos_ = LoadAcquire(r->consumer_page_);

  r->epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (r->epoll_fd_ < 0) return Status::FromErrno("epoll_create1", errno);
  epoll_event ev{};
  ev.events = EPOLLIN;
  if (::epoll_ctl(r->epoll_fd_, EPOLL_CTL_ADD, events_map_fd, &ev) != 0) {
    return Status::FromErrno("watching a ring buffer", errno);
  }
  *out = std::move(r);
  return Status::Ok();
}

RingReader::~RingReader() {
  if (consumer_page_ != nullptr) ::munmap(consumer_page_, page_size_);
  if (producer_map_ != nullptr) ::munmap(producer_map_, producer_map_size_);
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

Status RingReader::Read(size_t max, int* handled) {
  *handled = 0;
  const char* data = static_cast<const char*>(producer_map_) + page_size_;
  uint64_t producer = LoadAcquire(producer_map_);
  for (size_t n = 0; n < max && read_pos_ < producer; ++n) {
    const char* header = data + (read_pos_ & mask_);
    uint32_t word = __atomic_load_n(reinterpret_cast<const uint32_t*>(header), __ATOMIC_ACQUIRE);
    if (word & kBusyBit) break;  // records are released in order: wait for this one
    uint32_t size = word & ~(kBusyBit | kDiscardBit);
    if (!(word & kDiscardBit)) {
      if (handler_(std::string_view(header + kHeaderSize, size))) {
        ++*handled;
      } else {
        ++malformed_;
      }
    }
    read_pos_ += (size + kHeaderSize + 7) & ~uint64_t{7};
  }
  return Status::Ok();
}

uint64_t RingReader::NextRecord(uint64_t pos, uint64_t producer) const {
  if (pos >= producer) return 0;
  const char* header = static_cast<const char*>(producer_map_) + page_size_ + (pos & mask_);
  uint32_t word = __atomic_load_n(reinterpret_cast<const uint32_t*>(header), __ATOMIC_ACQUIRE);
  if (word & kBusyBit) return 0;
  uint32_t size = word & ~(kBusyBit | kDiscardBit);
  return pos + ((size + kHeaderSize + 7) & ~uint64_t{7});
}

Status RingReader::SkipTo(const RingPosition& to, uint64_t* skipped) {
  *skipped = 0;
  if (to.kernel_boot_id != kernel_boot_id_ || to.map_id != map_id_ || to.position <= read_pos_) {
    return Status::Ok();
  }
  uint64_t producer = LoadAcquire(producer_map_);
  if (to.position > producer) {
    return Status::Corruption("the spool's ring position is past what the kernel has written");
  }
  uint64_t pos = read_pos_, n = 0;
  while (pos < to.position) {
    pos = NextRecord(pos, producer);
    if (pos == 0) return Status::Corruption("the spool's ring position is inside a record");
    ++n;
  }
  if (pos != to.position) {
    return Status::Corruption("the spool's ring position is not a record boundary");
  }
  read_pos_ = pos;
  Commit();
  *skipped = n;
  return Status::Ok();
}

void RingReader::Commit() {
  if (read_pos_ == committed_pos_) return;
  __atomic_store_n(static_cast<uint64_t*>(consumer_page_), read_pos_, __ATOMIC_RELEASE);
  committed_pos_ = read_pos_;
}

Status RingReader::Consume(int* handled) {
  Status s = Read(SIZE_MAX, handled);
  Commit();
  return s;
}

Status RingReader::Poll(int timeout_ms, int* handled) {
  *handled = 0;
  epoll_event ev;
  int n = ::epoll_wait(epoll_fd_, &ev, 1, timeout_ms);
  if (n < 0 && errno != EINTR) return Status::FromErrno("waiting for decision events", errno);
  return Consume(handled);
}

}  // namespace latch::agent
