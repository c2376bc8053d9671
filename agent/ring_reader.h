// Reads records from a BPF ring buffer (the guard's decision events, the
// activity programs' records), with the consumer position under the caller's
// control: Read() hands over what is there without releasing it, Commit()
// releases what was read. The agent commits only after the records are in
// its spool file, so an agent killed in between finds them again, unread, in
// a pinned ring buffer when it restarts.
//
// The ring is read through its own mmap (the layout the kernel documents for
// BPF_MAP_TYPE_RINGBUF) rather than libbpf's ring_buffer, which releases each
// record as soon as its callback returns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "guard_abi.h"
#include "lib/status/status.h"

namespace latch::agent {

// A place in one particular ring buffer: positions only grow for the ring's
// life, and the ring is named by the kernel's boot and the map's id, so that
// a position is never applied to another ring (after a reboot or reinstall).
struct RingPosition {
  std::string kernel_boot_id;  // /proc/sys/kernel/random/boot_id
  uint32_t map_id = 0;
  uint64_t position = 0;

  std::string Encode() const;
  static bool Decode(const std::string& bytes, RingPosition* out);
};

// Several rings' positions in one spool mark: each as its Encode(), with a
// 16-bit length before it.
std::string EncodeRingMarks(const std::vector<RingPosition>& positions);
bool DecodeRingMarks(const std::string& bytes, std::vector<RingPosition>* out);

class RingReader {
 public:
  // Gets each record; false: malformed (the reader counts it, see malformed()).
  using RecordHandler = std::function<bool(std::string_view record)>;
  static Status Create(int ring_fd, RecordHandler handler, std::unique_ptr<RingReader>* out);
  // The guard's decision events: records of exactly sizeof(latch_decision_event).
  using DecisionHandler = std::function<void(const latch_decision_event&)>;
  static Status ForDecisionEvents(int ring_fd, DecisionHandler handler,
                                  std::unique_ptr<RingReader>* out);
  ~RingReader();
  RingReader(const RingReader&) = delete;
  RingReader& operator=(const RingReader&) = delete;

  // Readable when the kernel has submitted records (an epoll fd with the map
  // registered): what an event loop waits on.
  int epoll_fd() const { return epoll_fd_; }
  // Hands up to `max` unread records to the handler, without releasing them;
  // *handled says how many were events (malformed records are counted).
  Status Read(size_t max, int* handled);
  // Releases everything Read() has handed over to the kernel's producer.
  void Commit();
  // Read everything, then Commit.
  Status Consume(int* handled);
  // Waits up to timeout_ms for records, then consumes them.
  Status Poll(int timeout_ms, int* handled);
  // Records the handler refused: a layout mismatch; should not happen.
  uint64_t malformed() const { return malformed_; }
  // Records read but not yet committed.
  bool has_uncommitted() const { return read_pos_ != committed_pos_; }
  // Where the next Read() starts.
  RingPosition read_position() const { return {kernel_boot_id_, map_id_, read_pos_}; }
  // Releases, unread, the records before `to` when it is a later position in
  // this same ring (records an earlier agent spooled but had not released
  // when it died); *skipped says how many records. Anything else (another
  // ring, not a record boundary, records still being written) skips nothing.
  Status SkipTo(const RingPosition& to, uint64_t* skipped);

 private:
  RingReader() = default;
  // The position after the record at `pos`, or 0 if none is complete there.
  uint64_t NextRecord(uint64_t pos, uint64_t producer) const;

  RecordHandler handler_;
  int epoll_fd_ = -1;
  size_t mask_ = 0;  // data size - 1 (a power of two)
  size_t page_size_ = 0;
  void* consumer_page_ = nullptr;  // the kernel reads consumer_pos here
  void* producer_map_ = nullptr;   // producer page + data mapped twice
  size_t producer_map_size_ = 0;
  uint64_t read_pos_ = 0;       // next record to hand over
  uint64_t committed_pos_ = 0;  // what the kernel has been told
  uint64_t malformed_ = 0;
  std::string kernel_boot_id_;
  uint32_t map_id_ = 0;
};

}  // namespace latch::agent
