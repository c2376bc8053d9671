@0xc42a53a430b5e663;
# The agent-collector channel. Each ZeroMQ message (DEALER at the agent,
# ROUTER at the collector, CURVE-encrypted and authenticated) carries one
# Envelope as a Cap'n Proto message. The collector identifies the sending host
# by the CURVE key its ZAP handler admitted, never by what a message claims.
#
# Compatibility rule: add fields at the end with new ordinals; never renumber,
# retype or remove one.

using Cxx = import "/capnp/c++.capnp";
using Json = import "/capnp/compat/json.capnp";
$Cxx.namespace("latch::schema");

using Ledger = import "ledger.capnp";
using Grant = import "grant.capnp";

# Agent -> collector, first on every connection.
struct Hello {
  hostId @0 :Text;               # must equal the host id enrolled for this key
  bootId @1 :Data;               # 16 bytes, new each agent start
  checkpointSize @2 :UInt64;     # tree size of the checkpoint the agent holds (0: none)
  grantSetVersion @3 :UInt64;    # version of the grant set the kernel holds (0: none)
  lastAcknowledgedSequence @4 :UInt64;  # of bootId: the highest sequence a verified
                                        # receipt covered (0: none yet)
  session @5 :UInt64;            # numbers the agent's sessions (from 1): receipts echo it
}

# One spooled record: an event or a loss record, with its exactly-once key.
struct SpooledRecord {
  sequence @0 :UInt64;           # per (host, bootId), from 1, gap-free in a spool but for
                                 # a declared loss (LossEvent.firstLostSequence)
  kind @1 :Ledger.RecordKind;    # event or loss
  eventTimeNs @2 :Int64;         # Unix ns, agent's clock
  payload @3 :Data;              # canonical DecisionEvent or LossEvent (event.capnp)
}

# Agent -> collector.
struct EventBatch {
  bootId @0 :Data;               # the boot the records were spooled under
  checkpointSize @1 :UInt64;     # the agent's checkpoint: the receipt proves consistency from it
  records @2 :List(SpooledRecord);  # ascending sequences
}

# Collector -> agent, only once every record of the batch is durable.
struct Receipt {
  bootId @0 :Data;
  throughSequence @1 :UInt64;    # every record of this boot up to here is in the ledger
  throughIndex @2 :UInt64;       # ledger index of the record `throughSequence`
  throughReceiveTimeNs @3 :Int64;  # its receive time: with the spool, rebuilds its entry
  appendedFirstSequence @4 :UInt64;  # records this batch added (the rest were duplicates):
  appendedFirstIndex @5 :UInt64;     #   sequences [first, first+count) at indexes
  appendedCount @6 :UInt64;          #   [firstIndex, firstIndex+count)
  checkpoint @7 :Data;           # signed note whose tree contains throughIndex
  inclusionProof @8 :List(Data); # of entry throughIndex in that tree
  consistencyFrom @9 :UInt64;    # the size the agent holds, as far as the collector knows:
                                 # the session's Hello, then each receipt it sent since
  consistencyProof @10 :List(Data);  # from that size to the checkpoint's
  session @11 :UInt64;           # the Hello.session consistencyFrom counts from (0: a
                                 # collector that does not number them)
}

# Collector -> agent: the complete set of grants for this host. A set
# replaces the previous one; versions only grow.
struct GrantSet {
  hostId @0 :Text;
  version @1 :UInt64;
  issuedAtNs @2 :Int64;
  grants @3 :List(Grant.SignedGrant);
  hostPolicy @4 :Grant.HostPolicy;  # absent (an older collector, or a host no policy
                                    # resource names): the agent keeps its own list
}

# GrantSet's canonical bytes, signed with the grant key.
struct SignedGrantSet {
  set @0 :Data;
  signature @1 :Data;
  keyId @2 :UInt32;
}

struct RejectedGrant {
  grantId @0 :UInt64;
  reason @1 :Text;
}

# Agent -> collector: the kernel now holds grant set `version`.
struct Applied {
  version @0 :UInt64;
  appliedAtNs @1 :Int64;         # Unix ns when the last map write returned
  grantIds @2 :List(UInt64);     # grants now in the kernel
  rejected @3 :List(RejectedGrant);  # refused (bad signature, unknown principal, ...)
  rejectedSet @4 :Text;          # non-empty: the whole set was refused, and why
  removedGrantIds @5 :List(UInt64);  # grants this set took out of the kernel (revoked,
                                     # ended): the revocation's application, by grant
}

# Agent -> collector: something the agent must not keep to itself.
struct Alarm {
  kind @0 :Text;                 # "inconsistent_checkpoint", "bad_checkpoint_signature", ...
  detail @1 :Text;
  heldCheckpoint @2 :Data $Json.base64;       # the checkpoint the agent holds
  shownCheckpoint @3 :Data $Json.base64;      # the one it was shown
}

# Collector -> agent: records of this boot arrived out of order (after a
# reconnection, older queued messages can arrive after newer ones); the
# collector has everything before `sequence` and nothing from it on. The
# agent starts a new session, which resends from its first unacknowledged
# record.
struct ResendFrom {
  bootId @0 :Data;
  sequence @1 :UInt64;
}

# Collector -> agent: the answer to every Hello, sent once the collector has
# taken in everything the agent sent before it (one connection keeps order).
# `heldThroughSequence` is the highest sequence of the boot this collector
# holds or is appending (0: none): the agent sends only what follows it.
# A hint that spares a resend, never an acknowledgement: only a receipt's
# proofs let the agent forget a record.
struct Welcome {
  session @0 :UInt64;            # the Hello's
  bootId @1 :Data;
  heldThroughSequence @2 :UInt64;
}

# Agent -> collector, from a key not enrolled yet: spend a join token
# (join_token.h) to enrol this connection's CURVE key as `hostId`. Accepted
# only while a token is open; anything else from such a key is refused.
struct Enrol {
  hostId @0 :Text;               # must be the host the token was made for
  secret @1 :Data;               # the token's 32-byte secret
}

# Collector -> agent: the key is enrolled (on record before this is sent);
# what the agent's [collector] section needs.
struct Enrolled {
  hostId @0 :Text;
  curvePublicKey @1 :Text;       # Z85: the key this connection's handshake proved
  grantKeys @2 :List(Text);      # verifier keys that may sign grant sets
  ledgerKey @3 :Text;            # verifier key of the ledger's checkpoints
}

struct Envelope {
  union {
    hello @0 :Hello;
    eventBatch @1 :EventBatch;
    receipt @2 :Receipt;
    grantSet @3 :SignedGrantSet;
    applied @4 :Applied;
    heartbeat @5 :Int64;         # sender's Unix ns
    alarm @6 :Alarm;
    refused @7 :Text;            # collector -> agent: why a message was refused
    resendFrom @8 :ResendFrom;   # collector -> agent: a gap in a boot's sequences
    welcome @9 :Welcome;         # collector -> agent: the answer to a Hello
    enrol @10 :Enrol;            # agent -> collector: a join token spent
    enrolled @11 :Enrolled;      # collector -> agent: the answer to an accepted Enrol
    witnessed @12 :Witnessed;    # collector -> agent: its latest witnessed checkpoint
  }
}

# Collector -> agent (issue 18): the latest checkpoint a quorum of its
# witnesses cosigned, sent when one is published and after each Hello. The
# agent checks it with its own witness keys and quorum, and against the
# checkpoint it holds: `proof` is the consistency proof between `proofFrom`
# (the size the collector believes the agent holds) and the witnessed
# checkpoint's size, from the smaller to the larger.
struct Witnessed {
  checkpoint @0 :Data;           # a signed note: the log's signature, then cosignatures
  proofFrom @1 :UInt64;
  proof @2 :List(Data);
}
