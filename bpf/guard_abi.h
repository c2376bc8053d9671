/* The contract between the guard's kernel programs (guard.bpf.c) and user
 * space (agent/): map keys and values, event records, counter slots. Both
 * sides include this one header, so a layout change is one edit, and the
 * static asserts at the bottom catch accidental padding. */
#ifndef LATCH_BPF_GUARD_ABI_H_
#define LATCH_BPF_GUARD_ABI_H_

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Every address is kept as 16 bytes: IPv6 as is, IPv4 as the IPv4-mapped IPv6
 * address ::ffff:a.b.c.d. One trie then serves both families, and an IPv6
 * socket connecting to a mapped IPv4 address meets the same rules. */
#define LATCH_ADDR_LEN 16

/* Resources: an LPM trie from a CIDR to the rules that apply to it. User
 * space folds the rules of every covering (shorter) prefix into each entry,
 * because a trie lookup returns the longest match only. */
#define LATCH_MAX_RULES_PER_CIDR 16
#define LATCH_MAX_CIDRS 4096

enum latch_mode { LATCH_MODE_ENFORCE = 0, LATCH_MODE_AUDIT = 1 };

/* Protocols as IPPROTO_* numbers; 0 in a rule matches TCP and UDP. */
#define LATCH_PROTO_ANY 0

struct latch_cidr_key {
  __u32 prefixlen; /* of the 128-bit (mapped) address */
  __u8 addr[LATCH_ADDR_LEN];
};

struct latch_rule {
  __u32 resource_id;
  __u16 port_lo; /* host byte order, inclusive */
  __u16 port_hi;
  __u8 protocol; /* IPPROTO_TCP, IPPROTO_UDP or LATCH_PROTO_ANY */
  __u8 mode;     /* enum latch_mode */
  __u8 pad[2];
};

struct latch_cidr_rules {
  __u32 count;
  __u32 pad;
  struct latch_rule rules[LATCH_MAX_RULES_PER_CIDR];
};

/* Grants: (principal, resource) -> validity window on the kernel's boot-time
 * clock (bpf_ktime_get_boot_ns), so expiry needs no help from user space and
 * counts time spent suspended. */
enum latch_principal_kind { LATCH_PRINCIPAL_UID = 1, LATCH_PRINCIPAL_CGROUP = 2 };
#define LATCH_MAX_GRANTS 65536
/* Cgroup grants cover descendants: the guard checks the connecting task's
 * cgroup and its ancestors up to this depth below the root. */
#define LATCH_MAX_CGROUP_DEPTH 16

struct latch_grant_key {
  __u32 kind; /* enum latch_principal_kind */
  __u32 resource_id;
  __u64 principal; /* uid, or cgroup id */
};

struct latch_grant_value {
  __u64 not_before_ns; /* boot-time clock */
  __u64 not_after_ns;  /* boot-time clock, exclusive */
  __u64 grant_id;
};

/* Protected remote ports as a bitmap of 65,536 bits in 64-bit words (port /
 * 64 is the word, port % 64 the bit): the cgroup_skb programs take the full
 * decision again only for sockets whose peer port is set here. */
#define LATCH_PORT_WORDS 1024

/* Decisions. */
enum latch_verdict {
  LATCH_VERDICT_ALLOW_GRANT = 1, /* protected, live grant: allowed */
  LATCH_VERDICT_DENY = 2,        /* protected, enforce mode, no live grant: EPERM */
  LATCH_VERDICT_AUDIT_ALLOW = 3, /* protected, audit mode, no live grant: allowed, recorded */
  LATCH_VERDICT_CUT = 4,         /* a connection made under a grant, its data dropped once the grant
                                    ended or was revoked: one record per connection, naming the grant */
};

enum latch_hook {
  LATCH_HOOK_CONNECT4 = 1,
  LATCH_HOOK_CONNECT6 = 2,
  LATCH_HOOK_SENDMSG4 = 3,
  LATCH_HOOK_SENDMSG6 = 4,
  LATCH_HOOK_EGRESS_LOCAL = 5,  /* a packet to this host's own address, leaving through lo */
  LATCH_HOOK_PACKET_EGRESS = 6, /* a connection's packet on its way out (a cut) */
  LATCH_HOOK_PACKET_INGRESS = 7 /* a connection's packet on its way in (a cut) */
};

/* Per socket (socket local storage), for connections to protected
 * destinations only: the grant its data last flowed under, so that the
 * connection's cut names that grant even once it is gone from the grants map
 * (revoked), and whether the cut was recorded (once per connection). */
struct latch_sock_state {
  __u64 grant_id;
  __u8 cut_recorded;
  __u8 pad[7];
};

/* "This host" as a destination (a resource whose destinations name "local"):
 * every address of this host, current and future. Its loopback addresses are
 * in latch_resources like any CIDR (decided at connect, EPERM); the host's
 * other addresses are told by the kernel's routing: a packet to one of them
 * leaves through the loopback device, whatever address it was added under or
 * when. The egress program decides those (a TCP connection's SYN, a UDP
 * datagram) by the rules in latch_local, one entry laid out as a CIDR's. */
#define LATCH_LOOPBACK_IFINDEX 1

struct latch_decision_event {
  __u64 ktime_boot_ns;
  __u64 cgroup_id;
  __u64 grant_id; /* 0 when no grant matched */
  __u32 pid;      /* thread id */
  __u32 tgid;     /* process id */
  __u32 uid;
  __u32 gid;
  __u32 resource_id;
  __u16 family; /* AF_INET or AF_INET6, as the socket saw it */
  __u16 port;   /* destination, host byte order */
  __u8 protocol;
  __u8 verdict; /* enum latch_verdict */
  __u8 hook;    /* enum latch_hook */
  __u8 pad[5];
  __u8 addr[LATCH_ADDR_LEN]; /* destination, IPv4-mapped for IPv4 */
  char comm[16];
};

/* Per-CPU counters, one array slot each. */
enum latch_counter {
  LATCH_CTR_ALLOW_GRANT = 0,
  LATCH_CTR_DENY = 1,
  LATCH_CTR_AUDIT_ALLOW = 2,
  LATCH_CTR_RINGBUF_FULL = 3,    /* decision events lost: ring buffer reservation failed */
  LATCH_CTR_EVENTS = 4,          /* decision events submitted */
  LATCH_CTR_CUT_PACKETS = 5,     /* packets dropped on connections whose grant ended */
  LATCH_CTR_CUT_CONNECTIONS = 6, /* connections cut at their grant's end, each recorded once
                                   (the slot, unused since issue 11, is taken again) */
  LATCH_CTR_COUNT = 7,
};

/* User space's own state, pinned with the guard so it survives the agent:
 * the counter totals it has already reported, so a restarted agent reports
 * only what is new (kernel programs never touch it). */
struct latch_agent_state {
  __u64 reported[LATCH_CTR_COUNT];
  __u64 grant_set_version; /* the signed grant set the grants map holds (0: none) */
};

#ifdef __cplusplus
static_assert(sizeof(struct latch_cidr_key) == 20, "latch_cidr_key layout");
static_assert(sizeof(struct latch_rule) == 12, "latch_rule layout");
static_assert(sizeof(struct latch_grant_key) == 16, "latch_grant_key layout");
static_assert(sizeof(struct latch_grant_value) == 24, "latch_grant_value layout");
static_assert(sizeof(struct latch_decision_event) == 88, "latch_decision_event layout");
#endif

#endif /* LATCH_BPF_GUARD_ABI_H_ */
