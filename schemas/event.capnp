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
  cut @4;         # a connection made under grantId, its data dropped once that grant
                  # ended or was revoked (one record per connection)
}

enum Hook {
  unspecified @0;
  connect4 @1;
  connect6 @2;
  sendmsg4 @3;
  sendmsg6 @4;
  egressLocal @5;     # a packet to this host's own address, leaving through lo
  packetEgress @6;    # a connection's packet on its way out (a cut)
  packetIngress @7;   # a connection's packet on its way in (a cut)
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
  identity @15 :Text;        # who holds this uid or cgroup on the host, by the collector's
                             # policy ("": no identity does; issue 16)
}

enum LossKind {
  unspecified @0;
  ringBufferFull @1;   # the kernel could not reserve ring-buffer space
  spoolFull @2;        # the agent's spool was at its size limit
  decodeFailure @3;    # a record could not be decoded
  activityRingBufferFull @4;  # activity records the kernel could not reserve space for
  activityCaptureUnavailable @5;  # capture could not start: from here on nothing of what
                                  # watched principals do is recorded (count 0: unknown)
  spoolCorrupt @6;     # records in a damaged part of a spool file (issue 13.5): the
                       # record stands for sequences firstLostSequence..its own
}

struct LossEvent {
  kind @0 :LossKind;
  count @1 :UInt64;    # losses since the previous loss record of this kind
  total @2 :UInt64;    # all losses of this kind the source has counted
  activityKind @3 :Text;  # activityRingBufferFull: of which activity (exec, open, ...)
  reason @4 :Text;        # activityCaptureUnavailable: why
  # Non-zero: this record takes the place of the lost records from this
  # sequence up to its own (spoolCorrupt). The collector accepts that jump in
  # the agent's sequence; nowhere else may a sequence skip.
  firstLostSequence @5 :UInt64;
}

# What a watched principal did (issue 6): the payload of LedgerRecord kind
# `activity`. Common fields first, then one group per kind.
struct ActivityEvent {
  ktimeBootNs @0 :UInt64;
  pid @1 :UInt32;            # thread id
  tgid @2 :UInt32;           # process id
  ppid @3 :UInt32;           # parent's process id
  uid @4 :UInt32;
  euid @5 :UInt32;
  gid @6 :UInt32;
  cgroupId @7 :UInt64;
  comm @8 :Data;
  grantId @9 :UInt64;        # the grant its uid or cgroup held (0: watched without one)
  viaIoUring @39 :Bool;      # connect or open submitted through io_uring, not a system call

  union {
    unspecified @10 :Void;
    exec :group {            # a program run
      path @11 :Data;        # as the kernel resolved it for exec (up to 255 bytes)
      args @12 :List(Data);  # argv, each without its NUL
      argsTruncated @13 :Bool;
      argsRedacted @38 :Bool;  # secrets in args were replaced by [REDACTED] on the host
    }
    exit :group {            # a process ended
      status @14 :Int32;     # as wait(2) reports it
    }
    connect :group {         # a connect attempt, to any destination
      result @15 :Int32;     # 0 or -errno
      family @16 :UInt16;    # AF_INET (2) or AF_INET6 (10)
      destination @17 :Data; # 16 bytes; IPv4 as IPv4-mapped IPv6
      port @18 :UInt16;
    }
    open :group {            # an open under a watched path prefix
      result @19 :Int32;     # the fd, or -errno
      path @20 :Data;        # as the caller gave it (up to 255 bytes)
      flags @21 :UInt32;     # O_* as passed
      mode @22 :UInt32;
    }
    credentials :group {     # setuid family or capset
      result @23 :Int32;
      syscall @24 :UInt32;   # the syscall number (x86-64)
      oldUid @25 :UInt32;
      oldEuid @26 :UInt32;
      oldGid @27 :UInt32;
      oldEgid @28 :UInt32;
      newUid @29 :UInt32;
      newEuid @30 :UInt32;
      newGid @31 :UInt32;
      newEgid @32 :UInt32;
      oldCapEffective @33 :UInt64;
      newCapEffective @34 :UInt64;
    }
    throttle :group {        # a summary of what one process had held back
      windowStartNs @35 :UInt64;  # boot-time clock
      windowEndNs @36 :UInt64;
      suppressed @37 :List(SuppressedCount);
    }
    ioUringSetup :group {    # an io_uring instance set up (io_uring_setup)
      fd @40 :Int32;
      sqEntries @41 :UInt32;
      cqEntries @42 :UInt32;
      flags @43 :UInt32;     # IORING_SETUP_*
    }
    ioUringOps :group {      # what one process submitted through io_uring, by operation
      windowStartNs @44 :UInt64;  # boot-time clock
      windowEndNs @45 :UInt64;
      submitted @46 :List(IoUringOpCount);
    }
  }
}

struct IoUringOpCount {
  opcode @0 :UInt8;          # IORING_OP_*; 63 also counts any newer one
  name @1 :Text;             # e.g. "openat", "connect", "read"
  count @2 :UInt32;
}

# The guard on a host was found detached or replaced behind the agent's back
# (issue 13.7): the payload of LedgerRecord kind `guard`, shown as guardDetached.
struct GuardEvent {
  missing @0 :List(Text);  # what was wrong: "link_connect4 detached", "pin latch_grants missing"
  reattached @1 :Bool;     # the agent attached and pinned it again
  error @2 :Text;          # why re-attaching failed, if it did
}

struct SuppressedCount {
  kind @0 :Text;             # exec, exit, connect, open, credentials
  count @1 :UInt32;
}
