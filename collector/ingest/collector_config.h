// latch-collector's configuration file (TOML):
//
//   data_dir = "/var/lib/latch"          # the ledger and keys
//   origin = "latch.example/ledger"      # the ledger's name in its checkpoints
//   endpoints = ["tcp://0.0.0.0:7440"]   # where agents connect (CURVE)
//   batch_max_entries = 65536            # ledger batches close at this size...
//   batch_max_age_ms = 5                 # ...or this age, whichever comes first
//   max_message_bytes = 16777216         # larger messages are refused
//   agent_silent_after_ms = 30000        # an agent unheard this long is recorded (agentSilent)
//   snapshot_every_entries = 250000      # the derived state is saved this often (start-up replays
//   the rest) policy = "/etc/latch/policy.toml"    # the approval workflow (optional; reloaded on
//   SIGHUP) index = "<data_dir>/index.sqlite"    # the events index (derived from the ledger)
//
//   [storage]                            # optional: the ledger in PostgreSQL (issue 17)
//   postgres = "postgresql://latch@db-1,db-2/latch?target_session_attrs=read-write"
//   key = "<data_dir>/ledger.key"        # its signing key: the same file on every collector
//   sequencer_wait_ms = 500              # a standby tries for the sequencer's lock this often
//   (without [storage], the ledger is files under <data_dir>/ledger)
//
//   [api]                                # the HTTPS API (optional)
//   listen = "127.0.0.1:8443"
//   cert = "<data_dir>/api.crt"          # made self-signed on first start if absent
//   key = "<data_dir>/api.key"
//   idle_timeout_ms = 10000              # a connection silent this long is closed
//   max_connections_per_address = 16     # at most this many connections per peer address
//   public_log = false                   # true: /checkpoint and /tile/ served without credentials
//   session_minutes = 480                # a web console session's lifetime (1 to 1440)
//   advertise = "https://<listen>"       # the URL clients reach this API at; a standby's 503
//                                        # names the sequencer's (default: from listen, unless
//                                        # that is 0.0.0.0 or ::)
//
//   [[api_token]]                        # bearer tokens, stored hashed
//   identity = "alice"                   # an identity of the policy
//   sha256 = "<64 hex digits>"           # latch-collector token-hash prints it
//
//   [[api_client]]                       # client certificates, pinned
//   identity = "bob"
//   cert_sha256 = "<64 hex digits>"      # of the DER certificate: latch-collector cert-hash FILE
//
//   [[webhook]]                          # notified of requests, reviews and decisions
//   url = "https://hooks.example/latch"
//   events = ["request.created", "request.reviewed", "request.decided"]  # default: all
//   secret = "..."                       # optional: X-Latch-Signature HMAC-SHA256 of the body
//   ca = "/etc/ssl/hooks-ca.pem"          # optional: for https, instead of the system's
//
//   [[witness]]                          # witnesses that cosign the ledger's checkpoints
//   url = "https://witness-1.example:8444"
//   key = "<name>+<id>+<key>"            # its cosignature key: latch-witness key prints it
//   ca = "/etc/latch/witness-1-ca.pem"   # optional: its certificate's CA, else the system's
//
//   [witnessing]                         # optional, with [[witness]]
//   quorum = 2                           # cosignatures a witnessed checkpoint needs
//                                        # (default: a majority of the witnesses)
//   interval_ms = 1000                   # the latest checkpoint is sent this often at most
//   timeout_ms = 10000                   # a witness silent this long has failed the request
//
//   [[agent]]                            # enrolled agents
//   host_id = "db-host-1"
//   curve_public_key = "<40 Z85 characters>"
//
// Keys are created on first start under data_dir, mode 0600: curve.key (the
// channel's key pair), grant.key (signs grants; grant.vkey is its public half)
// and the ledger's own key. Everything else is derived from the ledger. A missing, mistyped or
// unknown setting is a one-line error naming it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lib/status/status.h"

namespace latch::collector {

struct CollectorConfig {
  std::string data_dir;
  std::string origin;
  std::vector<std::string> endpoints = {"tcp://0.0.0.0:7440"};
  uint32_t batch_max_entries = 65536;
  uint32_t batch_max_age_ms = 5;
  uint64_t max_message_bytes = 16u << 20;
  uint64_t agent_silent_after_ms = 30'000;  // an agent unheard this long is recorded as silent
  // A state snapshot is written once the ledger has grown this much since the
  // last (and at start-up and a clean stop), bounding what a start replays.
  uint64_t snapshot_every_entries = 250'000;
  std::map<std::string, std::string> agents;  // CURVE public key -> host id
  std::string policy;                         // empty: no workflow, grants only by admin
  std::string index_path;                     // empty: <data_dir>/index.sqlite
  // [storage]: empty, the files under <data_dir>/ledger; else a libpq
  // connection string, and several collectors may share it (one sequencer).
  std::string storage_postgres;
  std::string storage_key;  // empty: <data_dir>/ledger.key
  int sequencer_wait_ms = 500;
  std::string ledger_key_path() const {
    return storage_key.empty() ? data_dir + "/ledger.key" : storage_key;
  }
  bool api_enabled = false;
  std::string api_address = "127.0.0.1";
  uint16_t api_port = 8443;
  std::string api_cert, api_key;  // empty: under data_dir
  std::string api_advertise;      // https:// URL clients use; empty: unknown (see ApiAdvertised)
  // The URL this collector's API is reached at: [api] advertise, or else
  // https://ADDRESS:bound_port when listen names an address; "" when it
  // cannot be known.
  std::string ApiAdvertised(uint16_t bound_port) const;
  std::map<std::string, std::string> api_tokens;        // sha256 hex -> identity
  std::map<std::string, std::string> api_client_certs;  // certificate sha256 hex -> identity
  int api_idle_timeout_ms = 10000;
  int api_max_connections_per_address = 16;
  // The ledger's checkpoint and tiles (every entry's bytes: reasons, comments,
  // command lines) to anyone who reaches the port; off, they need a token or
  // a pinned client certificate like every other path.
  bool api_public_log = false;
  int api_session_minutes = 480;  // the console's sessions end this long after sign-in
  struct Webhook {
    std::string url, ca, secret;
    std::vector<std::string> events;  // empty: all
  };
  std::vector<Webhook> webhooks;
  struct Witness {
    std::string url, key, ca;
  };
  std::vector<Witness> witnesses;
  size_t witness_quorum = 0;  // 0 without witnesses; a majority of them by default
  uint64_t witness_interval_ms = 1000;
  uint64_t witness_timeout_ms = 10000;
  // The file it was read from ("" when built in code): SIGHUP reads it again.
  std::string path;
};

Status ParseCollectorConfig(std::string_view toml_text, const std::string& source,
                            CollectorConfig* out);
Status LoadCollectorConfig(const std::string& path, CollectorConfig* out);

}  // namespace latch::collector
