// Spool: the agent's durable queue of records on their way to the collector
// (promise 1). A record gets its sequence number when it enters the spool;
// the spool forgets it only when a verified receipt covers it.
//
// Directory layout: one segment file per run of records of one agent boot,
//   <boot id, 32 hex digits>-<first sequence, 20 digits>.seg
// holding checksummed frames back to back (spool_frame.h has the format).
// A frame of kind kMarkFrameKind is not a record but the writer's mark (see
// SetMark): its sequence is that of the record before it, and it is never sent.
// A damaged region in the middle of a file (a frame that fails its checksum
// with good frames after it) is cut out at Open, and a spoolCorrupt loss
// record takes the place of the records it held (promise 3).
// Segments roll over at `segment_bytes`; a segment is deleted as a whole once
// every record in it is acknowledged. A frame cut short by a crash (the only
// damage a killed writer can leave) is cut off when the spool is opened.
//
// What receipts acknowledged is kept beside the segments, in `acknowledged`
// (one line per boot: <boot id hex> <through sequence>), saved by
// SaveAcknowledged() and read at Open(): a restarted agent does not send again
// what the ledger already holds (it once resent a whole segment, and the
// receipts for those duplicates fell outside its window: issue 13.4). The file
// only ever saves sending work: lost or unreadable, records are resent and
// the collector drops the duplicates.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lib/status/status.h"
#include "lib/storage/append_file.h"

namespace latch::agent {

struct SpoolOptions {
  std::string dir;
  uint64_t max_bytes = 256ull << 20;    // events beyond this are counted as lost
  uint64_t segment_bytes = 8ull << 20;  // roll-over size
  uint64_t reserve_bytes = 1ull << 20;  // room past max_bytes kept for loss records
  // Records buffered but not yet in a segment file, at most: the bound on
  // what waits in memory while the disk refuses writes.
  uint64_t max_buffered_bytes = 4ull << 20;
};

struct SpooledRecord {
  uint64_t sequence = 0;
  uint32_t kind = 0;  // schemas/ledger.capnp RecordKind
  int64_t event_time_ns = 0;
  std::string payload;
};

// Records of one boot, in sequence order, gap-free.
struct SpoolBatch {
  std::string boot_id;  // 16 bytes
  std::vector<SpooledRecord> records;
};

class Spool {
 public:
  // Opens (creating) the spool directory, recovers every segment in it, and
  // starts writing records of `boot_id` (16 bytes) from sequence 1.
  static Status Open(const SpoolOptions& options, const std::string& boot_id,
                     std::unique_ptr<Spool>* out);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Buffers a record of this boot and gives it the next sequence number.
  // ResourceExhausted (nothing buffered, no sequence used) when the spool is
  // at max_bytes; `use_reserve` lets loss records into the reserve above it.
  Status Add(uint32_t kind, int64_t event_time_ns, std::string_view payload, bool use_reserve,
             uint64_t* sequence);
  // Writes what Add() buffered to the segment file in one write: from then on
  // the records survive the agent's death. ResourceExhausted when the disk
  // refuses the write (full, failing): the file is cut back to its last whole
  // frame and the records stay buffered for the next Flush.
  Status Flush();
  // A note that goes into the file after the records of the next Flush that
  // writes any, in the same write: the agent's read position in the kernel's
  // ring buffer, so that a restarted agent knows which records it had already
  // spooled when it was killed before releasing them in the ring.
  void SetMark(std::string_view mark) { mark_.assign(mark); }
  // The last mark Open() found in the directory (empty: none).
  const std::string& recovered_mark() const { return recovered_mark_; }
  // Makes flushed records durable on disk (fdatasync).
  Status Sync();

  // The next records to send, up to `max_records`, all of one boot, after
  // what earlier calls returned since the last Rewind(). Empty: all sent.
  Status NextBatch(size_t max_records, SpoolBatch* out);
  // Sends start again from the first unacknowledged record (a new session),
  // or, for a boot in `held_elsewhere`, after the sequence given there if
  // that is further (what the collector says it holds, not yet proven: the
  // records stay spooled until a receipt proves it).
  void Rewind(const std::map<std::string, uint64_t>& held_elsewhere = {});
  // A verified receipt: every record of `boot_id` up to `through_sequence` is
  // in the ledger. Deletes segments that hold nothing else.
  Status Acknowledge(const std::string& boot_id, uint64_t through_sequence);

  const std::string& boot_id() const { return boot_id_; }
  const std::string& dir() const { return options_.dir; }
  uint64_t next_sequence() const { return next_sequence_; }
  uint64_t bytes() const { return bytes_ + buffer_.size(); }
  uint64_t segment_count() const { return segments_.size(); }
  // Persists what receipts acknowledged, if it changed since the last save.
  Status SaveAcknowledged();
  // The spooled record `sequence` of `boot_id`, if the spool still holds it
  // (NotFound otherwise): a receipt may name any record it holds.
  Status Find(const std::string& boot_id, uint64_t sequence, SpooledRecord* out) const;
  // The highest sequence of `boot_id` a receipt has acknowledged (0: none).
  uint64_t acknowledged(const std::string& boot_id) const { return Acked(boot_id); }
  // Records spooled and not yet acknowledged (all boots).
  uint64_t unacknowledged() const;
  // Records found lost in damaged spool files at Open (each such region is
  // a spoolCorrupt loss record in the spool, standing for its sequences).
  uint64_t corrupt_records_lost() const { return corrupt_records_lost_; }

 private:
  struct Segment {
    std::string name;
    std::string boot_id;
    uint64_t first_sequence = 0;
    uint64_t last_sequence = 0;  // 0: no record yet
    uint64_t size = 0;
    int version = 2;          // of its frames (spool_frame.h)
    uint64_t data_start = 8;  // where its frames start, after the magic
  };
  Spool() = default;
  Status Recover();
  void LoadAcknowledged();
  Status RecoverSegment(Segment* segment);
  Status StartSegment();
  uint64_t Acked(const std::string& boot_id) const;

  SpoolOptions options_;
  std::string boot_id_;
  uint64_t next_sequence_ = 1;
  std::vector<Segment> segments_;  // oldest first; the last one of this boot is being written
  storage::AppendFile writer_;     // the last segment, when it is this boot's
  bool writing_ = false;
  std::string buffer_;  // frames added and not yet flushed
  std::string mark_;    // written after the buffered records at the next Flush
  std::string recovered_mark_;
  uint64_t buffered_records_ = 0;
  uint64_t buffer_first_sequence_ = 0;
  uint64_t bytes_ = 0;                          // bytes in segment files
  std::map<std::string, uint64_t> acked_;       // boot id -> acknowledged through
  std::map<std::string, uint64_t> send_after_;  // boot id -> sends skip up to here (Rewind)
  bool acked_dirty_ = false;                    // acked_ changed since the last save
  uint64_t corrupt_records_lost_ = 0;
  // Send cursor: segment index and byte offset of the next record to send.
  size_t cursor_segment_ = 0;
  uint64_t cursor_offset_ = 0;
};

}  // namespace latch::agent
