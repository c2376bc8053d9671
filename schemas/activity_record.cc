#include "schemas/activity_record.h"

#include <capnp/message.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "schemas/canonical.h"
#include "schemas/event.capnp.h"

namespace latch::record {
namespace {

kj::ArrayPtr<const kj::byte> Bytes(const char* p, size_t n) {
  return {reinterpret_cast<const kj::byte*>(p), n};
}

template <typename T>
Status Fixed(std::string_view raw, const char* what, T* out) {
  if (raw.size() != sizeof(T)) {
    return Status::Corruption(std::string("activity ") + what + " record of " +
                              std::to_string(raw.size()) + " bytes, expected " +
                              std::to_string(sizeof(T)));
  }
  std::memcpy(out, raw.data(), sizeof(T));
  return Status::Ok();
}

// A record the kernel sends only as long as its data: at least the fixed
// part (up to `data_offset`), at most the whole struct; the rest zero.
template <typename T>
Status Variable(std::string_view raw, size_t data_offset, const char* what, T* out) {
  if (raw.size() < data_offset || raw.size() > sizeof(T)) {
    return Status::Corruption(std::string("activity ") + what + " record of a bad size");
  }
  *out = T{};
  std::memcpy(out, raw.data(), raw.size());
  return Status::Ok();
}

// Kernel bytes (paths, arguments, comm) as text for JSON: ASCII as is, other
// bytes as the code points U+0080..U+00FF, so nothing is lost and the text is
// always valid UTF-8 (as the decision records' JSON does it).
std::string KernelText(const kj::ArrayPtr<const kj::byte>& bytes) {
  std::string out;
  out.reserve(bytes.size());
  for (kj::byte b : bytes) {
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
    } else {
      out.push_back(static_cast<char>(0xc0 | (b >> 6)));
      out.push_back(static_cast<char>(0x80 | (b & 0x3f)));
    }
  }
  return out;
}

std::string Hex16(const kj::ArrayPtr<const kj::byte>& b) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (kj::byte c : b) {
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

// IORING_OP_* by number, as of Linux 6.18 (slot 63 also holds anything newer).
const char* IoUringOpName(uint32_t op) {
  static const char* const kNames[] = {"nop",
                                       "readv",
                                       "writev",
                                       "fsync",
                                       "read_fixed",
                                       "write_fixed",
                                       "poll_add",
                                       "poll_remove",
                                       "sync_file_range",
                                       "sendmsg",
                                       "recvmsg",
                                       "timeout",
                                       "timeout_remove",
                                       "accept",
                                       "async_cancel",
                                       "link_timeout",
                                       "connect",
                                       "fallocate",
                                       "openat",
                                       "close",
                                       "files_update",
                                       "statx",
                                       "read",
                                       "write",
                                       "fadvise",
                                       "madvise",
                                       "send",
                                       "recv",
                                       "openat2",
                                       "epoll_ctl",
                                       "splice",
                                       "provide_buffers",
                                       "remove_buffers",
                                       "tee",
                                       "shutdown",
                                       "renameat",
                                       "unlinkat",
                                       "mkdirat",
                                       "symlinkat",
                                       "linkat",
                                       "msg_ring",
                                       "fsetxattr",
                                       "setxattr",
                                       "fgetxattr",
                                       "getxattr",
                                       "socket",
                                       "uring_cmd",
                                       "send_zc",
                                       "sendmsg_zc",
                                       "read_multishot",
                                       "waitid",
                                       "futex_wait",
                                       "futex_wake",
                                       "futex_waitv",
                                       "fixed_fd_install",
                                       "ftruncate",
                                       "bind",
                                       "listen",
                                       "recv_zc",
                                       "epoll_wait",
                                       "readv_fixed",
                                       "writev_fixed",
                                       "pipe"};
  static_assert(sizeof(kNames) / sizeof(kNames[0]) == LATCH_URING_OPCODES - 1);
  return op < LATCH_URING_OPCODES - 1 ? kNames[op] : "newer";
}

}  // namespace

const char* ActivityKindName(uint32_t kind) {
  switch (kind) {
    case LATCH_ACT_EXEC:
      return "exec";
    case LATCH_ACT_EXIT:
      return "exit";
    case LATCH_ACT_CONNECT:
      return "connect";
    case LATCH_ACT_OPEN:
      return "open";
    case LATCH_ACT_CRED:
      return "credentials";
    case LATCH_ACT_THROTTLE:
      return "throttle";
    case LATCH_ACT_URING_SETUP:
      return "io_uring_setup";
    case LATCH_ACT_URING_OPS:
      return "io_uring_ops";
  }
  return "unknown";
}

Status EncodeActivityEvent(std::string_view raw, std::string* out, const ArgsRedactor* redactor,
                           bool* redacted) {
  if (redacted != nullptr) *redacted = false;
  latch_activity_header h;
  if (raw.size() < sizeof(h)) return Status::Corruption("activity record shorter than its header");
  std::memcpy(&h, raw.data(), sizeof(h));
  if (h.size != raw.size()) return Status::Corruption("activity record size disagrees");
  capnp::MallocMessageBuilder message;
  auto r = message.initRoot<schema::ActivityEvent>();
  r.setKtimeBootNs(h.ktime_boot_ns);
  r.setPid(h.pid);
  r.setTgid(h.tgid);
  r.setPpid(h.ppid);
  r.setUid(h.uid);
  r.setEuid(h.euid);
  r.setGid(h.gid);
  r.setCgroupId(h.cgroup_id);
  r.setComm(Bytes(h.comm, strnlen(h.comm, sizeof(h.comm))));
  r.setGrantId(h.grant_id);
  if (h.via == LATCH_VIA_IO_URING) {
    if (h.kind != LATCH_ACT_CONNECT && h.kind != LATCH_ACT_OPEN) {
      return Status::Corruption("activity record of kind " + std::to_string(h.kind) +
                                " claims to come through io_uring");
    }
    r.setViaIoUring(true);
  } else if (h.via != LATCH_VIA_SYSCALL) {
    return Status::Corruption("activity record with an unknown origin " + std::to_string(h.via));
  }
  switch (h.kind) {
    case LATCH_ACT_EXEC: {
      constexpr size_t kData = offsetof(latch_activity_exec, data);
      latch_activity_exec e;
      LATCH_RETURN_IF_ERROR(Variable(raw, kData, "exec", &e));
      if (kData + e.path_len + e.args_len != raw.size()) {
        return Status::Corruption("activity exec record's lengths disagree with its size");
      }
      auto x = r.initExec();
      x.setPath(Bytes(e.data, e.path_len));
      // argv: each argument ends in NUL; a cut-off last one has none.
      std::vector<std::string> args;
      std::string_view rest(e.data + e.path_len, e.args_len);
      while (!rest.empty()) {
        size_t nul = rest.find('\0');
        args.emplace_back(rest.substr(0, nul));
        rest = nul == std::string_view::npos ? std::string_view() : rest.substr(nul + 1);
      }
      if (redactor != nullptr && redactor->Redact(std::string_view(e.data, e.path_len), &args)) {
        x.setArgsRedacted(true);
        if (redacted != nullptr) *redacted = true;
      }
      auto list = x.initArgs(static_cast<unsigned>(args.size()));
      for (size_t i = 0; i < args.size(); ++i) {
        list.set(static_cast<unsigned>(i), Bytes(args[i].data(), args[i].size()));
      }
      x.setArgsTruncated(e.args_truncated != 0);
      break;
    }
    case LATCH_ACT_EXIT: {
      latch_activity_exit e;
      LATCH_RETURN_IF_ERROR(Fixed(raw, "exit", &e));
      r.initExit().setStatus(e.exit_code);
      break;
    }
    case LATCH_ACT_CONNECT: {
      latch_activity_connect e;
      LATCH_RETURN_IF_ERROR(Fixed(raw, "connect", &e));
      auto c = r.initConnect();
      c.setResult(e.result);
      c.setFamily(e.family);
      c.setDestination(Bytes(reinterpret_cast<const char*>(e.addr), sizeof(e.addr)));
      c.setPort(e.port);
      break;
    }
    case LATCH_ACT_OPEN: {
      constexpr size_t kPath = offsetof(latch_activity_open, path);
      latch_activity_open e;
      LATCH_RETURN_IF_ERROR(Variable(raw, kPath, "open", &e));
      if (kPath + e.path_len != raw.size()) {
        return Status::Corruption("activity open record's path length disagrees with its size");
      }
      auto o = r.initOpen();
      o.setResult(e.result);
      o.setPath(Bytes(e.path, e.path_len));
      o.setFlags(e.flags);
      o.setMode(e.mode);
      break;
    }
    case LATCH_ACT_CRED: {
      latch_activity_cred e;
      LATCH_RETURN_IF_ERROR(Fixed(raw, "credentials", &e));
      auto c = r.initCredentials();
      c.setResult(e.result);
      c.setSyscall(e.syscall_nr);
      c.setOldUid(e.old_uid);
      c.setOldEuid(e.old_euid);
      c.setOldGid(e.old_gid);
      c.setOldEgid(e.old_egid);
      c.setNewUid(e.new_uid);
      c.setNewEuid(e.new_euid);
      c.setNewGid(e.new_gid);
      c.setNewEgid(e.new_egid);
      c.setOldCapEffective(e.old_cap_effective);
      c.setNewCapEffective(e.new_cap_effective);
      break;
    }
    case LATCH_ACT_THROTTLE: {
      latch_activity_throttle e;
      LATCH_RETURN_IF_ERROR(Fixed(raw, "throttle", &e));
      auto t = r.initThrottle();
      t.setWindowStartNs(e.window_start_ns);
      t.setWindowEndNs(e.window_end_ns);
      unsigned n = 0;
      for (uint32_t k = 1; k < LATCH_ACT_KINDS; ++k) n += e.suppressed[k] != 0;
      auto list = t.initSuppressed(n);
      unsigned i = 0;
      for (uint32_t k = 1; k < LATCH_ACT_KINDS; ++k) {
        if (e.suppressed[k] == 0) continue;
        list[i].setKind(ActivityKindName(k));
        list[i].setCount(e.suppressed[k]);
        ++i;
      }
      break;
    }
    case LATCH_ACT_URING_SETUP: {
      latch_activity_uring_setup e;
      LATCH_RETURN_IF_ERROR(Fixed(raw, "io_uring setup", &e));
      auto u = r.initIoUringSetup();
      u.setFd(e.fd);
      u.setSqEntries(e.sq_entries);
      u.setCqEntries(e.cq_entries);
      u.setFlags(e.flags);
      break;
    }
    case LATCH_ACT_URING_OPS: {
      latch_activity_uring_ops e;
      LATCH_RETURN_IF_ERROR(Fixed(raw, "io_uring operations", &e));
      auto u = r.initIoUringOps();
      u.setWindowStartNs(e.window_start_ns);
      u.setWindowEndNs(e.window_end_ns);
      unsigned n = 0;
      for (uint32_t op = 0; op < LATCH_URING_OPCODES; ++op) n += e.submitted[op] != 0;
      auto list = u.initSubmitted(n);
      unsigned i = 0;
      for (uint32_t op = 0; op < LATCH_URING_OPCODES; ++op) {
        if (e.submitted[op] == 0) continue;
        list[i].setOpcode(static_cast<uint8_t>(op));
        list[i].setName(IoUringOpName(op));
        list[i].setCount(e.submitted[op]);
        ++i;
      }
      break;
    }
    default:
      return Status::Corruption("activity record of unknown kind " + std::to_string(h.kind));
  }
  *out = schema::CanonicalBytes(r.asReader());
  return Status::Ok();
}

Status ViewActivityEvent(std::string_view canonical, ActivitySummary* out, nlohmann::json* detail) {
  return schema::ReadCanonical<schema::ActivityEvent>(
      std::string(canonical), "activity event", [&](schema::ActivityEvent::Reader r) {
        using A = schema::ActivityEvent;
        ActivitySummary s;
        s.uid = r.getUid();
        s.grant_id = r.getGrantId();
        nlohmann::json j;
        if (detail != nullptr) {
          j = {{"ktime_boot_ns", r.getKtimeBootNs()},
               {"pid", r.getPid()},
               {"tgid", r.getTgid()},
               {"ppid", r.getPpid()},
               {"uid", r.getUid()},
               {"euid", r.getEuid()},
               {"gid", r.getGid()},
               {"cgroup_id", r.getCgroupId()},
               {"comm", KernelText(r.getComm())},
               {"grant_id", r.getGrantId()}};
          if (r.getViaIoUring()) j["via"] = "io_uring";
        }
        switch (r.which()) {
          case A::EXEC: {
            s.kind = "exec";
            if (!detail) break;
            auto x = r.getExec();
            nlohmann::json args = nlohmann::json::array();
            for (auto a : x.getArgs()) args.push_back(KernelText(a));
            j["path"] = KernelText(x.getPath());
            j["args"] = std::move(args);
            j["args_truncated"] = x.getArgsTruncated();
            if (x.getArgsRedacted()) j["args_redacted"] = true;
            break;
          }
          case A::EXIT:
            s.kind = "exit";
            if (detail) j["status"] = r.getExit().getStatus();
            break;
          case A::CONNECT: {
            s.kind = "connect";
            if (!detail) break;
            auto c = r.getConnect();
            j["result"] = c.getResult();
            j["family"] = c.getFamily();
            j["destination"] = Hex16(c.getDestination());
            j["port"] = c.getPort();
            break;
          }
          case A::OPEN: {
            s.kind = "open";
            if (!detail) break;
            auto o = r.getOpen();
            j["result"] = o.getResult();
            j["path"] = KernelText(o.getPath());
            j["flags"] = o.getFlags();
            j["mode"] = o.getMode();
            break;
          }
          case A::CREDENTIALS: {
            s.kind = "credentials";
            if (!detail) break;
            auto c = r.getCredentials();
            j["result"] = c.getResult();
            j["syscall"] = c.getSyscall();
            j["old"] = {{"uid", c.getOldUid()},
                        {"euid", c.getOldEuid()},
                        {"gid", c.getOldGid()},
                        {"egid", c.getOldEgid()},
                        {"cap_effective", c.getOldCapEffective()}};
            j["new"] = {{"uid", c.getNewUid()},
                        {"euid", c.getNewEuid()},
                        {"gid", c.getNewGid()},
                        {"egid", c.getNewEgid()},
                        {"cap_effective", c.getNewCapEffective()}};
            break;
          }
          case A::THROTTLE: {
            s.kind = "throttle";
            if (!detail) break;
            auto t = r.getThrottle();
            nlohmann::json suppressed = nlohmann::json::object();
            for (auto c : t.getSuppressed())
              suppressed[KernelText(c.getKind().asBytes())] = c.getCount();
            j["window_start_ns"] = t.getWindowStartNs();
            j["window_end_ns"] = t.getWindowEndNs();
            j["suppressed"] = std::move(suppressed);
            break;
          }
          case A::IO_URING_SETUP: {
            s.kind = "io_uring_setup";
            if (!detail) break;
            auto u = r.getIoUringSetup();
            j["fd"] = u.getFd();
            j["sq_entries"] = u.getSqEntries();
            j["cq_entries"] = u.getCqEntries();
            j["flags"] = u.getFlags();
            break;
          }
          case A::IO_URING_OPS: {
            s.kind = "io_uring_ops";
            if (!detail) break;
            auto u = r.getIoUringOps();
            nlohmann::json submitted = nlohmann::json::object();
            for (auto c : u.getSubmitted())
              submitted[KernelText(c.getName().asBytes())] = c.getCount();
            j["window_start_ns"] = u.getWindowStartNs();
            j["window_end_ns"] = u.getWindowEndNs();
            j["submitted"] = std::move(submitted);
            break;
          }
          default:
            s.kind = "activity";  // a kind newer than this reader
            break;
        }
        if (detail != nullptr) {
          j["activity"] = s.kind;
          *detail = std::move(j);
        }
        *out = std::move(s);
        return Status::Ok();
      });
}

}  // namespace latch::record
