// SPDX-License-Identifier: GPL-2.0
/* Activity capture: what watched principals do, on tracepoints. Programs run,
 * processes ended, connect attempts (every destination, with the outcome),
 * opens of paths under watched prefixes (with flags and result), and changes
 * of uid, gid or capabilities. Who is watched is decided first, before
 * anything is read or reserved, so an unwatched task pays one map lookup per
 * traced call. A process past its event budget is throttled: what it would
 * have sent is counted by kind and sent as one summary record. */
// vmlinux.h must come before the libbpf headers.
// clang-format off
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
// clang-format on

#include "activity_abi.h"
#include "activity_decision.h"
#include "guard_abi.h"
#include "guard_decision.h"  // latch_ringbuf_flags

#define AF_INET 2
#define AF_INET6 10

char LICENSE[] SEC("license") = "GPL";

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct latch_activity_config);
} latch_act_config SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LATCH_MAX_WATCHED);
  __type(key, struct latch_watch_key);
  __type(value, struct latch_watch_value);
} latch_watched SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, LATCH_MAX_PREFIXES);
  __type(key, __u32);
  __type(value, struct latch_path_prefix);
} latch_prefixes SEC(".maps");

/* A call between its entry and its exit: the record, complete but for the
 * outcome. Keyed by thread; LRU, so a thread that never returns (killed in
 * the call) cannot fill it. */
union latch_pending {
  struct latch_activity_header h;
  struct latch_activity_connect connect;
  struct latch_activity_open open;
  struct latch_activity_cred cred;
};
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 8192);
  __type(key, __u64);
  __type(value, union latch_pending);
} latch_act_pending SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 16384);
  __type(key, __u32);
  __type(value, struct latch_throttle_state);
} latch_throttle SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, LATCH_ACT_CTR_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} latch_act_counters SEC(".maps");

/* Per-process io_uring submission counts. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 16384);
  __type(key, __u32);
  __type(value, struct latch_uring_state);
} latch_uring SEC(".maps");

/* Room to build the largest records (exec, io_uring counts) off the 512-byte
 * stack. A program uses one member at a time. */
union latch_scratch {
  struct latch_activity_exec exec;
  struct latch_activity_uring_ops uring_ops;
  union latch_pending pending;
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, union latch_scratch);
} latch_act_scratch SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1 << 23); /* 8 MiB; user space may resize before load */
} latch_activity SEC(".maps");

static __always_inline void count(__u32 slot) {
  __u64* v = bpf_map_lookup_elem(&latch_act_counters, &slot);
  if (v) *v += 1;
}

static __always_inline const struct latch_activity_config* act_config(void) {
  __u32 zero = 0;
  const struct latch_activity_config* c = bpf_map_lookup_elem(&latch_act_config, &zero);
  return c && c->mode != LATCH_WATCH_OFF ? c : 0;
}

static __always_inline int watch_entry(__u32 kind, __u64 principal, __u64 now, __u64* grant_id) {
  struct latch_watch_key key = {.kind = kind, .principal = principal};
  const struct latch_watch_value* w = bpf_map_lookup_elem(&latch_watched, &key);
  if (!latch_watch_live(w, now)) return 0;
  *grant_id = w->grant_id;
  return 1;
}

/* Whether the current task is watched; *grant_id is the grant its uid or
 * cgroup holds (0 if none). */
static __always_inline int watched(const struct latch_activity_config* cfg,
                                   struct task_struct* task, __u64* grant_id) {
  *grant_id = 0;
  if (cfg->scope_cgroup_id != 0 && task->cgroups->dfl_cgrp->kn->id != cfg->scope_cgroup_id &&
      bpf_get_current_ancestor_cgroup_id(cfg->scope_cgroup_level) != cfg->scope_cgroup_id) {
    return 0; /* another host's task (issue 16) */
  }
  __u64 now = bpf_ktime_get_boot_ns();
  if (watch_entry(LATCH_PRINCIPAL_UID, task->cred->uid.val, now, grant_id)) return 1;
  if (cfg->cgroup_watches > 0) {
    __u64 cgroup_id = task->cgroups->dfl_cgrp->kn->id;
    if (watch_entry(LATCH_PRINCIPAL_CGROUP, cgroup_id, now, grant_id)) return 1;
    for (int level = LATCH_MAX_CGROUP_DEPTH; level >= 1; level--) {
      __u64 ancestor = bpf_get_current_ancestor_cgroup_id(level);
      if (ancestor == 0 || ancestor == cgroup_id) continue;
      if (watch_entry(LATCH_PRINCIPAL_CGROUP, ancestor, now, grant_id)) return 1;
    }
  }
  if (cfg->mode == LATCH_WATCH_ALL) return 1;
  if (cfg->mode == LATCH_WATCH_CGROUP && cfg->cgroup_id != 0) {
    if (task->cgroups->dfl_cgrp->kn->id == cfg->cgroup_id) return 1;
    return bpf_get_current_ancestor_cgroup_id(cfg->cgroup_level) == cfg->cgroup_id;
  }
  return 0;
}

static __always_inline void fill_header(struct latch_activity_header* h, struct task_struct* task,
                                        __u16 kind, __u16 size, __u64 grant_id) {
  const struct cred* cred = task->cred;
  h->ktime_boot_ns = bpf_ktime_get_boot_ns();
  h->cgroup_id = task->cgroups->dfl_cgrp->kn->id;
  h->grant_id = grant_id;
  h->pid = task->pid;
  h->tgid = task->tgid;
  h->ppid = task->real_parent->tgid;
  h->uid = cred->uid.val;
  h->euid = cred->euid.val;
  h->gid = cred->gid.val;
  h->kind = kind;
  h->size = size;
  h->via = LATCH_VIA_SYSCALL;
  bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* Set by user space before load (ActivityOptions::wakeup_bytes); see
 * latch_ringbuf_flags. */
const volatile __u64 latch_activity_wakeup_bytes = 0;

static __always_inline void output(const void* record, __u64 size, __u32 kind) {
  if (kind >= LATCH_ACT_KINDS) return;
  __u64 flags = latch_ringbuf_flags(
      latch_activity_wakeup_bytes ? bpf_ringbuf_query(&latch_activity, BPF_RB_AVAIL_DATA) : 0,
      latch_activity_wakeup_bytes);
  if (bpf_ringbuf_output(&latch_activity, (void*)record, size, flags) == 0) {
    count(LATCH_ACT_CTR_SUBMITTED + kind);
  } else {
    count(LATCH_ACT_CTR_LOST + kind);
  }
}

static __always_inline struct latch_throttle_state* throttle_state(__u32 tgid) {
  struct latch_throttle_state* s = bpf_map_lookup_elem(&latch_throttle, &tgid);
  if (s) return s;
  struct latch_throttle_state fresh = {};
  bpf_map_update_elem(&latch_throttle, &tgid, &fresh, BPF_NOEXIST);
  return bpf_map_lookup_elem(&latch_throttle, &tgid);
}

/* Sends a summary of what `s` holds suppressed, if anything. */
static __always_inline void send_summary(struct latch_throttle_state* s, struct task_struct* task,
                                         __u64 grant_id) {
  struct latch_activity_throttle t = {};
  if (latch_throttle_take(s, t.suppressed) == 0) return;
  fill_header(&t.h, task, LATCH_ACT_THROTTLE, sizeof(t), grant_id);
  t.window_start_ns = s->suppressed_since_ns;
  t.window_end_ns = t.h.ktime_boot_ns;
  output(&t, sizeof(t), LATCH_ACT_THROTTLE);
}

/* Sends `record` (which starts with its filled-in header) unless the process
 * is over its budget (then it is counted). */
static __always_inline void emit(const struct latch_activity_config* cfg, struct task_struct* task,
                                 const void* record, __u64 size, __u32 kind) {
  if (cfg->throttle_events > 0) {
    struct latch_throttle_state* s = throttle_state(task->tgid);
    if (s) {
      const struct latch_activity_header* h = record;
      int summary_due = 0;
      enum latch_throttle_result r = latch_throttle_step(
          s, h->ktime_boot_ns, cfg->throttle_events, cfg->throttle_window_ns, kind, &summary_due);
      if (summary_due) send_summary(s, task, h->grant_id);
      if (r == LATCH_THROTTLE_SUPPRESS) {
        if (kind < LATCH_ACT_KINDS) count(LATCH_ACT_CTR_SUPPRESSED + kind);
        return;
      }
    }
  }
  output(record, size, kind);
}

static __always_inline union latch_scratch* scratch(void) {
  __u32 zero = 0;
  return bpf_map_lookup_elem(&latch_act_scratch, &zero);
}

/* Sends what `s` counted, if anything, and starts it afresh. Never throttled:
 * it is a summary already. */
static __always_inline void send_uring_ops(struct latch_uring_state* s, struct task_struct* task,
                                           __u64 grant_id) {
  if (s->window_start_ns == 0) return;
  union latch_scratch* sc = scratch();
  if (!sc) return;
  struct latch_activity_uring_ops* r = &sc->uring_ops;
  fill_header(&r->h, task, LATCH_ACT_URING_OPS, sizeof(*r), grant_id);
  r->window_start_ns = s->window_start_ns;
  r->window_end_ns = r->h.ktime_boot_ns;
  __builtin_memcpy(r->submitted, s->submitted, sizeof(r->submitted));
  __builtin_memset(s->submitted, 0, sizeof(s->submitted));
  s->window_start_ns = 0;
  output(r, sizeof(*r), LATCH_ACT_URING_OPS);
}

/* Programs run: the path and the arguments (bounded, marked when cut). */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(latch_act_exec, struct task_struct* p, pid_t old_pid, struct linux_binprm* bprm) {
  const struct latch_activity_config* cfg = act_config();
  if (!cfg) return 0;
  struct task_struct* task = bpf_get_current_task_btf();
  __u64 grant_id;
  if (!watched(cfg, task, &grant_id)) return 0;
  union latch_scratch* s = scratch();
  if (!s) return 0;
  struct latch_activity_exec* e = &s->exec;
  long n = bpf_probe_read_kernel_str(e->data, LATCH_EXEC_PATH_MAX, BPF_CORE_READ(bprm, filename));
  __u32 path_len = n > 0 ? (__u32)n - 1 : 0;
  if (path_len > LATCH_EXEC_PATH_MAX - 1) path_len = LATCH_EXEC_PATH_MAX - 1;
  struct mm_struct* mm = task->mm;
  __u64 arg_start = BPF_CORE_READ(mm, arg_start), arg_end = BPF_CORE_READ(mm, arg_end);
  __u64 args = arg_end > arg_start ? arg_end - arg_start : 0;
  e->args_truncated = args > LATCH_EXEC_ARGS_MAX - 1;
  if (args > LATCH_EXEC_ARGS_MAX - 1) args = LATCH_EXEC_ARGS_MAX - 1;
  /* Offsets and sizes masked into range for the verifier (both maxima are
   * powers of two, and the values are already within them). */
  path_len &= LATCH_EXEC_PATH_MAX - 1;
  args &= LATCH_EXEC_ARGS_MAX - 1;
  if (args > 0 && bpf_probe_read_user(e->data + path_len, args, (const void*)arg_start) != 0) {
    args = 0;
    e->args_truncated = 1;
  }
  e->path_len = path_len;
  e->args_len = args;
  __u64 size = offsetof(struct latch_activity_exec, data) + path_len + args;
  if (size > sizeof(*e)) return 0;
  fill_header(&e->h, task, LATCH_ACT_EXEC, size, grant_id);
  emit(cfg, task, e, size, LATCH_ACT_EXEC);
  return 0;
}

/* A process ended (its last thread): its status, and any summary it owes. */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(latch_act_exit, struct task_struct* p) {
  const struct latch_activity_config* cfg = act_config();
  if (!cfg) return 0;
  struct task_struct* task = bpf_get_current_task_btf();
  if (task->signal->live.counter != 0) return 0; /* other threads live on */
  __u32 tgid = task->tgid;
  struct latch_throttle_state* s = bpf_map_lookup_elem(&latch_throttle, &tgid);
  __u64 grant_id;
  int is_watched = watched(cfg, task, &grant_id);
  if (s) {
    send_summary(s, task, grant_id);
    bpf_map_delete_elem(&latch_throttle, &tgid);
  }
  struct latch_uring_state* u = bpf_map_lookup_elem(&latch_uring, &tgid);
  if (u) {
    send_uring_ops(u, task, grant_id);
    bpf_map_delete_elem(&latch_uring, &tgid);
  }
  if (!is_watched) return 0;
  struct latch_activity_exit x = {};
  fill_header(&x.h, task, LATCH_ACT_EXIT, sizeof(x), grant_id);
  x.exit_code = task->exit_code;
  output(&x, sizeof(x), LATCH_ACT_EXIT); /* never throttled: one per process */
  return 0;
}

/* A pending record for a task already known to be watched. */
static __always_inline union latch_pending* begin_watched(struct task_struct* task, __u16 kind,
                                                          __u16 size, __u64 grant_id) {
  union latch_scratch* s = scratch();
  if (!s) return 0;
  fill_header(&s->pending.h, task, kind, size, grant_id);
  return &s->pending;
}

static __always_inline union latch_pending* begin(const struct latch_activity_config* cfg,
                                                  struct task_struct* task, __u16 kind, __u16 size,
                                                  __u64* grant_id) {
  if (!watched(cfg, task, grant_id)) return 0;
  return begin_watched(task, kind, size, *grant_id);
}

/* Parked under the calling thread until the call's exit; an io_uring request
 * is parked under its address instead (a kernel address, never a pid_tgid). */
static __always_inline void park_as(union latch_pending* p, __u64 key) {
  bpf_map_update_elem(&latch_act_pending, &key, p, BPF_ANY);
}

static __always_inline void park(union latch_pending* p) { park_as(p, bpf_get_current_pid_tgid()); }

/* The exit of a call begun above: its outcome, then the record goes out. */
static __always_inline union latch_pending* finish_as(__u64 key, __u16 kind) {
  union latch_pending* p = bpf_map_lookup_elem(&latch_act_pending, &key);
  if (!p || p->h.kind != kind) return 0;
  return p;
}

static __always_inline union latch_pending* finish(__u16 kind) {
  return finish_as(bpf_get_current_pid_tgid(), kind);
}

static __always_inline void send_and_drop_as(const struct latch_activity_config* cfg,
                                             union latch_pending* p, __u64 size, __u32 kind,
                                             __u64 key) {
  struct task_struct* task = bpf_get_current_task_btf();
  emit(cfg, task, p, size, kind);
  bpf_map_delete_elem(&latch_act_pending, &key);
}

static __always_inline void send_and_drop(const struct latch_activity_config* cfg,
                                          union latch_pending* p, __u64 size, __u32 kind) {
  send_and_drop_as(cfg, p, size, kind, bpf_get_current_pid_tgid());
}

/* Fills c's destination from a sockaddr in user memory: 1 for IPv4 or IPv6,
 * 0 for anything else (local sockets and the like are not network
 * connects) or an address that cannot be read. */
static __always_inline int read_destination(struct latch_activity_connect* c, const void* addr) {
  __u16 family = 0;
  if (bpf_probe_read_user(&family, sizeof(family), addr) != 0) return 0;
  __builtin_memset(c->addr, 0, sizeof(c->addr));
  c->family = family;
  c->result = 0;
  if (family == AF_INET) {
    struct sockaddr_in in = {};
    if (bpf_probe_read_user(&in, sizeof(in), addr) != 0) return 0;
    c->port = bpf_ntohs(in.sin_port);
    c->addr[10] = 0xff;
    c->addr[11] = 0xff;
    __builtin_memcpy(&c->addr[12], &in.sin_addr.s_addr, 4);
    return 1;
  }
  if (family == AF_INET6) {
    struct sockaddr_in6 in6 = {};
    if (bpf_probe_read_user(&in6, sizeof(in6), addr) != 0) return 0;
    c->port = bpf_ntohs(in6.sin6_port);
    __builtin_memcpy(c->addr, &in6.sin6_addr, 16);
    return 1;
  }
  return 0;
}

/* Connect attempts to any IPv4 or IPv6 destination. */
SEC("tracepoint/syscalls/sys_enter_connect")
int latch_act_connect_enter(struct trace_event_raw_sys_enter* ctx) {
  const struct latch_activity_config* cfg = act_config();
  if (!cfg) return 0;
  __u64 grant_id;
  union latch_pending* p = begin(cfg, bpf_get_current_task_btf(), LATCH_ACT_CONNECT,
                                 sizeof(struct latch_activity_connect), &grant_id);
  if (!p) return 0;
  if (!read_destination(&p->connect, (const void*)ctx->args[1])) return 0;
  park(p);
  return 0;
}

SEC("tracepoint/syscalls/sys_exit_connect")
int latch_act_connect_exit(struct trace_event_raw_sys_exit* ctx) {
  const struct latch_activity_config* cfg = act_config();
  if (!cfg) return 0;
  union latch_pending* p = finish(LATCH_ACT_CONNECT);
  if (!p) return 0;
  p->connect.result = (__s32)ctx->ret;
  send_and_drop(cfg, p, sizeof(struct latch_activity_connect), LATCH_ACT_CONNECT);
  return 0;
}

/* Opens: the path as given, recorded only under a watched prefix. */
struct prefix_search {
  const char* path;
  __u32 len;
  int match;
};

static long prefix_step(__u32 i, void* ctx) {
  struct prefix_search* s = ctx;
  const struct latch_path_prefix* prefix = bpf_map_lookup_elem(&latch_prefixes, &i);
  if (prefix && latch_prefix_match(s->path, s->len, prefix)) {
    s->match = 1;
    return 1; /* found: stop */
  }
  return 0;
}

/* Whether path[0, len) is under a watched prefix. (bpf_loop: the verifier
 * checks one step, not every prefix times every byte.) */
static __always_inline int watched_path(const struct latch_activity_config* cfg, const char* path,
                                        __u32 len) {
  struct prefix_search s = {.path = path, .len = len, .match = 0};
  __u32 n = cfg->prefix_count;
  if (n > LATCH_MAX_PREFIXES) n = LATCH_MAX_PREFIXES;
  bpf_loop(n, prefix_step, &s, 0);
  return s.match;
}

/* Where a path is put together from its components, right to left. */
#define LATCH_PATH_DEPTH 32
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, char[1024]);
} latch_act_pathbuf SEC(".maps");

struct path_walk {
  struct dentry* d;
  struct vfsmount* vm;
  struct mount* m;
  __u64 mnt_off;
  char* buf;
  __u32 pos; /* the path grows leftwards, ending at buf[512) */
};

/* One step up from w->d: a component written, or a mount crossed. */
static long path_step(__u32 i, void* ctx) {
  struct path_walk* w = ctx;
  /* Locals first: CO-RE relocations are for the kernel's types, not ours. */
  struct dentry* d = w->d;
  struct vfsmount* vm = w->vm;
  struct mount* m = w->m;
  if (d == BPF_CORE_READ(vm, mnt_root)) {
    struct mount* parent = BPF_CORE_READ(m, mnt_parent);
    if (parent == m) return 1; /* the root of everything */
    w->d = BPF_CORE_READ(m, mnt_mountpoint);
    w->m = parent;
    w->vm = (struct vfsmount*)((char*)parent + w->mnt_off);
    return 0;
  }
  struct dentry* up = BPF_CORE_READ(d, d_parent);
  if (up == d) return 1;
  __u32 len = BPF_CORE_READ(d, d_name.len) & 255;
  __u32 pos = w->pos;
  if (len + 1 > pos || pos > 512) return 1; /* longer than the buffer: the start is lost */
  pos -= len;
  char* buf = w->buf;
  bpf_probe_read_kernel(buf + (pos & 511), len, BPF_CORE_READ(d, d_name.name));
  pos -= 1;
  buf[pos & 511] = '/';
  w->pos = pos;
  w->d = up;
  return 0;
}

/* The absolute path of the file the current task has open as `fd`, into
 * out[LATCH_OPEN_PATH_MAX] (cut at its end if longer): walked from the file's
 * dentry up to the root of everything, across mounts, at most
 * LATCH_PATH_DEPTH steps. Its length, or 0. */
static __always_inline __u32 fd_path(struct task_struct* task, int fd, char* out) {
  __u32 zero = 0;
  char* buf = bpf_map_lookup_elem(&latch_act_pathbuf, &zero);
  if (!buf || fd < 0) return 0;
  struct fdtable* fdt = BPF_CORE_READ(task, files, fdt);
  if ((unsigned int)fd >= BPF_CORE_READ(fdt, max_fds)) return 0;
  struct file** fds = BPF_CORE_READ(fdt, fd);
  struct file* f = 0;
  if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) != 0 || !f) return 0;
  struct path_walk w = {};
  w.d = BPF_CORE_READ(f, f_path.dentry);
  w.vm = BPF_CORE_READ(f, f_path.mnt);
  w.mnt_off = bpf_core_field_offset(struct mount, mnt);
  w.m = (struct mount*)((char*)w.vm - w.mnt_off);
  w.buf = buf;
  w.pos = 512;
  bpf_loop(LATCH_PATH_DEPTH, path_step, &w, 0);
  __u32 pos = w.pos;
  if (pos > 512) return 0;
  if (pos == 512) {
    pos = 511;
    buf[511] = '/';
  }
  __u32 n = 512 - pos;
  if (n > LATCH_OPEN_PATH_MAX - 1) n = LATCH_OPEN_PATH_MAX - 1;
  n &= LATCH_OPEN_PATH_MAX - 1;
  bpf_probe_read_kernel(out, n, buf + (pos & 511));
  out[n] = 0;
  return n;
}

/* What latch_activity_open.pad means in a pending record (it is 0 in a sent
 * one): how its relative path is to be resolved when the call returns. */
enum latch_open_pending {
  LATCH_OPEN_ABSOLUTE = 0,   /* matched at entry */
  LATCH_OPEN_RELATIVE = 1,   /* matched by the path of the fd it returns */
  LATCH_OPEN_UNRESOLVED = 2, /* into a fixed-file slot: no fd to resolve, not recorded */
};

/* The rest of an open whose path is in o->path (n: the string's length with
 * its NUL, as the read helpers return it). 1 if it is to be parked. */
static __always_inline int open_prepare(const struct latch_activity_config* cfg,
                                        struct latch_activity_open* o, long n, __u32 flags,
                                        __u32 mode, int fixed_slot) {
  if (n <= 0) return 0;
  __u32 len = (__u32)n - 1;
  /* An absolute path is matched now; a relative one (after a chdir, or to a
   * directory fd) when the call returns, against the path of what it opened. */
  int relative = o->path[0] != '/';
  if (!relative && !watched_path(cfg, o->path, len)) return 0;
  if (relative && fixed_slot) return 0;
  o->path_len = len;
  o->flags = flags;
  o->mode = mode;
  o->result = 0;
  o->pad = relative ? LATCH_OPEN_RELATIVE : LATCH_OPEN_ABSOLUTE;
  return 1;
}

static __always_inline int open_enter(const char* filename, __u32 flags, __u32 mode) {
  const struct latch_activity_config* cfg = act_config();
  if (!cfg || cfg->prefix_count == 0) return 0;
  __u64 grant_id;
  union latch_pending* p = begin(cfg, bpf_get_current_task_btf(), LATCH_ACT_OPEN,
                                 sizeof(struct latch_activity_open), &grant_id);
  if (!p) return 0;
  long n = bpf_probe_read_user_str(p->open.path, sizeof(p->open.path), filename);
  if (open_prepare(cfg, &p->open, n, flags, mode, 0)) park(p);
  return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int latch_act_openat_enter(struct trace_event_raw_sys_enter* ctx) {
  return open_enter((const char*)ctx->args[1], (__u32)ctx->args[2], (__u32)ctx->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_openat2")
int latch_act_openat2_enter(struct trace_event_raw_sys_enter* ctx) {
  struct open_how how = {};
  bpf_probe_read_user(&how, sizeof(how), (const void*)ctx->args[2]);
  return open_enter((const char*)ctx->args[1], (__u32)how.flags, (__u32)how.mode);
}

/* An open parked under `key` returned `result`: sent if what it names (or,
 * for a relative path, what it opened) is watched. */
static __always_inline void open_complete(const struct latch_activity_config* cfg,
                                          union latch_pending* p, __s32 result, __u64 key) {
  p->open.result = result;
  if (p->open.pad != LATCH_OPEN_ABSOLUTE) {
    /* Relative: what did it open? Unresolvable (it failed) is not recorded. */
    __u32 resolved = p->open.pad == LATCH_OPEN_RELATIVE
                         ? fd_path(bpf_get_current_task_btf(), result, p->open.path)
                         : 0;
    if (resolved == 0 || !watched_path(cfg, p->open.path, resolved)) {
      bpf_map_delete_elem(&latch_act_pending, &key);
      return;
    }
    p->open.path_len = resolved;
    p->open.pad = 0;
  }
  __u32 len = p->open.path_len;
  if (len > LATCH_OPEN_PATH_MAX) len = LATCH_OPEN_PATH_MAX;
  __u64 size = offsetof(struct latch_activity_open, path) + len;
  p->h.size = size; /* the path's length, not the buffer's */
  send_and_drop_as(cfg, p, size, LATCH_ACT_OPEN, key);
}

static __always_inline int open_exit(struct trace_event_raw_sys_exit* ctx) {
  const struct latch_activity_config* cfg = act_config();
  if (!cfg) return 0;
  union latch_pending* p = finish(LATCH_ACT_OPEN);
  if (!p) return 0;
  open_complete(cfg, p, (__s32)ctx->ret, bpf_get_current_pid_tgid());
  return 0;
}

SEC("tracepoint/syscalls/sys_exit_openat")
int latch_act_openat_exit(struct trace_event_raw_sys_exit* ctx) { return open_exit(ctx); }

SEC("tracepoint/syscalls/sys_exit_openat2")
int latch_act_openat2_exit(struct trace_event_raw_sys_exit* ctx) { return open_exit(ctx); }

/* io_uring: a watched process's instances as it sets them up, its
 * submissions counted by operation, and its connects and opens recorded like
 * the system calls' (target at submission, where the request has been
 * prepared; result at completion), marked as through io_uring. The
 * submitting task is the caller, or its SQPOLL thread (same process). */
#define LATCH_IORING_OP_CONNECT 16
#define LATCH_IORING_OP_OPENAT 18
#define LATCH_IORING_OP_OPENAT2 28

SEC("tp_btf/io_uring_create")
int BPF_PROG(latch_act_uring_create, int fd, void* ring, __u32 sq_entries, __u32 cq_entries,
             __u32 flags) {
  const struct latch_activity_config* cfg = act_config();
  if (!cfg) return 0;
  struct task_struct* task = bpf_get_current_task_btf();
  __u64 grant_id;
  if (!watched(cfg, task, &grant_id)) return 0;
  struct latch_activity_uring_setup u = {};
  fill_header(&u.h, task, LATCH_ACT_URING_SETUP, sizeof(u), grant_id);
  u.fd = fd;
  u.sq_entries = sq_entries;
  u.cq_entries = cq_entries;
  u.flags = flags;
  emit(cfg, task, &u, sizeof(u), LATCH_ACT_URING_SETUP);
  return 0;
}

static __always_inline void count_uring_op(struct task_struct* task, __u64 grant_id, __u8 opcode) {
  __u32 tgid = task->tgid;
  struct latch_uring_state* s = bpf_map_lookup_elem(&latch_uring, &tgid);
  if (!s) {
    struct latch_uring_state fresh = {};
    bpf_map_update_elem(&latch_uring, &tgid, &fresh, BPF_NOEXIST);
    s = bpf_map_lookup_elem(&latch_uring, &tgid);
    if (!s) return;
  }
  __u64 now = bpf_ktime_get_boot_ns();
  if (s->window_start_ns != 0 && now - s->window_start_ns >= LATCH_URING_REPORT_NS) {
    send_uring_ops(s, task, grant_id);
  }
  if (s->window_start_ns == 0) s->window_start_ns = now;
  __u32 slot = opcode < LATCH_URING_OPCODES ? opcode : LATCH_URING_OPCODES - 1;
  __sync_fetch_and_add(&s->submitted[slot & (LATCH_URING_OPCODES - 1)], 1);
}

SEC("tp_btf/io_uring_submit_req")
int BPF_PROG(latch_act_uring_submit, struct io_kiocb* req) {
  const struct latch_activity_config* cfg = act_config();
  if (!cfg) return 0;
  struct task_struct* task = bpf_get_current_task_btf();
  __u64 grant_id;
  if (!watched(cfg, task, &grant_id)) return 0;
  __u8 opcode = BPF_CORE_READ(req, opcode);
  count_uring_op(task, grant_id, opcode);
  /* The prepared request sits in the command area at the start of io_kiocb. */
  __u64 key = (__u64)req;
  if (opcode == LATCH_IORING_OP_CONNECT) {
    union latch_pending* p =
        begin_watched(task, LATCH_ACT_CONNECT, sizeof(struct latch_activity_connect), grant_id);
    if (!p) return 0;
    struct io_connect* conn = (struct io_connect*)req;
    if (!read_destination(&p->connect, BPF_CORE_READ(conn, addr))) return 0;
    p->h.via = LATCH_VIA_IO_URING;
    park_as(p, key);
  } else if ((opcode == LATCH_IORING_OP_OPENAT || opcode == LATCH_IORING_OP_OPENAT2) &&
             cfg->prefix_count > 0) {
    union latch_pending* p =
        begin_watched(task, LATCH_ACT_OPEN, sizeof(struct latch_activity_open), grant_id);
    if (!p) return 0;
    struct io_open* o = (struct io_open*)req;
    const char* name = BPF_CORE_READ(o, filename, name);
    long n = bpf_probe_read_kernel_str(p->open.path, sizeof(p->open.path), name);
    if (!open_prepare(cfg, &p->open, n, (__u32)BPF_CORE_READ(o, how.flags),
                      (__u32)BPF_CORE_READ(o, how.mode), BPF_CORE_READ(o, file_slot) != 0)) {
      return 0;
    }
    p->h.via = LATCH_VIA_IO_URING;
    park_as(p, key);
  }
  return 0;
}

SEC("tp_btf/io_uring_complete")
int BPF_PROG(latch_act_uring_complete, struct io_ring_ctx* ring, void* req,
             struct io_uring_cqe* cqe) {
  const struct latch_activity_config* cfg = act_config();
  if (!cfg || !req) return 0;
  __u64 key = (__u64)req;
  union latch_pending* p = bpf_map_lookup_elem(&latch_act_pending, &key);
  if (!p) return 0;
  /* A request address is reused once its request is done: a record left
   * behind (its completion not seen) must match the operation. */
  __u8 opcode = BPF_CORE_READ((struct io_kiocb*)req, opcode);
  __s32 res = BPF_CORE_READ(cqe, res);
  if (p->h.kind == LATCH_ACT_CONNECT && opcode == LATCH_IORING_OP_CONNECT) {
    p->connect.result = res;
    send_and_drop_as(cfg, p, sizeof(struct latch_activity_connect), LATCH_ACT_CONNECT, key);
  } else if (p->h.kind == LATCH_ACT_OPEN &&
             (opcode == LATCH_IORING_OP_OPENAT || opcode == LATCH_IORING_OP_OPENAT2)) {
    open_complete(cfg, p, res, key);
  } else {
    bpf_map_delete_elem(&latch_act_pending, &key);
  }
  return 0;
}

/* Privilege changes: the credentials before (at entry) and after (at exit). */
static __always_inline int cred_enter(struct trace_event_raw_sys_enter* ctx) {
  const struct latch_activity_config* cfg = act_config();
  if (!cfg) return 0;
  struct task_struct* task = bpf_get_current_task_btf();
  __u64 grant_id;
  union latch_pending* p =
      begin(cfg, task, LATCH_ACT_CRED, sizeof(struct latch_activity_cred), &grant_id);
  if (!p) return 0;
  struct latch_activity_cred* c = &p->cred;
  const struct cred* cred = task->cred;
  c->syscall_nr = (__u32)ctx->id;
  c->result = 0;
  c->old_uid = cred->uid.val;
  c->old_euid = cred->euid.val;
  c->old_gid = cred->gid.val;
  c->old_egid = cred->egid.val;
  c->old_cap_effective = cred->cap_effective.val;
  park(p);
  return 0;
}

static __always_inline int cred_exit(struct trace_event_raw_sys_exit* ctx) {
  const struct latch_activity_config* cfg = act_config();
  if (!cfg) return 0;
  union latch_pending* p = finish(LATCH_ACT_CRED);
  if (!p) return 0;
  struct task_struct* task = bpf_get_current_task_btf();
  const struct cred* cred = task->cred;
  struct latch_activity_cred* c = &p->cred;
  c->result = (__s32)ctx->ret;
  c->new_uid = cred->uid.val;
  c->new_euid = cred->euid.val;
  c->new_gid = cred->gid.val;
  c->new_egid = cred->egid.val;
  c->new_cap_effective = cred->cap_effective.val;
  send_and_drop(cfg, p, sizeof(struct latch_activity_cred), LATCH_ACT_CRED);
  return 0;
}

#define LATCH_CRED_SYSCALL(name)                                                                  \
  SEC("tracepoint/syscalls/sys_enter_" #name)                                                     \
  int latch_act_##name##_enter(struct trace_event_raw_sys_enter* ctx) { return cred_enter(ctx); } \
  SEC("tracepoint/syscalls/sys_exit_" #name)                                                      \
  int latch_act_##name##_exit(struct trace_event_raw_sys_exit* ctx) { return cred_exit(ctx); }

LATCH_CRED_SYSCALL(setuid)
LATCH_CRED_SYSCALL(setgid)
LATCH_CRED_SYSCALL(setreuid)
LATCH_CRED_SYSCALL(setregid)
LATCH_CRED_SYSCALL(setresuid)
LATCH_CRED_SYSCALL(setresgid)
LATCH_CRED_SYSCALL(capset)
