#include "agent/guard.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <thread>

#include "agent/kernel_fs.h"
#include "agent/libbpf_log.h"
#include "agent/percpu_counters.h"
#include "guard.skel.h"

namespace latch::agent {
namespace {

struct ProgramPin {
  const char* link_name;  // pin file of the program's bpf_link
  bpf_program* (*program)(latch_guard*);
  bool cuts_established = false;  // attached only with GuardOptions::cut_established
};

const ProgramPin kPrograms[] = {
    {"link_connect4", [](latch_guard* s) { return s->progs.latch_connect4; }},
    {"link_connect6", [](latch_guard* s) { return s->progs.latch_connect6; }},
    {"link_sendmsg4", [](latch_guard* s) { return s->progs.latch_sendmsg4; }},
    {"link_sendmsg6", [](latch_guard* s) { return s->progs.latch_sendmsg6; }},
    {"link_egress", [](latch_guard* s) { return s->progs.latch_egress; }, true},
    {"link_ingress", [](latch_guard* s) { return s->progs.latch_ingress; }, true},
};

// Every map is pinned, so a restarted agent and the running programs share them.
const char* const kMapNames[] = {"latch_resources", "latch_grants", "latch_ports",
                                 "latch_counters",  "latch_events", "latch_agent_state",
                                 "latch_local"};

// Maps earlier versions pinned and this one no longer uses: removed once the
// new programs are attached (an upgrade), and by Uninstall.
const char* const kRetiredMapNames[] = {"latch_sock_grants"};

Status LibbpfError(const std::string& what, int err) {
  return Status::FromErrno(what, err < 0 ? -err : err);
}

template <size_t N>
Status RemovePins(const std::string& pin_dir, const char* const (&names)[N]) {
  for (const char* name : names) {
    std::string path = pin_dir + "/" + name;
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return Status::FromErrno("unlink " + path, errno);
  }
  return Status::Ok();
}

}  // namespace

Status ProbeKernelFeatures() {
  if (!std::filesystem::exists("/sys/kernel/btf/vmlinux")) {
    return Status::FailedPrecondition(
        "this kernel has no BTF (/sys/kernel/btf/vmlinux); the guard needs CONFIG_DEBUG_INFO_BTF");
  }
  struct {
    bpf_prog_type type;
    const char* what;
  } progs[] = {
      {BPF_PROG_TYPE_CGROUP_SOCK_ADDR, "cgroup sock_addr programs (connect/sendmsg guards)"},
      {BPF_PROG_TYPE_CGROUP_SKB, "cgroup_skb programs (cutting connections at grant end)"}};
  for (const auto& p : progs) {
    if (libbpf_probe_bpf_prog_type(p.type, nullptr) != 1) {
      return Status::FailedPrecondition(std::string("this kernel lacks ") + p.what);
    }
  }
  struct {
    bpf_map_type type;
    const char* what;
  } maps[] = {{BPF_MAP_TYPE_LPM_TRIE, "LPM trie maps (protected CIDRs)"},
              {BPF_MAP_TYPE_RINGBUF, "ring buffer maps (decision events)"}};
  for (const auto& m : maps) {
    if (libbpf_probe_bpf_map_type(m.type, nullptr) != 1) {
      return Status::FailedPrecondition(std::string("this kernel lacks ") + m.what);
    }
  }
  return Status::Ok();
}

Status Guard::Install(const GuardOptions& options, std::unique_ptr<Guard>* out) {
  RouteLibbpfMessagesToLog();
  LATCH_RETURN_IF_ERROR(ProbeKernelFeatures().WithContext("probe"));
  std::unique_ptr<Guard> g(new Guard());
  g->options_ = options;
  LATCH_RETURN_IF_ERROR(CgroupId(options.cgroup_dir, &g->cgroup_id_).WithContext("guard cgroup"));
  if (options.ring_bytes < 4096 || (options.ring_bytes & (options.ring_bytes - 1)) != 0) {
    return Status::InvalidArgument("ring buffer size " + std::to_string(options.ring_bytes) +
                                   " is not a power of two of at least 4096");
  }
  if (!IsOnBpffs(options.pin_dir)) {
    return Status::InvalidArgument("pin directory " + options.pin_dir + " is not on a bpffs");
  }
  LATCH_RETURN_IF_ERROR(g->Open().WithContext("open"));
  LATCH_RETURN_IF_ERROR(g->Configure().WithContext("configure"));
  LATCH_RETURN_IF_ERROR(g->Load().WithContext("load"));
  LATCH_RETURN_IF_ERROR(g->Attach().WithContext("attach"));
  *out = std::move(g);
  return Status::Ok();
}

Guard::~Guard() {
  // Closing link fds does not detach pinned links: enforcement stays.
  for (const AttachedLink& a : links_) bpf_link__destroy(a.link);
  if (skel_ != nullptr) latch_guard__destroy(skel_);
}

Status Guard::Open() {
  skel_ = latch_guard__open();
  if (skel_ == nullptr) return LibbpfError("opening the BPF object", errno);
  return Status::Ok();
}

Status Guard::Configure() {
  skel_->rodata->latch_wakeup_bytes = options_.wakeup_bytes;
  int err = bpf_map__set_max_entries(skel_->maps.latch_events, options_.ring_bytes);
  if (err != 0) return LibbpfError("sizing the event ring buffer", err);
  for (const char* name : kMapNames) {
    bpf_map* m = bpf_object__find_map_by_name(skel_->obj, name);
    if (m == nullptr)
      return Status::FailedPrecondition(std::string("BPF object has no map ") + name);
    std::string path = options_.pin_dir + "/" + name;
    err = bpf_map__set_pin_path(m, path.c_str());
    if (err != 0) return LibbpfError("setting pin path " + path, err);
  }
  return Status::Ok();
}

Status Guard::Load() {
  int err = latch_guard__load(skel_);
  if (err != 0) {
    return LibbpfError("loading the guard programs (a pinned map of another layout under " +
                           options_.pin_dir + " also fails here)",
                       err);
  }
  return Status::Ok();
}

Status Guard::Attach() {
  int cgroup_fd = ::open(options_.cgroup_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgroup_fd < 0) return Status::FromErrno("open cgroup " + options_.cgroup_dir, errno);
  Status status;
  int adopted = 0;
  for (const ProgramPin& p : kPrograms) {
    std::string path = options_.pin_dir + "/" + p.link_name;
    bpf_program* prog = p.program(skel_);
    bpf_link* link = nullptr;
    if (p.cuts_established && !options_.cut_established) {
      // Not wanted in this mode: remove a link a previous start left attached.
      if (std::filesystem::exists(path)) {
        link = bpf_link__open(path.c_str());
        int err = link == nullptr ? -errno : bpf_link__detach(link);
        if (link != nullptr) bpf_link__destroy(link);
        if (err == 0 && ::unlink(path.c_str()) != 0) err = -errno;
        if (err != 0) {
          status = LibbpfError("removing " + path + " (cut_established_connections is off)", err);
          break;
        }
      }
      continue;
    }
    if (std::filesystem::exists(path)) {
      // Restart or upgrade: keep the attachment, swap in this build's program.
      link = bpf_link__open(path.c_str());
      if (link == nullptr) {
        status = LibbpfError("opening pinned link " + path, errno);
        break;
      }
      bpf_link_info info{};
      uint32_t len = sizeof(info);
      if (bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) == 0 &&
          info.cgroup.cgroup_id != cgroup_id_) {
        bpf_link__destroy(link);
        status = Status::FailedPrecondition(
            "the guard pinned at " + options_.pin_dir + " is attached to cgroup id " +
            std::to_string(info.cgroup.cgroup_id) + ", not to " + options_.cgroup_dir +
            "; run `latch-agent uninstall` first to move it");
        break;
      }
      int err = bpf_link__update_program(link, prog);
      if (err != 0) {
        bpf_link__destroy(link);
        status = LibbpfError("switching pinned link " + path + " to the new program", err);
        break;
      }
      ++adopted;
    } else {
      link = bpf_program__attach_cgroup(prog, cgroup_fd);
      if (link == nullptr) {
        status = LibbpfError(
            "attaching " + std::string(bpf_program__name(prog)) + " to " + options_.cgroup_dir,
            errno);
        break;
      }
      int err = bpf_link__pin(link, path.c_str());
      if (err != 0) {
        bpf_link__destroy(link);
        status = LibbpfError("pinning link " + path, err);
        break;
      }
    }
    links_.push_back({p.link_name, prog, link});
  }
  ::close(cgroup_fd);
  adopted_ = adopted > 0;
  if (status.ok()) status = RemovePins(options_.pin_dir, kRetiredMapNames);
  return status;
}

Status Guard::Uninstall(const std::string& pin_dir, const std::function<Status()>& nested) {
  std::error_code ec;
  if (!std::filesystem::exists(pin_dir, ec)) return Status::NotFound(pin_dir + " does not exist");
  // An agent still running puts a detached guard back (issue 13.7) and may
  // pin a link again between our unlinking and rmdir: detach again then.
  // It re-pins maps and then links over some milliseconds (longer on a
  // loaded machine: CI once saw a second's worth of passes all lose): passes
  // are spaced, for up to about five seconds.
  Status s;
  for (int attempt = 0; attempt < 100; ++attempt) {
    bool repinned = false;
    if (nested) LATCH_RETURN_IF_ERROR(nested());
    s = UninstallOnce(pin_dir, &repinned);
    if (!repinned) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return s;
}

Status Guard::UninstallOnce(const std::string& pin_dir, bool* repinned) {
  std::error_code ec;
  for (const ProgramPin& p : kPrograms) {
    std::string path = pin_dir + "/" + p.link_name;
    if (!std::filesystem::exists(path, ec)) continue;
    bpf_link* link = bpf_link__open(path.c_str());
    if (link == nullptr) return LibbpfError("opening pinned link " + path, errno);
    int err = bpf_link__detach(link);
    bpf_link__destroy(link);
    if (err != 0) return LibbpfError("detaching " + path, err);
    if (::unlink(path.c_str()) != 0) return Status::FromErrno("unlink " + path, errno);
  }
  LATCH_RETURN_IF_ERROR(RemovePins(pin_dir, kMapNames));
  LATCH_RETURN_IF_ERROR(RemovePins(pin_dir, kRetiredMapNames));
  if (::rmdir(pin_dir.c_str()) != 0) {
    int err = errno;
    *repinned = err == ENOTEMPTY;
    // Say what is left, so a failure names what pinned it.
    std::string left;
    for (const auto& e : std::filesystem::directory_iterator(pin_dir, ec)) {
      left += (left.empty() ? " (left: " : ", ") + e.path().filename().string();
    }
    return Status::FromErrno("remove " + pin_dir + (left.empty() ? "" : left + ")"), err);
  }
  return Status::Ok();
}

namespace {

// The kernel's id of the BPF object behind `fd` (link, program or map), or 0.
uint32_t ObjectId(int fd) {
  // The three info structs start with type and id; bpf_link_info's is the
  // smallest layout that reads the id for all of them.
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return 0;
  return info.id;
}

// The id of what is pinned at `path`, 0 when nothing is.
uint32_t PinnedId(const std::string& path) {
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) return 0;
  uint32_t id = ObjectId(fd);
  ::close(fd);
  return id;
}

uint32_t ProgramId(bpf_program* prog) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) != 0) return 0;
  return info.id;
}

uint32_t MapId(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) return 0;
  return info.id;
}

// Pins `fd` at `path`, replacing whatever is pinned there.
Status PinAt(int fd, const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno("unpinning " + path, errno);
  }
  if (bpf_obj_pin(fd, path.c_str()) != 0) return Status::FromErrno("pinning " + path, errno);
  return Status::Ok();
}

}  // namespace

Status Guard::Verify(std::vector<std::string>* problems) const {
  problems->clear();
  for (const AttachedLink& a : links_) {
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(bpf_link__fd(a.link), &info, &len) != 0) {
      return Status::FromErrno("reading link " + a.pin_name, errno);
    }
    if (info.cgroup.cgroup_id != cgroup_id_) {
      problems->push_back(a.pin_name + " detached");
    } else if (info.prog_id != ProgramId(a.program)) {
      problems->push_back(a.pin_name + " runs another program");
    }
    uint32_t pinned = PinnedId(options_.pin_dir + "/" + a.pin_name);
    if (pinned == 0) {
      problems->push_back("pin " + a.pin_name + " missing");
    } else if (pinned != info.id) {
      problems->push_back("pin " + a.pin_name + " replaced");
    }
  }
  for (const char* name : kMapNames) {
    bpf_map* m = bpf_object__find_map_by_name(skel_->obj, name);
    uint32_t pinned = PinnedId(options_.pin_dir + "/" + name);
    if (pinned == 0) {
      problems->push_back(std::string("pin ") + name + " missing");
    } else if (m != nullptr && pinned != MapId(bpf_map__fd(m))) {
      problems->push_back(std::string("pin ") + name + " replaced");
    }
  }
  return Status::Ok();
}

Status Guard::Repair() {
  if (::mkdir(options_.pin_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("creating " + options_.pin_dir, errno);
  }
  if (!IsOnBpffs(options_.pin_dir)) {
    return Status::FailedPrecondition(options_.pin_dir + " is no longer on a bpffs");
  }
  for (const char* name : kMapNames) {
    bpf_map* m = bpf_object__find_map_by_name(skel_->obj, name);
    if (m == nullptr) continue;
    std::string path = options_.pin_dir + "/" + name;
    if (PinnedId(path) != MapId(bpf_map__fd(m))) LATCH_RETURN_IF_ERROR(PinAt(bpf_map__fd(m), path));
  }
  int cgroup_fd = ::open(options_.cgroup_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cgroup_fd < 0) return Status::FromErrno("open cgroup " + options_.cgroup_dir, errno);
  Status status;
  for (AttachedLink& a : links_) {
    std::string path = options_.pin_dir + "/" + a.pin_name;
    bpf_link_info info{};
    uint32_t len = sizeof(info);
    bool attached = bpf_obj_get_info_by_fd(bpf_link__fd(a.link), &info, &len) == 0 &&
                    info.cgroup.cgroup_id == cgroup_id_ && info.prog_id == ProgramId(a.program);
    if (!attached) {
      // A detached link cannot be attached again: a new one takes its place.
      if (bpf_obj_get_info_by_fd(bpf_link__fd(a.link), &info, &len) == 0 &&
          info.cgroup.cgroup_id == cgroup_id_) {
        (void)bpf_link__detach(a.link);  // running another program: ours replaces it
      }
      bpf_link* fresh = bpf_program__attach_cgroup(a.program, cgroup_fd);
      if (fresh == nullptr) {
        status = LibbpfError("attaching " + a.pin_name + " again", errno);
        break;
      }
      bpf_link__destroy(a.link);
      a.link = fresh;
      (void)bpf_obj_get_info_by_fd(bpf_link__fd(a.link), &info, &len);
    }
    if (PinnedId(path) != info.id) {
      status = PinAt(bpf_link__fd(a.link), path);
      if (!status.ok()) break;
    }
  }
  ::close(cgroup_fd);
  return status;
}

int Guard::resources_fd() const { return bpf_map__fd(skel_->maps.latch_resources); }
int Guard::grants_fd() const { return bpf_map__fd(skel_->maps.latch_grants); }
int Guard::ports_fd() const { return bpf_map__fd(skel_->maps.latch_ports); }
int Guard::local_fd() const { return bpf_map__fd(skel_->maps.latch_local); }
int Guard::events_fd() const { return bpf_map__fd(skel_->maps.latch_events); }

int Guard::counters_fd() const { return bpf_map__fd(skel_->maps.latch_counters); }
int Guard::agent_state_fd() const { return bpf_map__fd(skel_->maps.latch_agent_state); }

Status Guard::ReadCounters(std::array<uint64_t, LATCH_CTR_COUNT>* out) const {
  return ReadGuardCounters(counters_fd(), out);
}

Status ReadGuardCounters(int fd, std::array<uint64_t, LATCH_CTR_COUNT>* out) {
  return ReadPerCpuCounters(fd, LATCH_CTR_COUNT, out->data());
}

Status Guard::ReadProgramStats(std::vector<ProgramStats>* out) const {
  out->clear();
  for (const ProgramPin& p : kPrograms) {
    bpf_program* prog = p.program(skel_);
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) != 0) {
      return Status::FromErrno("reading stats of " + std::string(bpf_program__name(prog)), errno);
    }
    out->push_back({bpf_program__name(prog), info.run_cnt, info.run_time_ns});
  }
  return Status::Ok();
}

}  // namespace latch::agent
