#include "agent/spool.h"

#include <capnp/message.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "agent/spool_frame.h"
#include "lib/logging/logger.h"
#include "lib/tlog/hex.h"
#include "schemas/canonical.h"
#include "schemas/event.capnp.h"
#include "schemas/ledger.capnp.h"

namespace latch::agent {
namespace {

constexpr size_t kReadChunk = 1 << 20;
constexpr uint32_t kMarkFrameKind = spool_frame::kMarkKind;
constexpr uint32_t kMaxPayload = spool_frame::kMaxPayload;
constexpr uint32_t kLossKind = static_cast<uint32_t>(schema::RecordKind::LOSS);
constexpr char kAcknowledgedFile[] = "acknowledged";

// The first lost sequence a loss record declares (0: none, or not a loss).
uint64_t DeclaredFirstLost(std::string_view payload) {
  uint64_t first = 0;
  (void)schema::ReadCanonical<schema::LossEvent>(payload, "loss", [&](auto loss) {
    first = loss.getFirstLostSequence();
    return Status::Ok();
  });
  return first;
}

std::string Hex(const std::string& bytes) {
  return tlog::HexEncode({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
}

bool Unhex(std::string_view hex, std::string* out) {
  if (hex.size() % 2) return false;
  out->clear();
  for (size_t i = 0; i < hex.size(); i += 2) {
    auto nibble = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    int hi = nibble(hex[i]), lo = nibble(hex[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi << 4 | lo));
  }
  return true;
}

// Whether `r` may follow records up to expect-1: the next record, a mark of
// the records before it, or a loss record standing for lost records from
// `expect` on (spoolCorrupt; see LossEvent.firstLostSequence).
bool FitsSequence(const SpooledRecord& r, uint64_t expect) {
  if (r.kind == spool_frame::kMarkKind) return r.sequence + 1 == expect;
  if (r.sequence == expect) return true;
  return r.kind == kLossKind && r.sequence > expect && DeclaredFirstLost(r.payload) == expect;
}

// The loss record written where a damaged region held the records
// first..last.
std::string CorruptLossPayload(uint64_t first, uint64_t last) {
  capnp::MallocMessageBuilder m;
  auto loss = m.initRoot<schema::LossEvent>();
  loss.setKind(schema::LossKind::SPOOL_CORRUPT);
  loss.setCount(last - first + 1);
  loss.setTotal(last - first + 1);
  loss.setFirstLostSequence(first);
  return schema::CanonicalBytes(loss.asReader());
}

}  // namespace

Status Spool::Open(const SpoolOptions& options, const std::string& boot_id,
                   std::unique_ptr<Spool>* out) {
  if (boot_id.size() != 16) return Status::InvalidArgument("spool boot id must be 16 bytes");
  if (options.dir.empty()) return Status::InvalidArgument("spool directory is not set");
  if (::mkdir(options.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("creating spool directory " + options.dir, errno);
  }
  std::unique_ptr<Spool> s(new Spool());
  s->options_ = options;
  s->boot_id_ = boot_id;
  LATCH_RETURN_IF_ERROR(s->Recover());
  *out = std::move(s);
  return Status::Ok();
}

Spool::~Spool() = default;

Status Spool::Recover() {
  DIR* d = ::opendir(options_.dir.c_str());
  if (d == nullptr) return Status::FromErrno("reading spool directory " + options_.dir, errno);
  std::vector<std::pair<int64_t, Segment>> found;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    // <32 hex>-<20 digits>.seg
    if (name.size() != 32 + 1 + 20 + 4 || name.compare(name.size() - 4, 4, ".seg") != 0) continue;
    Segment seg;
    seg.name = name;
    if (!Unhex(std::string_view(name).substr(0, 32), &seg.boot_id) || name[32] != '-') continue;
    seg.first_sequence = std::strtoull(name.c_str() + 33, nullptr, 10);
    struct stat st {};
    int64_t mtime = 0;
    if (::stat((options_.dir + "/" + name).c_str(), &st) == 0) {
      mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
    }
    found.emplace_back(mtime, std::move(seg));
  }
  ::closedir(d);
  // Oldest first: that is the order they are resent in.
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : a.second.name < b.second.name;
  });
  LoadAcknowledged();
  std::map<std::string, uint64_t> highest;  // boot -> the last sequence its segments hold
  for (auto& [mtime, seg] : found) {
    LATCH_RETURN_IF_ERROR(RecoverSegment(&seg));
    highest[seg.boot_id] = std::max(highest[seg.boot_id], seg.last_sequence);
  }
  // An acknowledgement past every record a boot's segments hold claims
  // records that never were (a damaged digit): trusted, it would skip
  // records unsent. The file is dropped; everything is resent instead.
  for (const auto& [boot, through] : acked_) {
    auto h = highest.find(boot);
    if (h != highest.end() && through > h->second) {
      logging::Default().Warn(
          "spool acknowledgement file claims more than the spool holds; "
          "resending what it held",
          {{"dir", options_.dir}, {"acknowledged", through}, {"held", h->second}});
      acked_.clear();
      acked_dirty_ = true;
      break;
    }
  }
  for (auto& [mtime, seg] : found) {
    if (seg.last_sequence == 0 || seg.last_sequence <= Acked(seg.boot_id)) {
      // Nothing in it, or all of it is in the ledger already.
      ::unlink((options_.dir + "/" + seg.name).c_str());
      continue;
    }
    bytes_ += seg.size;
    segments_.push_back(std::move(seg));
  }
  // Boots with nothing left here need no line.
  for (auto it = acked_.begin(); it != acked_.end();) {
    bool held = std::any_of(segments_.begin(), segments_.end(),
                            [&](const Segment& seg) { return seg.boot_id == it->first; });
    if (held) {
      ++it;
    } else {
      it = acked_.erase(it);
      acked_dirty_ = true;
    }
  }
  return Status::Ok();
}

void Spool::LoadAcknowledged() {
  std::string text;
  Status s = storage::ReadWholeFile(options_.dir + "/" + kAcknowledgedFile, &text);
  if (!s.ok()) return;  // none yet, or unreadable: records are resent, never lost
  auto damaged = [&] {
    logging::Default().Warn("spool acknowledgement file is damaged; resending what it held",
                            {{"dir", options_.dir}});
  };
  size_t at = 0;
  std::map<std::string, uint64_t> read;
  while (at < text.size()) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) break;  // a line without its end is not trusted
    std::string_view line(text.data() + at, end - at);
    at = end + 1;
    std::string boot;
    if (line.size() < 34 || line[32] != ' ' || !Unhex(line.substr(0, 32), &boot)) {
      return damaged();
    }
    std::string digits(line.substr(33));
    char* stop = nullptr;
    errno = 0;
    unsigned long long through = std::strtoull(digits.c_str(), &stop, 10);
    if (errno != 0 || stop != digits.c_str() + digits.size() || digits.empty()) {
      return damaged();
    }
    read[boot] = through;
  }
  acked_ = std::move(read);
}

Status Spool::SaveAcknowledged() {
  if (!acked_dirty_) return Status::Ok();
  std::string text;
  for (const auto& [boot, through] : acked_) {
    text += Hex(boot) + " " + std::to_string(through) + "\n";
  }
  LATCH_RETURN_IF_ERROR(storage::WriteFileAtomically(options_.dir, kAcknowledgedFile, text, 0600));
  acked_dirty_ = false;
  return Status::Ok();
}

Status Spool::Find(const std::string& boot_id, uint64_t sequence, SpooledRecord* out) const {
  for (const Segment& seg : segments_) {
    if (seg.boot_id != boot_id || sequence < seg.first_sequence || sequence > seg.last_sequence) {
      continue;
    }
    storage::AppendFile f;
    LATCH_RETURN_IF_ERROR(
        storage::AppendFile::Open(options_.dir + "/" + seg.name, true, false, &f));
    std::string data(seg.size, '\0');
    LATCH_RETURN_IF_ERROR(f.ReadAt(0, {reinterpret_cast<uint8_t*>(data.data()), data.size()}));
    size_t offset = seg.data_start;
    while (offset < data.size()) {
      size_t n = spool_frame::Parse(seg.version, data.data() + offset, data.size() - offset, out);
      if (n == 0) break;
      offset += n;
      if (out->kind != kMarkFrameKind && out->sequence == sequence) return Status::Ok();
    }
  }
  return Status::NotFound("record " + std::to_string(sequence) + " is not in the spool");
}

Status Spool::RecoverSegment(Segment* seg) {
  storage::AppendFile f;
  LATCH_RETURN_IF_ERROR(
      storage::AppendFile::Open(options_.dir + "/" + seg->name, false, false, &f));
  std::string data;
  data.resize(f.size());
  LATCH_RETURN_IF_ERROR(f.ReadAt(0, {reinterpret_cast<uint8_t*>(data.data()), data.size()}));
  bool empty = false;
  spool_frame::Layout layout = spool_frame::DetectLayout(
      std::string_view(data).substr(0, spool_frame::kMagic.size()), &empty);
  seg->version = layout.version;
  seg->data_start = layout.data_start;
  if (empty) return Status::Ok();  // a start that died before its magic was whole
  uint64_t offset = layout.data_start;
  uint64_t expect = seg->first_sequence;
  // Version 2 only: the file as it will be once damaged regions are replaced
  // by the loss records that stand for them (built only if there are any).
  std::string repaired;
  bool damaged = false;
  uint64_t copied_to = 0;  // data[0, copied_to) is in `repaired`
  SpooledRecord r;
  while (offset < data.size()) {
    size_t n = spool_frame::Parse(layout.version, data.data() + offset, data.size() - offset, &r);
    if (n != 0 && FitsSequence(r, expect)) {
      if (r.kind == kMarkFrameKind) {
        recovered_mark_ = r.payload;  // a mark follows the records it was written with
      } else {
        seg->last_sequence = r.sequence;
        expect = r.sequence + 1;
      }
      offset += n;
      continue;
    }
    // A bad frame. Without checksums (version 1) it cannot be told from a
    // torn tail; with them, a good frame further on says it is damage.
    size_t next = layout.version == 1 ? std::string::npos
                                      : spool_frame::FindNextGood(data, offset + 1, expect, &r);
    if (next == std::string::npos) break;  // a torn tail
    repaired.append(data, copied_to, offset - copied_to);
    damaged = true;
    uint64_t resume = r.kind == kMarkFrameKind ? r.sequence + 1 : r.sequence;
    if (resume > expect) {
      // Records expect..resume-1 were in the damaged bytes: one loss record,
      // under the last of their sequences, stands for them all.
      spool_frame::Append(&repaired, kLossKind, resume - 1, 0,
                          CorruptLossPayload(expect, resume - 1));
      corrupt_records_lost_ += resume - expect;
      seg->last_sequence = resume - 1;
      logging::Default().Alert(
          "spool segment is damaged; skipped to the next good record and recorded the loss",
          {{"segment", seg->name},
           {"bytes", next - offset},
           {"records", resume - expect},
           {"first_sequence", expect},
           {"last_sequence", resume - 1},
           {"hint", "the disk under state_dir may be failing"}});
    } else {
      logging::Default().Warn("spool segment had a damaged mark; skipped it",
                              {{"segment", seg->name}, {"bytes", next - offset}});
    }
    expect = resume;
    offset = next;
    copied_to = next;
  }
  if (damaged) {
    repaired.append(data, copied_to, offset - copied_to);
    LATCH_RETURN_IF_ERROR(storage::WriteFileAtomically(options_.dir, seg->name, repaired, 0600)
                              .WithContext("rewriting a damaged spool segment"));
    seg->size = repaired.size();
    return Status::Ok();
  }
  if (offset != data.size()) {
    // A write cut short by a crash: its records were never acknowledged or
    // released from the ring, so they come again; nothing is lost.
    logging::Default().Warn("spool segment had a torn tail; cut it",
                            {{"segment", seg->name}, {"bytes", data.size() - offset}});
    LATCH_RETURN_IF_ERROR(f.Truncate(offset));
  }
  seg->size = offset;
  return Status::Ok();
}

Status Spool::Add(uint32_t kind, int64_t event_time_ns, std::string_view payload, bool use_reserve,
                  uint64_t* sequence) {
  if (payload.size() > kMaxPayload) return Status::InvalidArgument("spool record too large");
  uint64_t frame = spool_frame::HeaderSize(2) + payload.size();
  uint64_t reserve = use_reserve ? options_.reserve_bytes : 0;
  if (bytes() + frame > options_.max_bytes + reserve)
    return Status::ResourceExhausted("spool is full");
  // While the disk refuses writes, what waits for it is held in memory, up to
  // a bound: past it, records are refused (and counted as lost) here too.
  if (buffer_.size() + frame > options_.max_buffered_bytes + reserve) {
    return Status::ResourceExhausted("spool cannot write and its memory buffer is full");
  }
  if (buffered_records_ == 0) buffer_first_sequence_ = next_sequence_;
  spool_frame::Append(&buffer_, kind, next_sequence_, event_time_ns, payload);
  ++buffered_records_;
  *sequence = next_sequence_++;
  return Status::Ok();
}

Status Spool::StartSegment() {
  char seq[21];
  std::snprintf(seq, sizeof(seq), "%020llu",
                static_cast<unsigned long long>(buffer_first_sequence_));
  Segment seg;
  seg.name = Hex(boot_id_) + "-" + seq + ".seg";
  seg.boot_id = boot_id_;
  seg.first_sequence = buffer_first_sequence_;
  LATCH_RETURN_IF_ERROR(
      storage::AppendFile::Open(options_.dir + "/" + seg.name, false, true, &writer_));
  // A file of this name holds no record (records of this boot from this
  // sequence on are all still buffered): what is in it is the stray tail of a
  // start that failed half-way.
  if (writer_.size() != 0) LATCH_RETURN_IF_ERROR(writer_.Truncate(0));
  LATCH_RETURN_IF_ERROR(writer_.Append(
      {reinterpret_cast<const uint8_t*>(spool_frame::kMagic.data()), spool_frame::kMagic.size()}));
  seg.size = spool_frame::kMagic.size();
  bytes_ += seg.size;
  LATCH_RETURN_IF_ERROR(storage::SyncDirectory(options_.dir));
  for (size_t i = 0; i < segments_.size(); ++i) {
    if (segments_[i].name != seg.name) continue;
    bytes_ -= segments_[i].size;
    segments_.erase(segments_.begin() + static_cast<ptrdiff_t>(i));
    if (cursor_segment_ > i) {
      --cursor_segment_;
    } else if (cursor_segment_ == i) {
      cursor_offset_ = 0;
    }
    break;
  }
  segments_.push_back(std::move(seg));
  writing_ = true;
  return Status::Ok();
}

Status Spool::Flush() {
  if (buffer_.empty()) return Status::Ok();
  if (!writing_) {
    Status started = StartSegment();
    if (!started.ok()) {
      return Status::ResourceExhausted("spool cannot start a segment; records kept for a retry: " +
                                       started.message());
    }
  }
  if (!mark_.empty() && buffered_records_ > 0) {
    // After the records, so that a write torn by the agent's death keeps the
    // records rather than a mark claiming more than the file holds.
    spool_frame::Append(&buffer_, kMarkFrameKind, next_sequence_ - 1, 0, mark_);
    mark_.clear();
  }
  Status written =
      writer_.Append({reinterpret_cast<const uint8_t*>(buffer_.data()), buffer_.size()});
  if (!written.ok()) {
    // Disk full or failing. What was written of this flush is cut off again,
    // so the file ends on a whole frame; the records stay buffered and the
    // next Flush tries again (the caller keeps them in the kernel's ring
    // meanwhile). If even the cut fails, this segment is closed: the next
    // flush starts a new one, and the stray bytes are a torn tail to the
    // next Open.
    Status cut = writer_.Truncate(segments_.back().size);
    if (!cut.ok()) writing_ = false;
    return Status::ResourceExhausted("spool write failed; records kept for a retry: " +
                                     written.message());
  }
  Segment& seg = segments_.back();
  seg.size += buffer_.size();
  seg.last_sequence = next_sequence_ - 1;
  bytes_ += buffer_.size();
  buffer_.clear();
  buffered_records_ = 0;
  if (seg.size >= options_.segment_bytes) writing_ = false;  // the next flush rolls over
  return Status::Ok();
}

Status Spool::Sync() { return writing_ ? writer_.Sync() : Status::Ok(); }

uint64_t Spool::Acked(const std::string& boot_id) const {
  auto it = acked_.find(boot_id);
  return it == acked_.end() ? 0 : it->second;
}

Status Spool::NextBatch(size_t max_records, SpoolBatch* out) {
  out->boot_id.clear();
  out->records.clear();
  std::string data;
  SpooledRecord r;
  while (cursor_segment_ < segments_.size() && out->records.size() < max_records) {
    const Segment& seg = segments_[cursor_segment_];
    if (!out->records.empty() && seg.boot_id != out->boot_id) break;  // one boot per batch
    cursor_offset_ = std::max<uint64_t>(cursor_offset_, seg.data_start);
    if (cursor_offset_ >= seg.size) {
      // The segment being written grows: the cursor waits at its end.
      if (writing_ && cursor_segment_ + 1 == segments_.size()) break;
      ++cursor_segment_;
      cursor_offset_ = 0;
      continue;
    }
    storage::AppendFile f;
    LATCH_RETURN_IF_ERROR(
        storage::AppendFile::Open(options_.dir + "/" + seg.name, true, false, &f));
    data.resize(std::min<uint64_t>(kReadChunk, seg.size - cursor_offset_));
    LATCH_RETURN_IF_ERROR(
        f.ReadAt(cursor_offset_, {reinterpret_cast<uint8_t*>(data.data()), data.size()}));
    uint64_t skip = Acked(seg.boot_id);
    auto elsewhere = send_after_.find(seg.boot_id);
    if (elsewhere != send_after_.end()) skip = std::max(skip, elsewhere->second);
    size_t offset = 0;
    while (offset < data.size() && out->records.size() < max_records) {
      size_t n = spool_frame::Parse(seg.version, data.data() + offset, data.size() - offset, &r);
      if (n == 0) {
        if (offset == 0)
          return Status::Corruption("spool segment " + seg.name + " has a bad frame");
        break;  // the frame continues past this chunk
      }
      offset += n;
      if (r.kind == kMarkFrameKind || r.sequence <= skip) continue;
      out->boot_id = seg.boot_id;
      out->records.push_back(r);
    }
    cursor_offset_ += offset;
  }
  return Status::Ok();
}

void Spool::Rewind(const std::map<std::string, uint64_t>& held_elsewhere) {
  cursor_segment_ = 0;
  cursor_offset_ = 0;
  send_after_ = held_elsewhere;
}

Status Spool::Acknowledge(const std::string& boot_id, uint64_t through_sequence) {
  uint64_t& acked = acked_[boot_id];
  if (through_sequence > acked) {
    acked = through_sequence;
    acked_dirty_ = true;
  }
  for (size_t i = 0; i < segments_.size();) {
    const Segment& seg = segments_[i];
    bool being_written = writing_ && i + 1 == segments_.size();
    if (seg.boot_id != boot_id || seg.last_sequence > acked || being_written) {
      ++i;
      continue;
    }
    if (::unlink((options_.dir + "/" + seg.name).c_str()) != 0 && errno != ENOENT) {
      return Status::FromErrno("removing spool segment " + seg.name, errno);
    }
    bytes_ -= seg.size;
    segments_.erase(segments_.begin() + static_cast<ptrdiff_t>(i));
    if (cursor_segment_ > i) {
      --cursor_segment_;
    } else if (cursor_segment_ == i) {
      cursor_offset_ = 0;
    }
  }
  return Status::Ok();
}

uint64_t Spool::unacknowledged() const {
  uint64_t n = buffered_records_;
  for (const Segment& seg : segments_) {
    uint64_t from = std::max(seg.first_sequence, Acked(seg.boot_id) + 1);
    if (seg.last_sequence >= from) n += seg.last_sequence - from + 1;
  }
  return n;
}

}  // namespace latch::agent
