@0x90511c5fdccf8053;
# Workflow actions: the payload of LedgerRecord kind `workflow`. Every action
# the collector takes or learns of is one of these (promise 7).
#
# Compatibility rule: add fields at the end with new ordinals and new union
# members at the end; never renumber, retype or remove one.

using Cxx = import "/capnp/c++.capnp";
using Json = import "/capnp/compat/json.capnp";
$Cxx.namespace("latch::schema");

using Grant = import "grant.capnp";
using Wire = import "wire.capnp";

struct GrantIssued {
  grant @0 :Grant.SignedGrant;
}

struct GrantRevoked {
  grantId @0 :UInt64;
  reason @1 :Text;
}

# A host's kernel took a grant set.
struct GrantSetApplied {
  version @0 :UInt64;
  appliedAtNs @1 :Int64;         # the agent's clock
  grantIds @2 :List(UInt64);
  rejected @3 :List(Wire.RejectedGrant);
  rejectedSet @4 :Text;
  removedGrantIds @5 :List(UInt64);  # taken out of the kernel by this set
}

# Something arrived that was refused: an unknown key, a malformed message.
struct Refusal {
  what @0 :Text;                 # "unenrolled_key", "malformed_message", "oversized_message", ...
  detail @1 :Text;               # the latest one's
  count @2 :UInt64;              # refusals of this kind folded into this record
  details @3 :List(RefusalDetail);  # each distinct detail and peer among them (at most 16)
  unlisted @4 :UInt64;           # refusals folded in past those 16
  identity @5 :Text;             # the authenticated identity refused (api_forbidden): one
                                 # record per identity, shown to it in its events
}

struct RefusalDetail {
  detail @0 :Text;
  peer @1 :Text;                 # the address it came from ("" if none is known)
  count @2 :UInt64;
}

struct AgentAlarm {
  alarm @0 :Wire.Alarm;
}

struct AgentConnected {
  bootId @0 :Data $Json.hex;
  checkpointSize @1 :UInt64;
  grantSetVersion @2 :UInt64;
}

# A policy took effect (at start and on every reload).
struct PolicyLoaded {
  sha256 @0 :Text;               # of the policy file's bytes, hex
  source @1 :Text;               # its path
  resources @2 :List(ResourceName);  # what the policy calls each kernel resource id
  hosts @3 :List(HostPolicyEntry);   # what each host the policy names enforces from now
}

struct HostPolicyEntry {
  hostId @0 :Text;
  policy @1 :Grant.HostPolicy;       # sinceNs 0: this record's time, if it changed
}

# A resource's id (what grants and kernel decisions carry) and its name.
struct ResourceName {
  id @0 :UInt32;
  name @1 :Text;
}

struct RequestCreated {
  requestId @0 :UInt64;
  requester @1 :Text;            # identity
  resource @2 :Text;
  durationNs @3 :Int64;
  reason @4 :Text;
  pendingUntilNs @5 :Int64;
}

struct RequestReviewed {
  requestId @0 :UInt64;
  reviewer @1 :Text;
  approve @2 :Bool;
  comment @3 :Text;
}

# The request's end: approved (with the grant it became), denied, cancelled
# or expired unreviewed.
struct RequestDecided {
  requestId @0 :UInt64;
  state @1 :Text;                # "approved" | "denied" | "cancelled" | "expired"
  grantId @2 :UInt64;            # approved: the grant issued for it
  breakGlass @3 :Bool;           # self-approved under break-glass policy
}

# A grant reached its notAfter: the kernel already refuses it on its own; this
# records the end, and the grant leaves every host's set.
struct GrantExpired {
  grantId @0 :UInt64;
}

# The collector started signing grants with this key; grants signed by the
# retired keys stay valid until they end (a key rotation). One record per
# start, so the ledger says which key vouched for grants from when.
struct GrantKeyInUse {
  grantKey @0 :Text;             # verifier key, signed-note form
  retiredGrantKeys @1 :List(Text);
}

# An agent that had been talking fell silent for longer than the collector's
# `agent_silent_after_ms` (its agent stopped, its host down or cut off). Its
# next message is recorded as usual (agentConnected when it says Hello).
struct AgentSilent {
  lastHeardNs @0 :Int64;         # unix ns of its last message
}

# The collector's own records (refusals, silences, alarms, connections) that it
# could not keep while its ledger refused writes (it keeps up to 10,000 in
# memory): written once the ledger takes writes again, so that the gap is on
# the record.
struct OwnRecordsDropped {
  count @0 :UInt64;
  firstDroppedNs @1 :Int64;      # unix ns
  lastDroppedNs @2 :Int64;
}

struct WorkflowAction {
  actor @0 :Text;                # who acted: a host id, a user, or "collector"
  union {
    grantIssued @1 :GrantIssued;
    grantRevoked @2 :GrantRevoked;
    grantSetApplied @3 :GrantSetApplied;
    refusal @4 :Refusal;
    agentAlarm @5 :AgentAlarm;
    agentConnected @6 :AgentConnected;
    policyLoaded @7 :PolicyLoaded;
    requestCreated @8 :RequestCreated;
    requestReviewed @9 :RequestReviewed;
    requestDecided @10 :RequestDecided;
    grantExpired @11 :GrantExpired;
    grantKeyInUse @12 :GrantKeyInUse;
    agentSilent @13 :AgentSilent;
    ownRecordsDropped @14 :OwnRecordsDropped;
    configReloaded @15 :ConfigReloaded;
    joinTokenCreated @16 :JoinTokenCreated;
    agentEnrolled @17 :AgentEnrolled;
    agentRemoved @18 :AgentRemoved;
    apiCredentialAdded @19 :ApiCredential;
    apiCredentialRemoved @20 :ApiCredential;
    witnessProblem @21 :WitnessProblem;
    sessionStarted @22 :ApiSession;
    sessionEnded @23 :ApiSession;
  }
}

# A web console session (issue 19): someone signed in with an API token or
# client certificate and was given a session cookie (sessionStarted, on
# record before the cookie is sent), or signed out (sessionEnded, on record
# before the answer; the cookie is refused from then on). A session that
# simply runs out is not recorded again: its end is in its start.
struct ApiSession {
  identity @0 :Text;             # who signed in
  sessionHash @1 :Text;          # hex SHA-256 of the session's secret (the cookie is never kept)
  via @2 :Text;                  # "token" or "cert": what signed in
  credentialSha256 @3 :Text;     # which credential (its hash), ended with it if it is removed
  expiresAtNs @4 :Int64;         # unix ns: refused from then on
  why @5 :Text;                  # sessionEnded: "signed out"
}

# A witness (issue 18) stopped cosigning the ledger's checkpoints, or
# started again: recorded when a witness's state changes, and while it
# keeps failing at most once a minute, with the failures counted since the
# last record. "forked" is an alarm: the witness holds a checkpoint of this
# log that this ledger's history does not extend (past the ledger's size,
# or another root at a size it has): another history under the ledger key,
# or a ledger that lost entries.
struct WitnessProblem {
  witness @0 :Text;              # its key name
  url @1 :Text;
  what @2 :Text;                 # "unreachable", "refused", "forked", "recovered"
  detail @3 :Text;               # the latest failure, as the collector saw it
  count @4 :UInt64;              # failures since the last record of this witness
  heldSize @5 :UInt64;           # the size the witness said it holds (0: unknown)
  ledgerSize @6 :UInt64;         # the ledger's size then
}

# An API credential added or removed through the API by an admin (on record
# before it takes effect), on top of the configuration's [[api_token]] and
# [[api_client]] lists. Only hashes: the token or certificate itself is
# never sent to the collector.
struct ApiCredential {
  identity @0 :Text;             # the policy identity it authenticates as
  kind @1 :Text;                 # "token" (sha256 of the token) or "cert" (of the DER certificate)
  sha256 @2 :Text;               # 64 lowercase hex digits
}

# A join token was made (latch-collector token create): before it is shown
# to anyone, so a token that works is always on record.
struct JoinTokenCreated {
  hostId @0 :Text;               # the only host it enrols
  secretHash @1 :Text;           # hex SHA-256 of its secret; the secret is never kept
  expiresAtNs @2 :Int64;         # unix ns; refused from then on
}

# A join token was spent: `curvePublicKey` is enrolled as `hostId` from now
# on (on record before the agent is told). The enrolment is ledger state on
# top of the configuration's [[agent]] list.
struct AgentEnrolled {
  hostId @0 :Text;
  curvePublicKey @1 :Text;       # Z85
  secretHash @2 :Text;           # the token spent
  address @3 :Text;              # where the agent connected from
}

# An enrolled key removed (latch-collector agent remove, or the API): its
# messages are refused from now on and its next connection is refused.
struct AgentRemoved {
  hostId @0 :Text;
  curvePublicKey @1 :Text;       # Z85
}

# The collector's configuration file was read again (SIGHUP): the enrolled
# agents and the API's credentials it changed, which took effect once this
# record was durable. Other settings take effect at the next start.
struct ConfigReloaded {
  source @0 :Text;                   # the file's path
  agentsAdded @1 :List(Text);        # "<host id> <CURVE public key>"
  agentsRemoved @2 :List(Text);
  apiCredentials @3 :UInt32;         # tokens and client certificates now accepted
  apiCredentialsChanged @4 :Bool;
}
