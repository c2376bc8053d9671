/* The guard's decision logic as plain functions of their inputs, with no map
 * or helper calls: the BPF programs call them with what they looked up, and a
 * host unit test (tests/bpf/guard_decision_test.cc) calls them directly. */
#ifndef LATCH_BPF_GUARD_DECISION_H_
#define LATCH_BPF_GUARD_DECISION_H_

#include "guard_abi.h"

#ifndef LATCH_INLINE
#define LATCH_INLINE static inline __attribute__((always_inline))
#endif

/* Index of the first rule of `r` that covers (protocol, port), or -1. */
LATCH_INLINE int latch_match_rule(const struct latch_cidr_rules* r, __u8 protocol, __u16 port) {
  __u32 count = r->count;
  if (count > LATCH_MAX_RULES_PER_CIDR) count = LATCH_MAX_RULES_PER_CIDR;
  for (int i = 0; i < LATCH_MAX_RULES_PER_CIDR; i++) {
    if ((__u32)i >= count) break;
    const struct latch_rule* rule = &r->rules[i];
    if (rule->protocol != LATCH_PROTO_ANY && rule->protocol != protocol) continue;
    if (port < rule->port_lo || port > rule->port_hi) continue;
    return i;
  }
  return -1;
}

/* A grant is live from not_before (inclusive) to not_after (exclusive). */
LATCH_INLINE int latch_grant_live(const struct latch_grant_value* g, __u64 now_boot_ns) {
  return g != 0 && g->not_before_ns <= now_boot_ns && now_boot_ns < g->not_after_ns;
}

LATCH_INLINE enum latch_verdict latch_verdict_for(__u8 mode, int has_live_grant) {
  if (has_live_grant) return LATCH_VERDICT_ALLOW_GRANT;
  return mode == LATCH_MODE_AUDIT ? LATCH_VERDICT_AUDIT_ALLOW : LATCH_VERDICT_DENY;
}

/* Writes the IPv4-mapped form (::ffff:a.b.c.d) of an IPv4 address given in
 * network byte order, as the kernel hands it to sock_addr programs. */
LATCH_INLINE void latch_map_ipv4(__u32 ip4_be, __u8 out[LATCH_ADDR_LEN]) {
  for (int i = 0; i < 10; i++) out[i] = 0;
  out[10] = 0xff;
  out[11] = 0xff;
  const __u8* b = (const __u8*)&ip4_be;
  out[12] = b[0];
  out[13] = b[1];
  out[14] = b[2];
  out[15] = b[3];
}

#endif /* LATCH_BPF_GUARD_DECISION_H_ */
