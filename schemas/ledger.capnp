@0xcf639c1c21e7e317;
# The ledger record envelope. Every ledger entry is the canonical Cap'n Proto
# encoding (capnp::canonicalize) of exactly one LedgerRecord, so the same
# record always has the same bytes and the same leaf hash.
#
# Compatibility rule: add fields at the end with new ordinals; never renumber,
# retype or remove one. Payload kinds added by later schemas (events,
# workflow actions) are new enumerants of RecordKind.

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("latch::schema");

enum RecordKind {
  unspecified @0;   # never valid in a ledger; decoding rejects it
  opaque @1;        # payload is uninterpreted bytes (tests, `latch-ledger append`)
  event @2;         # payload is an agent event (schemas/event.capnp)
  loss @3;          # payload counts events that were lost, and where
  workflow @4;      # payload is a workflow action (request, approval, ...)
  activity @5;      # payload is what a watched principal did (event.capnp ActivityEvent)
  guard @6;         # payload is the state of a host's guard (event.capnp GuardEvent)
}

struct LedgerRecord {
  kind @0 :RecordKind;
  hostId @1 :Text;          # the host the record is about or came from ("" for the collector)
  agentBootId @2 :Data;     # 16 bytes, new each agent start; empty for collector records
  sequence @3 :UInt64;      # per (hostId, agentBootId); with them, the exactly-once key
  eventTimeNs @4 :Int64;    # when it happened, Unix ns (source's clock)
  receiveTimeNs @5 :Int64;  # when the collector received it, Unix ns (collector's clock)
  payload @6 :Data;         # the kind-specific record, itself canonical Cap'n Proto
}
