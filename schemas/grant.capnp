@0x857ba5ea549cbab0;
# Protected resources, principals and grants: what the collector signs and
# sends, and what an agent enforces in its kernel.
#
# Compatibility rule: add fields at the end with new ordinals; never renumber,
# retype or remove one.

using Cxx = import "/capnp/c++.capnp";
using Json = import "/capnp/compat/json.capnp";
$Cxx.namespace("latch::schema");

enum Mode {
  enforce @0;   # deny without a live grant
  audit @1;     # allow, but record
}

enum Protocol {
  any @0;
  tcp @1;
  udp @2;
}

struct Cidr {
  address @0 :Data $Json.hex;     # 16 bytes; IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d)
  prefixLength @1 :UInt8;  # of the 128-bit form: IPv4 /n is 96 + n
}

struct Resource {
  id @0 :UInt32;        # non-zero; what grants name
  name @1 :Text;
  destinations @2 :List(Cidr);
  protocol @3 :Protocol;
  portLow @4 :UInt16;
  portHigh @5 :UInt16;  # inclusive
  mode @6 :Mode;
  local @7 :Bool;       # destination "local": every address of this host, current and
                        # future; its loopback CIDRs are among `destinations`
}

struct Principal {
  union {
    userName @0 :Text;  # resolved to a uid on each host
    uid @1 :UInt32;
    cgroupPath @2 :Text;  # a cgroup v2 path, e.g. a systemd unit's; covers descendants
  }
}

struct Grant {
  id @0 :UInt64;        # non-zero
  principals @1 :List(Principal);
  resourceIds @2 :List(UInt32);
  hostIds @3 :List(Text);    # the hosts it applies on
  notBeforeUnixNs @4 :Int64;
  notAfterUnixNs @5 :Int64;  # exclusive
  breakGlass @6 :Bool;       # self-approved under break-glass policy: flagged everywhere
}

# A grant as signed by the collector's grant key: `grant` holds the canonical
# bytes of one Grant, `signature` Ed25519 over them.
struct SignedGrant {
  grant @0 :Data $Json.base64;
  signature @1 :Data $Json.base64;
  keyId @2 :UInt32;
}

# Who holds a principal on the hosts, by the policy's name for them: lets an
# agent name the identity behind a denial that no grant covers.
struct NamedPrincipal {
  identity @0 :Text;
  principal @1 :Principal;
}

# What one host enforces, from the collector's policy (issue 16: the policy
# is the one source of resources). Sent inside the host's signed grant set.
struct HostPolicy {
  resources @0 :List(Resource);
  identities @1 :List(NamedPrincipal);
  sinceNs @2 :Int64;    # Unix ns of the policyLoaded record that last changed it
}
