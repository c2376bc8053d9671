// `latch-agent enrol`: spends a join token (schemas/join_token.h) to enrol
// this agent's CURVE key with the collector, and keeps what the collector
// answers (its public key, the grant and ledger keys) in
// <state_dir>/enrolment.toml, where the daemon's configuration finds what
// its [collector] section leaves out (ResolveAgentDefaults).
//
// The token names the collector's key; the pin given beside it must match
// that key, or nothing is sent. The CURVE handshake then proves the peer
// holds the key, and the answer must name the host and key this agent sent.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "lib/status/status.h"

namespace latch::agent {

struct EnrolOptions {
  std::string endpoint;  // tcp://collector:7440
  std::string token;     // latchjoin1....
  std::string ca_pin;    // sha256:<hex> (or the hex alone), from latch-collector keys
  std::string host_id;
  std::string state_dir;  // agent.key is made there if missing; enrolment.toml written there
  std::chrono::milliseconds timeout{10000};
};

struct Enrolment {
  std::string host_id;
  std::vector<std::string> endpoints;
  std::string server_public_key;  // Z85
  std::vector<std::string> grant_keys;
  std::string ledger_key;
};

// Checks the pin, enrols, and writes <state_dir>/enrolment.toml (0600,
// atomically). The error says what to do: a refused token, a wrong pin, a
// collector that does not answer.
Status EnrolAgent(const EnrolOptions& options, Enrolment* out);

// The enrolment file's text (TOML).
std::string FormatEnrolment(const Enrolment& e);

}  // namespace latch::agent
