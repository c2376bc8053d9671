@0xae5210fa140262a8;
# Events an agent records: kernel decisions on protected destinations, and
# losses (events that could not be delivered, counted instead). These are the
# payloads of LedgerRecord kinds `event` and `loss` (ledger.capnp).
#
# Compatibility rule: add fields at the end with new ordinals; never renumber,
# retype or remove one.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("latch::schema");

enum Verdict {
  unspecified @0;
  allow @1;       # protected destination, live grant
  deny @2;        # protected, enforce mode, no live grant: the call failed with EPERM
  auditAllow @3;  # protected, audit mode, no live grant: allowed and recorded
}

enum Hook {
  unspecified @0;
  connect4 @1;
  connect6 @2;
  sendmsg4 @3;
  sendmsg6 @4;
}

struct DecisionEvent {
  ktimeBootNs @0 :UInt64;    # kernel boot-time clock at the decision
  pid @1 :UInt32;            # thread id
  tgid @2 :UInt32;           # process id
  uid @3 :UInt32;
  gid @4 :UInt32;
  cgroupId @5 :UInt64;
  comm @6 :Data;             # process name as the kernel has it (up to 16 bytes, not UTF-8 checked)
  family @7 :UInt16;         # AF_INET (2) or AF_INET6 (10), as the socket saw it
  protocol @8 :UInt8;        # IPPROTO_TCP (6) or IPPROTO_UDP (17)
  destination @9 :Data;      # 16 bytes; IPv4 as IPv4-mapped IPv6
  port @10 :UInt16;
  resourceId @11 :UInt32;
  grantId @12 :UInt64;       # 0 when no grant matched
  verdict @13 :Verdict;
  hook @14 :Hook;
}

enum LossKind {
  unspecified @0;
  ringBufferFull @1;   # the kernel could not reserve ring-buffer space
  spoolFull @2;        # the agent's spool was at its size limit
  decodeFailure @3;    # a record could not be decoded
}

struct LossEvent {
  kind @0 :LossKind;
  count @1 :UInt64;    # losses since the previous loss record of this kind
  total @2 :UInt64;    # all losses of this kind the source has counted
}
