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

/* Ring buffer submit flags: a record wakes the reader only once `wakeup_bytes`
 * are waiting (0: every record wakes it, the kernel's default). Below the
 * mark the reader finds records on its own timer, so a busy hook does not
 * pay for a wakeup per record (issue 13.10: 11-14 us of the agent's CPU per
 * record, a quarter of a granted connect's rate). */
#define LATCH_RB_NO_WAKEUP 1    /* BPF_RB_NO_WAKEUP */
#define LATCH_RB_FORCE_WAKEUP 2 /* BPF_RB_FORCE_WAKEUP */
LATCH_INLINE __u64 latch_ringbuf_flags(__u64 waiting_bytes, __u64 wakeup_bytes) {
  if (wakeup_bytes == 0) return 0;
  return waiting_bytes >= wakeup_bytes ? LATCH_RB_FORCE_WAKEUP : LATCH_RB_NO_WAKEUP;
}

/* 1 if the 16-byte address is the IPv4-mapped form ::ffff:a.b.c.d. */
LATCH_INLINE int latch_is_mapped_ipv4(const __u8 a[LATCH_ADDR_LEN]) {
  for (int i = 0; i < 10; i++)
    if (a[i] != 0) return 0;
  return a[10] == 0xff && a[11] == 0xff;
}

/* 1 if the address is unspecified: :: or its IPv4-mapped form ::ffff:0.0.0.0. */
LATCH_INLINE int latch_is_unspecified(const __u8 a[LATCH_ADDR_LEN]) {
  for (int i = 0; i < 10; i++)
    if (a[i] != 0) return 0;
  if (a[10] == 0 && a[11] == 0) return a[12] == 0 && a[13] == 0 && a[14] == 0 && a[15] == 0;
  return a[10] == 0xff && a[11] == 0xff && a[12] == 0 && a[13] == 0 && a[14] == 0 && a[15] == 0;
}

/* The destination the kernel really sends to when a socket names the
 * unspecified address (the kernel's routing, not ours):
 * - IPv4 0.0.0.0 (and ::ffff:0.0.0.0 from an IPv6 socket): the socket's
 *   source address if it has one (bound, or IP_PKTINFO's for a datagram),
 *   otherwise 127.0.0.1 (ip_route_output_key_hash_rcu);
 * - IPv6 ::  -> ::1, or ::ffff:127.0.0.1 on a socket bound to an
 *   IPv4-mapped address (tcp_v6_connect, ip6_datagram_connect, udpv6_sendmsg).
 * `addr` is rewritten in place; `src` is the socket's source, 16 bytes,
 * IPv4-mapped for IPv4, all zero when it has none. Any other address is left
 * as it is. Without this a resource of 127.0.0.1 was reached through 0.0.0.0. */
LATCH_INLINE void latch_effective_destination(__u8 addr[LATCH_ADDR_LEN],
                                              const __u8 src[LATCH_ADDR_LEN]) {
  if (!latch_is_unspecified(addr)) return;
  int mapped_dst = addr[10] == 0xff;
  if (mapped_dst && latch_is_mapped_ipv4(src) && !latch_is_unspecified(src)) {
    for (int i = 0; i < LATCH_ADDR_LEN; i++) addr[i] = src[i];
    return;
  }
  for (int i = 0; i < LATCH_ADDR_LEN; i++) addr[i] = 0;
  if (mapped_dst || latch_is_mapped_ipv4(src)) {
    addr[10] = 0xff;
    addr[11] = 0xff;
    addr[12] = 127;
    addr[15] = 1;
  } else {
    addr[15] = 1;
  }
}

#endif /* LATCH_BPF_GUARD_DECISION_H_ */
