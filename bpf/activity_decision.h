/* The activity programs' decisions as plain functions: whether a watch entry
 * is live, whether a path is under a watched prefix, and per-process
 * throttling. The BPF programs call them with what they looked up; a host
 * unit test (tests/bpf/activity_decision_test.cc) calls them directly. */
#ifndef LATCH_BPF_ACTIVITY_DECISION_H_
#define LATCH_BPF_ACTIVITY_DECISION_H_

#include "activity_abi.h"

#ifndef LATCH_INLINE
#define LATCH_INLINE static inline __attribute__((always_inline))
#endif

/* A watch entry is live from not_before (inclusive) to not_after (exclusive). */
LATCH_INLINE int latch_watch_live(const struct latch_watch_value* w, __u64 now_boot_ns) {
  return w != 0 && w->not_before_ns <= now_boot_ns && now_boot_ns < w->not_after_ns;
}

/* Whether the first `path_len` bytes of `path` start with prefix `p`. */
LATCH_INLINE int latch_prefix_match(const char* path, __u32 path_len,
                                    const struct latch_path_prefix* p) {
  __u32 len = p->len;
  if (len == 0 || len > LATCH_PREFIX_MAX || len > path_len) return 0;
  for (__u32 i = 0; i < LATCH_PREFIX_MAX; i++) {
    if (i >= len) return 1;
    if (path[i] != p->path[i]) return 0;
  }
  return 1;
}

enum latch_throttle_result { LATCH_THROTTLE_PASS = 0, LATCH_THROTTLE_SUPPRESS = 1 };

/* Suppressions not yet in a summary. */
LATCH_INLINE __u32 latch_throttle_pending(const struct latch_throttle_state* s) {
  __u32 n = 0;
  for (int k = 0; k < LATCH_ACT_KINDS; k++) n += s->suppressed[k];
  return n;
}

/* One event of `kind` at `now` from the process whose state is `s`: at most
 * `limit` events pass per `window`; the rest are counted in s->suppressed.
 * *summary_due is set when the event opens a new window with suppressions
 * pending: the caller then sends a summary (latch_throttle_take) first. */
LATCH_INLINE enum latch_throttle_result latch_throttle_step(struct latch_throttle_state* s,
                                                            __u64 now, __u32 limit, __u64 window,
                                                            __u32 kind, int* summary_due) {
  *summary_due = 0;
  if (limit == 0) return LATCH_THROTTLE_PASS;
  if (now - s->window_start_ns >= window) {
    *summary_due = latch_throttle_pending(s) > 0;
    s->window_start_ns = now;
    s->events = 0;
  }
  if (s->events >= limit) {
    if (kind < LATCH_ACT_KINDS) {
      if (latch_throttle_pending(s) == 0) s->suppressed_since_ns = s->window_start_ns;
      __atomic_fetch_add(&s->suppressed[kind], 1, __ATOMIC_RELAXED);
    }
    return LATCH_THROTTLE_SUPPRESS;
  }
  s->events++;
  return LATCH_THROTTLE_PASS;
}

/* Moves the pending suppressions into `out` (a summary's counts), leaving
 * none: each suppression is in exactly one summary, even with threads of the
 * process racing on other CPUs. Returns how many were taken. */
LATCH_INLINE __u32 latch_throttle_take(struct latch_throttle_state* s, __u32 out[LATCH_ACT_KINDS]) {
  __u32 n = 0;
  for (int k = 0; k < LATCH_ACT_KINDS; k++) {
    out[k] = __atomic_exchange_n(&s->suppressed[k], 0, __ATOMIC_RELAXED);
    n += out[k];
  }
  return n;
}

#endif /* LATCH_BPF_ACTIVITY_DECISION_H_ */
