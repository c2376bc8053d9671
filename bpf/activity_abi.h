/* The contract between the activity programs (activity.bpf.c) and user space
 * (agent/activity_capture.*): what a watched principal did (programs run,
 * processes ended, connects, opens of watched paths, privilege changes), the
 * maps that say who is watched and which paths, and the counters. Both sides
 * include this one header; the static asserts at the bottom catch padding. */
#ifndef LATCH_BPF_ACTIVITY_ABI_H_
#define LATCH_BPF_ACTIVITY_ABI_H_

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Who is watched. */
enum latch_watch_mode {
  LATCH_WATCH_OFF = 0,
  LATCH_WATCH_GRANTS = 1, /* principals in latch_watched with a live entry (grant holders) */
  LATCH_WATCH_CGROUP = 2, /* tasks in config.cgroup_id or below it, and grant holders */
  LATCH_WATCH_ALL = 3,    /* every task */
};

/* latch_watched: a principal (as in grants: uid or cgroup id) -> the grant it
 * holds that ends last. User space keeps it level with the grants map; the
 * programs check the expiry themselves, so a lapsed grant stops the watching
 * on time with no help from user space. */
#define LATCH_MAX_WATCHED 65536
struct latch_watch_key {
  __u32 kind; /* enum latch_principal_kind (guard_abi.h) */
  __u32 pad;
  __u64 principal;
};
struct latch_watch_value {
  __u64 not_before_ns; /* boot-time clock */
  __u64 not_after_ns;  /* boot-time clock, exclusive */
  __u64 grant_id;
};

/* Watched path prefixes: an open is recorded when its path, as the caller
 * gave it, starts with one of them. */
#define LATCH_MAX_PREFIXES 16
#define LATCH_PREFIX_MAX 128
struct latch_path_prefix {
  __u32 len; /* 1..LATCH_PREFIX_MAX */
  char path[LATCH_PREFIX_MAX];
};

/* The one-slot configuration array. */
struct latch_activity_config {
  __u32 mode;            /* enum latch_watch_mode */
  __u32 prefix_count;    /* latch_prefixes[0..prefix_count) are in use */
  __u64 cgroup_id;       /* LATCH_WATCH_CGROUP: this cgroup and its descendants */
  __u32 cgroup_level;    /* its level in the hierarchy (the root is 0) */
  __u32 cgroup_watches;  /* cgroup principals in latch_watched: 0 skips the ancestor walk */
  __u32 throttle_events; /* events per process per window before suppression (0: none) */
  __u32 pad;
  __u64 throttle_window_ns; /* the window */
  /* The guard's cgroup (issue 16): tasks outside it are never watched, so two
   * agents on one kernel (hosts in namespaces) record only their own host's
   * tasks. 0: no bound (the guard is on the root cgroup). */
  __u64 scope_cgroup_id;
  __u32 scope_cgroup_level;
  __u32 pad2;
};

enum latch_activity_kind {
  LATCH_ACT_EXEC = 1,
  LATCH_ACT_EXIT = 2,
  LATCH_ACT_CONNECT = 3,
  LATCH_ACT_OPEN = 4,
  LATCH_ACT_CRED = 5,        /* setuid family or capset */
  LATCH_ACT_THROTTLE = 6,    /* a summary of what one process had suppressed */
  LATCH_ACT_URING_SETUP = 7, /* an io_uring instance set up */
  LATCH_ACT_URING_OPS = 8,   /* io_uring submissions, counted by operation */
  LATCH_ACT_KINDS = 9,
};

/* latch_activity_header.via: how a connect or open was asked for. Through
 * io_uring the record is made at submission (target) and sent at completion
 * (result); the task is the one that submitted. */
enum latch_activity_via {
  LATCH_VIA_SYSCALL = 0,
  LATCH_VIA_IO_URING = 1,
};

/* Every record starts with this. `size` is the whole record's. */
struct latch_activity_header {
  __u64 ktime_boot_ns;
  __u64 cgroup_id;
  __u64 grant_id; /* the grant the principal held; 0 when watched without one */
  __u32 pid;      /* thread id */
  __u32 tgid;     /* process id */
  __u32 ppid;     /* parent's process id */
  __u32 uid;
  __u32 euid;
  __u32 gid;
  __u16 kind; /* enum latch_activity_kind */
  __u16 size;
  __u32 via; /* enum latch_activity_via */
  char comm[16];
};

#define LATCH_EXEC_PATH_MAX 256
#define LATCH_EXEC_ARGS_MAX 512
struct latch_activity_exec {
  struct latch_activity_header h;
  __u16 path_len; /* bytes of data[] that are the path, without NUL */
  __u16 args_len; /* bytes after it: the arguments, each ending in NUL */
  __u8 args_truncated;
  __u8 pad[3];
  char data[LATCH_EXEC_PATH_MAX + LATCH_EXEC_ARGS_MAX];
};

struct latch_activity_exit {
  struct latch_activity_header h;
  __s32 exit_code; /* as wait(2) reports it: status << 8 | signal */
  __u32 pad;
};

struct latch_activity_connect {
  struct latch_activity_header h;
  __s32 result;  /* 0 or -errno */
  __u16 family;  /* AF_INET or AF_INET6 */
  __u16 port;    /* host byte order */
  __u8 addr[16]; /* IPv4 as IPv4-mapped IPv6 */
};

#define LATCH_OPEN_PATH_MAX 256
struct latch_activity_open {
  struct latch_activity_header h;
  __s32 result; /* the fd, or -errno */
  __u32 flags;  /* O_* as passed */
  __u32 mode;
  __u16 path_len;
  __u16 pad;
  char path[LATCH_OPEN_PATH_MAX];
};

struct latch_activity_cred {
  struct latch_activity_header h;
  __s32 result;
  __u32 syscall_nr; /* which of the setuid family, or capset */
  __u32 old_uid, old_euid, old_gid, old_egid;
  __u32 new_uid, new_euid, new_gid, new_egid;
  __u64 old_cap_effective;
  __u64 new_cap_effective;
};

struct latch_activity_throttle {
  struct latch_activity_header h;
  __u64 window_start_ns;             /* boot-time clock: from the first suppressed event's window */
  __u64 window_end_ns;               /* when the summary was made */
  __u32 suppressed[LATCH_ACT_KINDS]; /* by kind */
  __u32 pad;
};

/* io_uring_setup by a watched process (the io_uring_create tracepoint). */
struct latch_activity_uring_setup {
  struct latch_activity_header h;
  __s32 fd; /* the instance's file descriptor */
  __u32 sq_entries;
  __u32 cq_entries;
  __u32 flags; /* IORING_SETUP_* */
};

/* What a watched process submitted through io_uring, by opcode, since
 * window_start_ns: sent when it exits, and by its first submission after
 * LATCH_URING_REPORT_NS have passed. Opcodes at or above
 * LATCH_URING_OPCODES (newer than this header) are counted in the last slot. */
#define LATCH_URING_OPCODES 64
#define LATCH_URING_REPORT_NS (60ull * 1000 * 1000 * 1000)
struct latch_activity_uring_ops {
  struct latch_activity_header h;
  __u64 window_start_ns; /* boot-time clock */
  __u64 window_end_ns;
  __u32 submitted[LATCH_URING_OPCODES];
};

/* Per-process io_uring counts (an LRU hash keyed by tgid). */
struct latch_uring_state {
  __u64 window_start_ns;
  __u32 submitted[LATCH_URING_OPCODES];
};

/* Per-process throttle state (an LRU hash keyed by tgid). */
struct latch_throttle_state {
  __u64 window_start_ns;
  __u64 suppressed_since_ns; /* start of the window of the oldest unreported suppression */
  __u32 events;              /* in this window */
  __u32 suppressed[LATCH_ACT_KINDS];
};

/* Per-CPU counters: [kind] submitted, [LATCH_ACT_KINDS + kind] lost (ring
 * buffer full), [2 * LATCH_ACT_KINDS + kind] suppressed by throttling. */
#define LATCH_ACT_CTR_SUBMITTED 0
#define LATCH_ACT_CTR_LOST LATCH_ACT_KINDS
#define LATCH_ACT_CTR_SUPPRESSED (2 * LATCH_ACT_KINDS)
#define LATCH_ACT_CTR_COUNT (3 * LATCH_ACT_KINDS)

#ifdef __cplusplus
static_assert(sizeof(struct latch_watch_key) == 16, "latch_watch_key layout");
static_assert(sizeof(struct latch_watch_value) == 24, "latch_watch_value layout");
static_assert(sizeof(struct latch_activity_header) == 72, "latch_activity_header layout");
static_assert(sizeof(struct latch_activity_exec) == 72 + 8 + 768, "latch_activity_exec layout");
static_assert(sizeof(struct latch_activity_exit) == 80, "latch_activity_exit layout");
static_assert(sizeof(struct latch_activity_connect) == 96, "latch_activity_connect layout");
static_assert(sizeof(struct latch_activity_open) == 72 + 16 + 256, "latch_activity_open layout");
static_assert(sizeof(struct latch_activity_cred) == 72 + 8 + 32 + 16, "latch_activity_cred layout");
static_assert(sizeof(struct latch_activity_throttle) == 72 + 16 + 40, "latch_activity_throttle");
static_assert(sizeof(struct latch_activity_uring_setup) == 72 + 16, "latch_activity_uring_setup");
static_assert(sizeof(struct latch_activity_uring_ops) == 72 + 16 + 256, "latch_activity_uring_ops");
#endif

#endif /* LATCH_BPF_ACTIVITY_ABI_H_ */
