#include "agent/activity_capture.h"

#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <linux/btf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>

#include "activity.skel.h"
#include "agent/boot_clock.h"
#include "agent/kernel_fs.h"
#include "agent/libbpf_log.h"
#include "agent/percpu_counters.h"
#include "lib/logging/logger.h"
#include "schemas/activity_record.h"

namespace latch::agent {
namespace {

Status LibbpfError(const std::string& what, int err) {
  return Status::FromErrno(what, err < 0 ? -err : err);
}

constexpr const char* kLinkPrefix = "link_";

// Programs attached only while someone can be watched: the syscall
// tracepoints (the costly kind to keep attached) and io_uring's (on every
// submission and completion of every ring on the host).
bool IsSyscallProgram(bpf_program* prog) {
  const char* section = bpf_program__section_name(prog);
  return section != nullptr && (std::strncmp(section, "tracepoint/syscalls/", 20) == 0 ||
                                std::strncmp(section, "tp_btf/io_uring_", 16) == 0);
}

bool IsIoUringProgram(bpf_program* prog) {
  const char* section = bpf_program__section_name(prog);
  return section != nullptr && std::strncmp(section, "tp_btf/io_uring_", 16) == 0;
}

// Whether the running kernel has the io_uring tracepoints (a kernel built
// without io_uring has none: its other activity is still captured).
bool KernelHasIoUringTracepoints() {
  btf* vmlinux = btf__load_vmlinux_btf();
  if (vmlinux == nullptr) return false;
  bool found = true;
  for (const char* t : {"btf_trace_io_uring_create", "btf_trace_io_uring_submit_req",
                        "btf_trace_io_uring_complete"}) {
    found = found && btf__find_by_name_kind(vmlinux, t, BTF_KIND_TYPEDEF) >= 0;
  }
  btf__free(vmlinux);
  return found;
}

// Whether the map pinned at `path` has `m`'s layout, as libbpf requires to
// reuse it. A missing pin is fine (it is created).
bool PinnedMapMatches(bpf_map* m, const std::string& path, std::string* why) {
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0 && errno == ENOENT) return true;
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  int err = fd < 0 ? -errno : bpf_obj_get_info_by_fd(fd, &info, &len);
  if (fd >= 0) ::close(fd);
  if (err != 0) {
    *why = std::string(bpf_map__name(m)) + " (not a map: " + std::strerror(-err) + ")";
    return false;
  }
  if (info.type == static_cast<uint32_t>(bpf_map__type(m)) &&
      info.key_size == bpf_map__key_size(m) && info.value_size == bpf_map__value_size(m) &&
      info.max_entries == bpf_map__max_entries(m) && info.map_flags == bpf_map__map_flags(m)) {
    return true;
  }
  *why = std::string(bpf_map__name(m)) + " (key " + std::to_string(info.key_size) + ", value " +
         std::to_string(info.value_size) + ", entries " + std::to_string(info.max_entries) +
         "; this agent's: key " + std::to_string(bpf_map__key_size(m)) + ", value " +
         std::to_string(bpf_map__value_size(m)) + ", entries " +
         std::to_string(bpf_map__max_entries(m)) + ")";
  return false;
}

// Ends a pinned link: detached at once where the kernel can (tracing links);
// a tracepoint's link (perf event) ends when its pin and last fd are gone,
// which is the case here unless a running agent still holds it.
Status RemovePinnedLink(bpf_link* link, const std::string& path) {
  int err = bpf_link__detach(link);
  bpf_link__destroy(link);
  if (err != 0 && err != -EOPNOTSUPP && err != -EINVAL) {
    return LibbpfError("detaching " + path, err);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno("unlink " + path, errno);
  }
  return Status::Ok();
}

// The tag (a hash of the instructions) of a loaded program.
Status ProgramTag(int prog_fd, std::string* tag) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(prog_fd, &info, &len) != 0) {
    return Status::FromErrno("reading a program's description", errno);
  }
  tag->assign(reinterpret_cast<const char*>(info.tag), sizeof(info.tag));
  return Status::Ok();
}

// The tag of the program a pinned link runs.
Status LinkProgramTag(bpf_link* link, std::string* tag) {
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(bpf_link__fd(link), &info, &len) != 0) {
    return Status::FromErrno("reading a pinned link's description", errno);
  }
  int fd = bpf_prog_get_fd_by_id(info.prog_id);
  if (fd < 0) return Status::FromErrno("opening a pinned link's program", errno);
  Status s = ProgramTag(fd, tag);
  ::close(fd);
  return s;
}

// The depth of a cgroup v2 directory below the hierarchy's root (the root is 0).
Status CgroupLevel(const std::string& cgroup_dir, uint32_t* level) {
  std::string root;
  LATCH_RETURN_IF_ERROR(FindCgroup2Mount(&root));
  std::error_code ec;
  auto rel = std::filesystem::relative(std::filesystem::canonical(cgroup_dir, ec), root, ec);
  if (ec || rel.empty() || *rel.begin() == "..") {
    return Status::InvalidArgument(cgroup_dir + " is not under the cgroup v2 root " + root);
  }
  *level = 0;
  for (const auto& part : rel) {
    if (part != ".") ++*level;
  }
  return Status::Ok();
}

}  // namespace

Status ParseWatchMode(const std::string& text, WatchMode* out) {
  for (WatchMode m : {WatchMode::kOff, WatchMode::kGrants, WatchMode::kCgroup, WatchMode::kAll}) {
    if (text == WatchModeName(m)) {
      *out = m;
      return Status::Ok();
    }
  }
  return Status::InvalidArgument("watch mode \"" + text +
                                 "\" is not one of off, grants, cgroup, all");
}

const char* WatchModeName(WatchMode mode) {
  switch (mode) {
    case WatchMode::kOff:
      return "off";
    case WatchMode::kGrants:
      return "grants";
    case WatchMode::kCgroup:
      return "cgroup";
    case WatchMode::kAll:
      return "all";
  }
  return "?";
}

std::vector<WatchEntry> WatchEntriesFor(const std::vector<KernelGrant>& grants) {
  std::map<std::pair<uint32_t, uint64_t>, WatchEntry> by_principal;
  for (const KernelGrant& g : grants) {
    auto key = std::make_pair(static_cast<uint32_t>(g.principal.kind), g.principal.id);
    auto it = by_principal.find(key);
    if (it == by_principal.end()) {
      by_principal[key] = {g.principal, g.grant_id, g.not_before_boot_ns, g.not_after_boot_ns};
      continue;
    }
    // One entry per principal: the window that covers both when they meet
    // or overlap, else the later grant's (a gap stays unwatched).
    WatchEntry& w = it->second;
    bool overlap =
        g.not_before_boot_ns <= w.not_after_boot_ns && w.not_before_boot_ns <= g.not_after_boot_ns;
    if (g.not_after_boot_ns > w.not_after_boot_ns) w.grant_id = g.grant_id;
    if (overlap) {
      w.not_before_boot_ns = std::min(w.not_before_boot_ns, g.not_before_boot_ns);
      w.not_after_boot_ns = std::max(w.not_after_boot_ns, g.not_after_boot_ns);
    } else if (g.not_after_boot_ns > w.not_after_boot_ns) {
      w.not_before_boot_ns = g.not_before_boot_ns;
      w.not_after_boot_ns = g.not_after_boot_ns;
    }
  }
  std::vector<WatchEntry> out;
  out.reserve(by_principal.size());
  for (auto& [key, w] : by_principal) out.push_back(w);
  return out;
}

Status ActivityCapture::Start(const ActivityOptions& options,
                              std::unique_ptr<ActivityCapture>* out) {
  RouteLibbpfMessagesToLog();
  std::unique_ptr<ActivityCapture> a(new ActivityCapture());
  a->options_ = options;
  std::error_code ec;
  std::filesystem::create_directories(options.pin_dir, ec);
  if (options.pin_dir.empty() || !IsOnBpffs(options.pin_dir)) {
    return Status::InvalidArgument("activity pin directory " + options.pin_dir +
                                   " is not on a bpffs");
  }
  if (options.ring_bytes < 4096 || (options.ring_bytes & (options.ring_bytes - 1)) != 0) {
    return Status::InvalidArgument("activity ring buffer size " +
                                   std::to_string(options.ring_bytes) +
                                   " is not a power of two of at least 4096");
  }
  if (options.path_prefixes.size() > LATCH_MAX_PREFIXES) {
    return Status::InvalidArgument("at most " + std::to_string(LATCH_MAX_PREFIXES) +
                                   " watched path prefixes");
  }
  for (const std::string& p : options.path_prefixes) {
    if (p.empty() || p.size() > LATCH_PREFIX_MAX || p[0] != '/') {
      return Status::InvalidArgument("watched path prefix \"" + p +
                                     "\" must be an absolute path of at most " +
                                     std::to_string(LATCH_PREFIX_MAX) + " bytes");
    }
  }
  a->config_.mode = static_cast<uint32_t>(options.mode);
  a->config_.prefix_count = static_cast<uint32_t>(options.path_prefixes.size());
  a->config_.throttle_events = options.throttle_events;
  a->config_.throttle_window_ns = uint64_t{options.throttle_window_ms} * 1'000'000;
  if (options.mode == WatchMode::kCgroup) {
    if (options.cgroup_dir.empty()) {
      return Status::InvalidArgument("watch mode cgroup needs the cgroup to watch");
    }
    uint64_t id = 0;
    LATCH_RETURN_IF_ERROR(CgroupId(options.cgroup_dir, &id));
    a->config_.cgroup_id = id;
    LATCH_RETURN_IF_ERROR(CgroupLevel(options.cgroup_dir, &a->config_.cgroup_level));
  }
  if (!options.scope_cgroup_dir.empty()) {
    uint32_t level = 0;
    LATCH_RETURN_IF_ERROR(CgroupLevel(options.scope_cgroup_dir, &level).WithContext("scope"));
    if (level > 0) {  // the root holds every task: no bound to check
      uint64_t id = 0;
      LATCH_RETURN_IF_ERROR(CgroupId(options.scope_cgroup_dir, &id));
      a->config_.scope_cgroup_id = id;
      a->config_.scope_cgroup_level = level;
    }
  }
  LATCH_RETURN_IF_ERROR(EnsureTracefs(&a->mounted_tracefs_).WithContext("probe"));
  LATCH_RETURN_IF_ERROR(a->Open().WithContext("open"));
  LATCH_RETURN_IF_ERROR(a->ReplaceStalePins().WithContext("pinned maps"));
  LATCH_RETURN_IF_ERROR(a->Load().WithContext("load"));
  LATCH_RETURN_IF_ERROR(a->Configure().WithContext("configure"));
  LATCH_RETURN_IF_ERROR(a->Attach().WithContext("attach"));
  *out = std::move(a);
  return Status::Ok();
}

ActivityCapture::~ActivityCapture() {
  if (closing_.joinable()) closing_.join();
  // Closing link fds does not detach pinned links: capture goes on.
  for (bpf_link* l : links_) bpf_link__destroy(l);
  for (bpf_link* l : syscall_links_) bpf_link__destroy(l);
  if (skel_ != nullptr) latch_activity__destroy(skel_);
}

Status ActivityCapture::Uninstall(const std::string& pin_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(pin_dir, ec)) return Status::Ok();
  std::vector<fs::path> pins;
  for (const auto& e : fs::directory_iterator(pin_dir, ec)) pins.push_back(e.path());
  // Links first (that stops capture), then the maps.
  for (const fs::path& p : pins) {
    if (p.filename().string().rfind(kLinkPrefix, 0) != 0) continue;
    bpf_link* link = bpf_link__open(p.c_str());
    if (link == nullptr) return LibbpfError("opening pinned link " + p.string(), errno);
    LATCH_RETURN_IF_ERROR(RemovePinnedLink(link, p.string()));
  }
  for (const fs::path& p : pins) {
    if (p.filename().string().rfind(kLinkPrefix, 0) == 0) continue;
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
      return Status::FromErrno("unlink " + p.string(), errno);
    }
  }
  if (::rmdir(pin_dir.c_str()) != 0) return Status::FromErrno("remove " + pin_dir, errno);
  return Status::Ok();
}

Status ActivityCapture::Open() {
  skel_ = latch_activity__open();
  if (skel_ == nullptr) return LibbpfError("opening the activity BPF object", errno);
  io_uring_seen_ = KernelHasIoUringTracepoints();
  if (!io_uring_seen_) {
    logging::Default().Warn("this kernel has no io_uring tracepoints",
                            {{"effect", "io_uring submissions are not recorded"}});
    bpf_program* prog;
    bpf_object__for_each_program(prog, skel_->obj) {
      if (IsIoUringProgram(prog)) bpf_program__set_autoload(prog, false);
    }
  }
  skel_->rodata->latch_activity_wakeup_bytes = options_.wakeup_bytes;
  int err = bpf_map__set_max_entries(skel_->maps.latch_activity, options_.ring_bytes);
  if (err != 0) return LibbpfError("sizing the activity ring buffer", err);
  bpf_map* m;
  bpf_object__for_each_map(m, skel_->obj) {
    if (bpf_map__is_internal(m)) continue;
    std::string path = options_.pin_dir + "/" + bpf_map__name(m);
    err = bpf_map__set_pin_path(m, path.c_str());
    if (err != 0) return LibbpfError("setting pin path " + path, err);
  }
  return Status::Ok();
}

Status ActivityCapture::ReplaceStalePins() {
  std::string why;
  bpf_map* m;
  bpf_object__for_each_map(m, skel_->obj) {
    if (bpf_map__is_internal(m)) continue;
    if (!PinnedMapMatches(m, options_.pin_dir + "/" + bpf_map__name(m), &why)) break;
  }
  if (why.empty()) return Status::Ok();
  // Everything in these maps is derived (the watch set and configuration are
  // written again from the grants and the settings) or transient (pending
  // calls, throttle state, counters), except records still in the ring: the
  // agent drains that before it stops, so an upgrade loses at most what came
  // in between.
  logging::Default().Warn(
      "activity capture pinned in another layout (an upgrade): reinstalled",
      {{"pin_dir", options_.pin_dir}, {"map", why}, {"effect", "its counters start again at 0"}});
  reinstalled_ = true;
  LATCH_RETURN_IF_ERROR(Uninstall(options_.pin_dir));
  std::error_code ec;
  std::filesystem::create_directories(options_.pin_dir, ec);
  if (ec) return Status::FromErrno("create " + options_.pin_dir, ec.value());
  return Status::Ok();
}

Status ActivityCapture::Load() {
  int err = latch_activity__load(skel_);
  if (err != 0) return LibbpfError("loading the activity programs", err);
  return Status::Ok();
}

Status ActivityCapture::Configure() {
  for (uint32_t i = 0; i < options_.path_prefixes.size(); ++i) {
    latch_path_prefix p{};
    const std::string& path = options_.path_prefixes[i];
    p.len = static_cast<uint32_t>(path.size());
    std::memcpy(p.path, path.data(), path.size());
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.latch_prefixes), &i, &p, BPF_ANY) != 0) {
      return Status::FromErrno("writing watched path prefix " + path, errno);
    }
  }
  uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel_->maps.latch_act_config), &zero, &config_, BPF_ANY) !=
      0) {
    return Status::FromErrno("writing the activity configuration", errno);
  }
  return Status::Ok();
}

Status ActivityCapture::AttachProgram(bpf_program* prog, bpf_link** out) {
  std::string name = bpf_program__name(prog);
  std::string path = options_.pin_dir + "/" + kLinkPrefix + name;
  std::string ours;
  LATCH_RETURN_IF_ERROR(ProgramTag(bpf_program__fd(prog), &ours));
  bpf_link* pinned = ::access(path.c_str(), F_OK) == 0 ? bpf_link__open(path.c_str()) : nullptr;
  if (pinned != nullptr) {
    std::string theirs;
    Status s = LinkProgramTag(pinned, &theirs);
    if (s.ok() && theirs == ours) {
      *out = pinned;  // the same program, already attached: adopted
      ++adopted_;
      return Status::Ok();
    }
    // Another program (an upgrade): out with the old, in with the new.
    LATCH_RETURN_IF_ERROR(RemovePinnedLink(pinned, path));
    ++replaced_;
  }
  bpf_link* link = bpf_program__attach(prog);
  if (link == nullptr) return LibbpfError("attaching " + name + " to its tracepoint", errno);
  int err = bpf_link__pin(link, path.c_str());
  if (err != 0) {
    bpf_link__destroy(link);  // not pinned: closing detaches it
    return LibbpfError("pinning " + path, err);
  }
  *out = link;
  return Status::Ok();
}

Status ActivityCapture::Attach() {
  bool adopting_syscalls = false;
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    if (IsSyscallProgram(prog)) {
      std::string path = options_.pin_dir + "/" + kLinkPrefix + bpf_program__name(prog);
      adopting_syscalls |= ::access(path.c_str(), F_OK) == 0;
      continue;
    }
    bpf_link* link = nullptr;
    LATCH_RETURN_IF_ERROR(AttachProgram(prog, &link));
    links_.push_back(link);
  }
  // The syscall programs: as a previous run left them, or as the mode needs;
  // with watch = "grants" the first SetWatched decides.
  if (adopting_syscalls || options_.mode != WatchMode::kGrants) {
    LATCH_RETURN_IF_ERROR(AttachSyscallPrograms());
  }
  return Status::Ok();
}

Status ActivityCapture::AttachSyscallPrograms() {
  if (!syscall_links_.empty()) return Status::Ok();
  // The kernel refuses a program on a tracepoint it is still attached to:
  // links being closed must be gone first.
  if (closing_.joinable()) closing_.join();
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    if (!IsSyscallProgram(prog) || !bpf_program__autoload(prog)) continue;  // not loaded
    bpf_link* link = nullptr;
    Status s = AttachProgram(prog, &link);
    if (!s.ok()) {
      DetachSyscallPrograms();  // all or none
      return s;
    }
    syscall_links_.push_back(link);
  }
  return Status::Ok();
}

void ActivityCapture::DetachSyscallPrograms() {
  if (syscall_links_.empty()) return;
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    if (!IsSyscallProgram(prog)) continue;
    std::string path = options_.pin_dir + "/" + kLinkPrefix + bpf_program__name(prog);
    ::unlink(path.c_str());
  }
  // Closing waits for the kernel's grace periods (tens of ms a link): not on
  // the caller's thread, and all at once so that they share them.
  std::vector<bpf_link*> links;
  links.swap(syscall_links_);
  if (closing_.joinable()) closing_.join();
  closing_ = std::thread([links] {
    std::vector<std::thread> closers;
    for (bpf_link* l : links) closers.emplace_back([l] { bpf_link__destroy(l); });
    for (auto& t : closers) t.join();
  });
}

Status ActivityCapture::SetWatched(const std::vector<WatchEntry>& entries) {
  int fd = bpf_map__fd(skel_->maps.latch_watched);
  std::map<std::pair<uint32_t, uint64_t>, latch_watch_value> want;
  uint32_t cgroups = 0;
  for (const WatchEntry& e : entries) {
    auto key = std::make_pair(static_cast<uint32_t>(e.principal.kind), e.principal.id);
    if (!want.count(key) && e.principal.kind == Principal::Kind::kCgroup) ++cgroups;
    want[key] = {e.not_before_boot_ns, e.not_after_boot_ns, e.grant_id};
  }
  if (want.size() > LATCH_MAX_WATCHED) {
    return Status::ResourceExhausted("more than " + std::to_string(LATCH_MAX_WATCHED) +
                                     " watched principals");
  }
  // Out first what is no longer watched, then in the rest.
  std::vector<latch_watch_key> stale;
  latch_watch_key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    if (!want.count({next.kind, next.principal})) stale.push_back(next);
    key = next;
    prev = &key;
  }
  for (const latch_watch_key& k : stale) {
    if (bpf_map_delete_elem(fd, &k) != 0 && errno != ENOENT) {
      return Status::FromErrno("removing a watched principal", errno);
    }
  }
  for (const auto& [principal, value] : want) {
    latch_watch_key k{};
    k.kind = principal.first;
    k.principal = principal.second;
    if (bpf_map_update_elem(fd, &k, &value, BPF_ANY) != 0) {
      return Status::FromErrno("writing a watched principal", errno);
    }
  }
  if (config_.cgroup_watches != cgroups) {
    config_.cgroup_watches = cgroups;
    uint32_t zero = 0;
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.latch_act_config), &zero, &config_, BPF_ANY) !=
        0) {
      return Status::FromErrno("writing the activity configuration", errno);
    }
  }
  // The syscall programs are needed while anyone is, or will be, watched.
  uint64_t now = NowBootNs();
  bool needed = options_.mode != WatchMode::kGrants;
  for (const auto& [principal, value] : want) needed |= value.not_after_ns > now;
  if (needed) {
    last_needed_boot_ns_ = now;
    return AttachSyscallPrograms();
  }
  if (now - last_needed_boot_ns_ >= uint64_t{options_.detach_after_ms} * 1'000'000) {
    DetachSyscallPrograms();
  }
  return Status::Ok();
}

Status ActivityCapture::DescribePinned(const std::string& pin_dir, std::string* text) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(pin_dir + "/latch_act_counters", ec)) {
    return Status::NotFound("activity capture is not installed under " + pin_dir);
  }
  int links = 0;
  for (const auto& e : fs::directory_iterator(pin_dir, ec)) {
    links += e.path().filename().string().rfind(kLinkPrefix, 0) == 0;
  }
  int counters = bpf_obj_get((pin_dir + "/latch_act_counters").c_str());
  int watched = bpf_obj_get((pin_dir + "/latch_watched").c_str());
  std::array<uint64_t, LATCH_ACT_CTR_COUNT> c{};
  Status s = counters >= 0 ? ReadPerCpuCounters(counters, LATCH_ACT_CTR_COUNT, c.data())
                           : Status::FromErrno("opening the activity counters", errno);
  size_t principals = 0;
  if (watched >= 0) {
    latch_watch_key key{}, next{};
    const void* prev = nullptr;
    while (bpf_map_get_next_key(watched, prev, &next) == 0) {
      ++principals;
      key = next;
      prev = &key;
    }
  }
  if (counters >= 0) ::close(counters);
  if (watched >= 0) ::close(watched);
  LATCH_RETURN_IF_ERROR(s);
  std::string out = "activity capture pinned at " + pin_dir + ": " + std::to_string(links) +
                    " programs attached, " + std::to_string(principals) +
                    " principals in the watch set\n  kind              sent      lost  held back\n";
  for (uint32_t k = 1; k < LATCH_ACT_KINDS; ++k) {
    char line[128];
    std::snprintf(line, sizeof(line), "  %-15s %9llu %9llu %10llu\n", record::ActivityKindName(k),
                  static_cast<unsigned long long>(c[LATCH_ACT_CTR_SUBMITTED + k]),
                  static_cast<unsigned long long>(c[LATCH_ACT_CTR_LOST + k]),
                  static_cast<unsigned long long>(c[LATCH_ACT_CTR_SUPPRESSED + k]));
    out += line;
  }
  *text = std::move(out);
  return Status::Ok();
}

Status ActivityCapture::Watch(const WatchEntry& entry) {
  int fd = bpf_map__fd(skel_->maps.latch_watched);
  latch_watch_key key{};
  key.kind = static_cast<uint32_t>(entry.principal.kind);
  key.principal = entry.principal.id;
  latch_watch_value value{entry.not_before_boot_ns, entry.not_after_boot_ns, entry.grant_id};
  latch_watch_value held{};
  if (bpf_map_lookup_elem(fd, &key, &held) == 0) {
    value.not_before_ns = std::min(value.not_before_ns, held.not_before_ns);
    if (held.not_after_ns > value.not_after_ns) {
      value.not_after_ns = held.not_after_ns;
      value.grant_id = held.grant_id;
    }
  } else if (entry.principal.kind == Principal::Kind::kCgroup) {
    ++config_.cgroup_watches;
    uint32_t zero = 0;
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.latch_act_config), &zero, &config_, BPF_ANY) !=
        0) {
      return Status::FromErrno("writing the activity configuration", errno);
    }
  }
  if (bpf_map_update_elem(fd, &key, &value, BPF_ANY) != 0) {
    return Status::FromErrno("writing a watched principal", errno);
  }
  last_needed_boot_ns_ = NowBootNs();
  return AttachSyscallPrograms();
}

int ActivityCapture::ring_fd() const { return bpf_map__fd(skel_->maps.latch_activity); }

Status ActivityCapture::ReadCounters(std::array<uint64_t, LATCH_ACT_CTR_COUNT>* out) const {
  return ReadPerCpuCounters(bpf_map__fd(skel_->maps.latch_act_counters), LATCH_ACT_CTR_COUNT,
                            out->data());
}

}  // namespace latch::agent
