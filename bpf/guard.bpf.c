// SPDX-License-Identifier: GPL-2.0
/* The connection guard: cgroup sock_addr programs that refuse connect() and
 * sendmsg() to protected destinations unless the calling task's uid, or its
 * cgroup or an ancestor, holds a live grant for that resource. Every decision
 * on a protected destination is counted and sent to user space on a ring
 * buffer; traffic to anything else is not touched and costs one trie lookup.
 * cgroup_skb programs stop the traffic of connections to protected
 * destinations once no live grant covers them. */
// vmlinux.h must come before the libbpf headers.
// clang-format off
#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
// clang-format on

#include "guard_abi.h"
#include "guard_decision.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

char LICENSE[] SEC("license") = "GPL";

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __uint(max_entries, LATCH_MAX_CIDRS);
  __type(key, struct latch_cidr_key);
  __type(value, struct latch_cidr_rules);
} latch_resources SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, LATCH_MAX_GRANTS);
  __type(key, struct latch_grant_key);
  __type(value, struct latch_grant_value);
} latch_grants SEC(".maps");

/* One bit per remote port that some resource names: the per-packet programs
 * look no further at sockets whose peer port is not protected. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, LATCH_PORT_WORDS);
  __type(key, __u32);
  __type(value, __u64);
} latch_ports SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, LATCH_CTR_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} latch_counters SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct latch_agent_state);
} latch_agent_state SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1 << 22); /* 4 MiB; user space may resize before load */
} latch_events SEC(".maps");

/* Set by user space before load (GuardOptions::wakeup_bytes). */
const volatile __u64 latch_wakeup_bytes = 0;

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct latch_cidr_rules);
} latch_local SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct latch_sock_state);
} latch_socks SEC(".maps");

static __always_inline void count(__u32 slot) {
  __u64* v = bpf_map_lookup_elem(&latch_counters, &slot);
  if (v) *v += 1;
}

/* The live grant under `key` (filled in from kind, resource, principal), or 0. */
static __always_inline const struct latch_grant_value* find_grant(struct latch_grant_key* key,
                                                                  __u32 kind, __u32 resource_id,
                                                                  __u64 principal, __u64 now) {
  key->kind = kind;
  key->resource_id = resource_id;
  key->principal = principal;
  const struct latch_grant_value* g = bpf_map_lookup_elem(&latch_grants, key);
  return latch_grant_live(g, now) ? g : 0;
}

/* One decision record, built on the stack and copied by one helper call
 * (reserve and submit are two). `task` may be 0 (no process context): the
 * record then names no process. */
static __always_inline void emit_decision(struct task_struct* task, __u64 now, __u64 cgroup_id,
                                          const struct latch_grant_value* grant, __u32 uid,
                                          __u32 gid, __u32 resource_id, __u16 family, __u16 port,
                                          __u8 protocol, enum latch_verdict verdict, __u8 hook,
                                          const __u8 addr[LATCH_ADDR_LEN]) {
  struct latch_decision_event e;
  e.ktime_boot_ns = now;
  e.cgroup_id = cgroup_id;
  e.grant_id = grant ? grant->grant_id : 0;
  e.pid = task ? task->pid : 0;
  e.tgid = task ? task->tgid : 0;
  e.uid = uid;
  e.gid = gid;
  e.resource_id = resource_id;
  e.family = family;
  e.port = port;
  e.protocol = protocol;
  e.verdict = verdict;
  e.hook = hook;
  __builtin_memset(e.pad, 0, sizeof(e.pad));
  __builtin_memcpy(e.addr, addr, LATCH_ADDR_LEN);
  if (task) {
    __builtin_memcpy(e.comm, task->comm, sizeof(e.comm));
  } else {
    __builtin_memset(e.comm, 0, sizeof(e.comm));
  }
  __u64 flags = latch_ringbuf_flags(
      latch_wakeup_bytes ? bpf_ringbuf_query(&latch_events, BPF_RB_AVAIL_DATA) : 0,
      latch_wakeup_bytes);
  if (bpf_ringbuf_output(&latch_events, &e, sizeof(e), flags) != 0) {
    count(LATCH_CTR_RINGBUF_FULL); /* the decision stands; its record is counted as lost */
  } else {
    count(LATCH_CTR_EVENTS);
  }
}

/* Returns 1 to let the call proceed, 0 to fail it with EPERM. */
static __always_inline int decide(struct bpf_sock_addr* ctx, struct latch_cidr_key* key,
                                  __u16 family, __u8 hook) {
  const struct latch_cidr_rules* rules = bpf_map_lookup_elem(&latch_resources, key);
  if (!rules) return 1; /* not protected: untouched, no event */

  __u8 protocol = (__u8)ctx->protocol;
  __u16 port = bpf_ntohs((__u16)ctx->user_port);
  int idx = latch_match_rule(rules, protocol, port);
  if (idx < 0 || idx >= LATCH_MAX_RULES_PER_CIDR) return 1;
  const struct latch_rule* rule = &rules->rules[idx];
  __u32 resource_id = rule->resource_id;
  __u8 mode = rule->mode;

  /* The task's identity is read straight from its task_struct: one helper
   * call instead of one per field, which matters where every call and return
   * pays for speculation mitigations. The fields are those the uid, pid and
   * cgroup helpers read. */
  struct task_struct* task = bpf_get_current_task_btf();
  const struct cred* cred = task->cred;
  __u32 uid = cred->uid.val;
  __u64 now = bpf_ktime_get_boot_ns();
  struct latch_grant_key grant_key = {};
  const struct latch_grant_value* grant =
      find_grant(&grant_key, LATCH_PRINCIPAL_UID, resource_id, uid, now);
  /* The cgroup and its ancestors, nearest first (level 0 is the root). */
  __u64 cgroup_id = task->cgroups->dfl_cgrp->kn->id;
  if (!grant) grant = find_grant(&grant_key, LATCH_PRINCIPAL_CGROUP, resource_id, cgroup_id, now);
  for (int level = LATCH_MAX_CGROUP_DEPTH; level >= 1 && !grant; level--) {
    __u64 ancestor = bpf_get_current_ancestor_cgroup_id(level);
    if (ancestor == 0 || ancestor == cgroup_id) continue;
    grant = find_grant(&grant_key, LATCH_PRINCIPAL_CGROUP, resource_id, ancestor, now);
  }

  enum latch_verdict verdict = latch_verdict_for(mode, grant != 0);
  count(verdict == LATCH_VERDICT_ALLOW_GRANT ? LATCH_CTR_ALLOW_GRANT
        : verdict == LATCH_VERDICT_DENY      ? LATCH_CTR_DENY
                                             : LATCH_CTR_AUDIT_ALLOW);

  emit_decision(task, now, cgroup_id, grant, uid, cred->gid.val, resource_id, family, port,
                protocol, verdict, hook, key->addr);
  return verdict == LATCH_VERDICT_DENY ? 0 : 1;
}

/* The socket's source as 16 bytes (IPv4-mapped for IPv4), for the rare
 * unspecified destination only: the explicit source of this datagram
 * (IP_PKTINFO) if the hook has one, else the address the socket is bound to. */
static __always_inline void source4(struct bpf_sock_addr* ctx, __u8 hook,
                                    __u8 out[LATCH_ADDR_LEN]) {
  __u32 src = hook == LATCH_HOOK_SENDMSG4 ? ctx->msg_src_ip4 : 0;
  if (src == 0) {
    struct bpf_sock* sk = ctx->sk;
    if (sk) src = sk->src_ip4;
  }
  latch_map_ipv4(src, out);
}

static __always_inline void source6(struct bpf_sock_addr* ctx, __u8 hook,
                                    __u8 out[LATCH_ADDR_LEN]) {
  __u32 words[4] = {0, 0, 0, 0};
  if (hook == LATCH_HOOK_SENDMSG6) {
    words[0] = ctx->msg_src_ip6[0];
    words[1] = ctx->msg_src_ip6[1];
    words[2] = ctx->msg_src_ip6[2];
    words[3] = ctx->msg_src_ip6[3];
  }
  if ((words[0] | words[1] | words[2] | words[3]) == 0) {
    struct bpf_sock* sk = ctx->sk;
    if (sk) {
      words[0] = sk->src_ip6[0];
      words[1] = sk->src_ip6[1];
      words[2] = sk->src_ip6[2];
      words[3] = sk->src_ip6[3];
    }
  }
  __builtin_memcpy(out, words, LATCH_ADDR_LEN);
}

static __always_inline int guard4(struct bpf_sock_addr* ctx, __u8 hook) {
  struct latch_cidr_key key = {.prefixlen = 128};
  latch_map_ipv4(ctx->user_ip4, key.addr);
  if (ctx->user_ip4 == 0) {
    /* 0.0.0.0 reaches this host: decide on where it really goes. */
    __u8 src[LATCH_ADDR_LEN];
    source4(ctx, hook, src);
    latch_effective_destination(key.addr, src);
  }
  return decide(ctx, &key, AF_INET, hook);
}

static __always_inline int guard6(struct bpf_sock_addr* ctx, __u8 hook) {
  struct latch_cidr_key key = {.prefixlen = 128};
  __u32 words[4];
  words[0] = ctx->user_ip6[0];
  words[1] = ctx->user_ip6[1];
  words[2] = ctx->user_ip6[2];
  words[3] = ctx->user_ip6[3];
  __builtin_memcpy(key.addr, words, LATCH_ADDR_LEN);
  /* :: and ::ffff:0.0.0.0 reach this host: decide on where they really go. */
  if ((words[0] | words[1]) == 0 && (words[3] == 0)) {
    __u8 src[LATCH_ADDR_LEN];
    source6(ctx, hook, src);
    latch_effective_destination(key.addr, src);
  }
  return decide(ctx, &key, AF_INET6, hook);
}

SEC("cgroup/connect4")
int latch_connect4(struct bpf_sock_addr* ctx) { return guard4(ctx, LATCH_HOOK_CONNECT4); }

SEC("cgroup/connect6")
int latch_connect6(struct bpf_sock_addr* ctx) { return guard6(ctx, LATCH_HOOK_CONNECT6); }

SEC("cgroup/sendmsg4")
int latch_sendmsg4(struct bpf_sock_addr* ctx) { return guard4(ctx, LATCH_HOOK_SENDMSG4); }

SEC("cgroup/sendmsg6")
int latch_sendmsg6(struct bpf_sock_addr* ctx) { return guard6(ctx, LATCH_HOOK_SENDMSG6); }

/* The live grant for `resource_id` held by the packet's socket's owner (its
 * uid, its cgroup or an ancestor, as the kernel recorded them when the socket
 * was made), or 0. */
static __always_inline const struct latch_grant_value* skb_grant(struct __sk_buff* skb,
                                                                 __u32 resource_id, __u64 now) {
  struct latch_grant_key grant_key = {};
  const struct latch_grant_value* grant =
      find_grant(&grant_key, LATCH_PRINCIPAL_UID, resource_id, bpf_get_socket_uid(skb), now);
  __u64 cgroup_id = bpf_skb_cgroup_id(skb);
  if (!grant) grant = find_grant(&grant_key, LATCH_PRINCIPAL_CGROUP, resource_id, cgroup_id, now);
  for (int level = LATCH_MAX_CGROUP_DEPTH; level >= 1 && !grant; level--) {
    __u64 ancestor = bpf_skb_ancestor_cgroup_id(skb, level);
    if (ancestor == 0 || ancestor == cgroup_id) continue;
    grant = find_grant(&grant_key, LATCH_PRINCIPAL_CGROUP, resource_id, ancestor, now);
  }
  return grant;
}

/* Traffic of a connection to a protected destination flows only while the
 * socket's owner holds a live grant for it: the decision is taken again per
 * packet, for the socket's uid and cgroup (both recorded by the kernel when the
 * socket was made). The connect path pays nothing for this; other traffic
 * costs a port-bitmap test. Sockets to protected destinations keep the grant
 * they ran under (latch_sock_state), so that a cut is recorded once per
 * connection, naming it. Returns 1 to pass the packet, 0 to drop it. */
static __always_inline int check_protected_traffic(struct __sk_buff* skb, struct bpf_sock* sk,
                                                   struct latch_cidr_key* key, __u16 family,
                                                   __u8 protocol, __u16 port, int egress) {
  const struct latch_cidr_rules* rules = bpf_map_lookup_elem(&latch_resources, key);
  if (!rules) return 1;
  int idx = latch_match_rule(rules, protocol, port);
  if (idx < 0 || idx >= LATCH_MAX_RULES_PER_CIDR) return 1;
  const struct latch_rule* rule = &rules->rules[idx];
  if (rule->mode != LATCH_MODE_ENFORCE) return 1;

  __u64 now = bpf_ktime_get_boot_ns();
  const struct latch_grant_value* grant = skb_grant(skb, rule->resource_id, now);
  /* The socket remembers the grant its data flows under (only sockets to
   * protected destinations get this storage), so its cut can name it. */
  struct latch_sock_state* st =
      bpf_sk_storage_get(&latch_socks, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
  if (grant) {
    if (st && st->grant_id != grant->grant_id) {
      st->grant_id = grant->grant_id;
      st->cut_recorded = 0;
    }
    return 1;
  }
  count(LATCH_CTR_CUT_PACKETS);
  if (st && st->grant_id != 0 && !st->cut_recorded) {
    /* A connection that had a grant, cut: recorded once, under that grant. */
    st->cut_recorded = 1;
    count(LATCH_CTR_CUT_CONNECTIONS);
    struct latch_grant_value ended = {.grant_id = st->grant_id};
    emit_decision(0, now, bpf_skb_cgroup_id(skb), &ended, bpf_get_socket_uid(skb), 0,
                  rule->resource_id, family, port, protocol, LATCH_VERDICT_CUT,
                  egress ? LATCH_HOOK_PACKET_EGRESS : LATCH_HOOK_PACKET_INGRESS, key->addr);
  }
  return 0;
}

/* 0 if the packet is TCP with no payload (a pure SYN, ACK, FIN or RST),
 * 1 if it may carry data or cannot be told apart (UDP, fragments, headers
 * outside the linear area, IPv6 extension headers). Control packets carry no
 * traffic, so they are let through without a decision: the connect path's
 * own packets then cost a parse, and data never flows past a grant's end. */
static __always_inline int may_carry_data(struct __sk_buff* skb) {
  void* data = (void*)(long)skb->data;
  void* end = (void*)(long)skb->data_end;
  __u32 l3_len;
  __u8 l4;
  if (skb->protocol == bpf_htons(ETH_P_IP)) {
    struct iphdr* ip = data;
    if ((void*)(ip + 1) > end) return 1;
    if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) return 1;
    l3_len = ip->ihl * 4;
    l4 = ip->protocol;
  } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr* ip6 = data;
    if ((void*)(ip6 + 1) > end) return 1;
    l3_len = sizeof(*ip6);
    l4 = ip6->nexthdr;
  } else {
    return 1;
  }
  if (l4 != IPPROTO_TCP || l3_len < 20 || l3_len > 60) return 1;
  struct tcphdr* th = data + l3_len;
  if ((void*)(th + 1) > end) return 1;
  return skb->len > l3_len + th->doff * 4;
}

/* 1 if the packet is a TCP SYN without ACK (a connection being opened). */
static __always_inline int is_tcp_syn(struct __sk_buff* skb) {
  void* data = (void*)(long)skb->data;
  void* end = (void*)(long)skb->data_end;
  __u32 l3_len;
  if (skb->protocol == bpf_htons(ETH_P_IP)) {
    struct iphdr* ip = data;
    if ((void*)(ip + 1) > end || ip->protocol != IPPROTO_TCP) return 0;
    l3_len = ip->ihl * 4;
  } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr* ip6 = data;
    if ((void*)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_TCP) return 0;
    l3_len = sizeof(*ip6);
  } else {
    return 0;
  }
  if (l3_len < 20 || l3_len > 60) return 0;
  struct tcphdr* th = data + l3_len;
  if ((void*)(th + 1) > end) return 0;
  return th->syn && !th->ack;
}

/* A packet leaving through the loopback device goes to an address of this
 * host. Unless a resource's CIDR names its destination (decided at connect or
 * sendmsg, and per packet above), the rules for "local" decide it: a TCP
 * connection's SYN (recorded; dropped without a grant, so the connect times
 * out) and each UDP datagram (dropped without a grant, the send failing with
 * EPERM; recorded when denied). A connection's later packets pass: its grant
 * ending does not cut it. Returns 1 to pass the packet, 0 to drop it. */
static __always_inline int check_local(struct __sk_buff* skb, const struct latch_cidr_key* key,
                                       __u16 family, __u8 protocol, __u16 port) {
  if (skb->ifindex != LATCH_LOOPBACK_IFINDEX) return 1;
  /* Cheapest first: no resource names "local" on most hosts. */
  __u32 zero = 0;
  const struct latch_cidr_rules* rules = bpf_map_lookup_elem(&latch_local, &zero);
  if (!rules || rules->count == 0) return 1;
  if (protocol == IPPROTO_TCP && !is_tcp_syn(skb)) return 1;
  const struct latch_cidr_rules* named = bpf_map_lookup_elem(&latch_resources, key);
  if (named && latch_match_rule(named, protocol, port) >= 0) return 1;
  int idx = latch_match_rule(rules, protocol, port);
  if (idx < 0 || idx >= LATCH_MAX_RULES_PER_CIDR) return 1;
  const struct latch_rule* rule = &rules->rules[idx];
  __u32 resource_id = rule->resource_id;
  __u64 now = bpf_ktime_get_boot_ns();
  const struct latch_grant_value* grant = skb_grant(skb, resource_id, now);
  enum latch_verdict verdict = latch_verdict_for(rule->mode, grant != 0);
  count(verdict == LATCH_VERDICT_ALLOW_GRANT ? LATCH_CTR_ALLOW_GRANT
        : verdict == LATCH_VERDICT_DENY      ? LATCH_CTR_DENY
                                             : LATCH_CTR_AUDIT_ALLOW);
  if (protocol == IPPROTO_TCP || verdict == LATCH_VERDICT_DENY) {
    /* The sending task when this runs in its context (a connect's first SYN,
     * a send); a retransmission runs from a timer and names no process. */
    __u64 cgroup_id = bpf_skb_cgroup_id(skb);
    struct task_struct* task = bpf_get_current_task_btf();
    if (task->cgroups->dfl_cgrp->kn->id != cgroup_id) task = 0;
    emit_decision(task, now, cgroup_id, grant, bpf_get_socket_uid(skb),
                  task ? task->cred->gid.val : 0, resource_id, family, port, protocol, verdict,
                  LATCH_HOOK_EGRESS_LOCAL, key->addr);
  }
  return verdict == LATCH_VERDICT_DENY ? 0 : 1;
}

static __always_inline int port_protected(__u16 port) {
  __u32 word = port / 64;
  const __u64* bits = bpf_map_lookup_elem(&latch_ports, &word);
  return bits && ((*bits >> (port % 64)) & 1);
}

/* An unconnected UDP socket's datagrams name their peer only in the packet:
 * the peer (destination on egress, source on ingress) is read from the IP
 * and UDP headers. IPv6 packets with extension headers before UDP are left
 * to the sendmsg programs, which decide every datagram on its way out. */
static __always_inline int check_datagram(struct __sk_buff* skb, struct bpf_sock* sk, int egress) {
  void* data = (void*)(long)skb->data;
  void* end = (void*)(long)skb->data_end;
  struct latch_cidr_key key = {.prefixlen = 128};
  struct udphdr* uh;
  if (skb->protocol == bpf_htons(ETH_P_IP)) {
    struct iphdr* ip = data;
    if ((void*)(ip + 1) > end) return 1;
    if (ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(IP_OFFSET))) return 1;
    __u32 l3_len = ip->ihl * 4;
    if (l3_len < 20 || l3_len > 60) return 1;
    uh = data + l3_len;
    if ((void*)(uh + 1) > end) return 1;
    latch_map_ipv4(egress ? ip->daddr : ip->saddr, key.addr);
  } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
    struct ipv6hdr* ip6 = data;
    if ((void*)(ip6 + 1) > end) return 1;
    if (ip6->nexthdr != IPPROTO_UDP) return 1;
    uh = (void*)(ip6 + 1);
    if ((void*)(uh + 1) > end) return 1;
    __builtin_memcpy(key.addr, egress ? &ip6->daddr : &ip6->saddr, LATCH_ADDR_LEN);
  } else {
    return 1;
  }
  __u16 port = bpf_ntohs(egress ? uh->dest : uh->source);
  if (!port_protected(port)) return 1;
  __u16 family = skb->protocol == bpf_htons(ETH_P_IP) ? AF_INET : AF_INET6;
  if (egress && !check_local(skb, &key, family, IPPROTO_UDP, port)) return 0;
  return check_protected_traffic(skb, sk, &key, family, IPPROTO_UDP, port, egress);
}

static __always_inline int check_socket_traffic(struct __sk_buff* skb, int egress) {
  /* The peer's port, read from the socket: the destination on egress and the
   * source on ingress alike. The kernel hands it over in network byte order
   * in the upper 16 bits; 0 for unconnected sockets. Most packets stop at the
   * port bitmap, before any helper call. */
  __u16 port = bpf_ntohs((__u16)(skb->remote_port >> 16));
  if (port != 0 && !port_protected(port)) return 1;
  struct bpf_sock* sk = skb->sk;
  if (!sk) return 1;
  sk = bpf_sk_fullsock(sk); /* request and time-wait sockets carry no data */
  if (!sk) return 1;
  if (port == 0) return sk->protocol == IPPROTO_UDP ? check_datagram(skb, sk, egress) : 1;
  struct latch_cidr_key key = {.prefixlen = 128};
  if (skb->family == AF_INET) {
    latch_map_ipv4(skb->remote_ip4, key.addr);
  } else if (skb->family == AF_INET6) {
    __u32 words[4];
    words[0] = skb->remote_ip6[0];
    words[1] = skb->remote_ip6[1];
    words[2] = skb->remote_ip6[2];
    words[3] = skb->remote_ip6[3];
    __builtin_memcpy(key.addr, words, LATCH_ADDR_LEN);
  } else {
    return 1;
  }
  __u8 protocol = (__u8)sk->protocol;
  if (egress && !check_local(skb, &key, (__u16)skb->family, protocol, port)) return 0;
  if (!may_carry_data(skb)) return 1;
  return check_protected_traffic(skb, sk, &key, (__u16)skb->family, protocol, port, egress);
}

SEC("cgroup_skb/egress")
int latch_egress(struct __sk_buff* skb) { return check_socket_traffic(skb, 1); }

SEC("cgroup_skb/ingress")
int latch_ingress(struct __sk_buff* skb) { return check_socket_traffic(skb, 0); }
