// EnrolmentBook: the join tokens made and the agent keys enrolled by
// spending them, as the ledger records them (joinTokenCreated,
// agentEnrolled, agentRemoved). Ledger state on top of the configuration's
// [[agent]] list: rebuilt by replay, kept in state snapshots, changed only
// once the record that changes it is durable (promise 7).
//
// A host enrolled again (a reinstalled machine, a new key) keeps only its
// newest key from enrolment; keys the configuration lists are not touched.
//
// Owned by the loop thread.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "lib/status/status.h"
#include "schemas/workflow.capnp.h"

namespace latch::collector {

class EnrolmentBook {
 public:
  struct Token {
    std::string host;
    int64_t expires_at_ns = 0;
    bool spent = false;
  };

  // Why the token whose secret hashes to `secret_hash` cannot enrol `host`
  // at `now_ns` ("" when it can): unknown, spent, expired, or another host's.
  std::string Refusal(const std::string& secret_hash, const std::string& host,
                      int64_t now_ns) const;
  // Whether any token could still be spent: only then are unknown keys let
  // through the handshake at all (to send an Enrol, and nothing else).
  bool AnyOpen(int64_t now_ns) const;

  // Takes in one of the records above; others are ignored.
  void Apply(schema::WorkflowAction::Reader action);

  // Enrolled keys: Z85 key -> host id.
  const std::map<std::string, std::string>& keys() const { return keys_; }
  // Tokens by secret hash.
  const std::map<std::string, Token>& tokens() const { return tokens_; }

  nlohmann::json ToSnapshot() const;
  // A snapshot without enrolment (taken before there was any) is empty.
  Status FromSnapshot(const nlohmann::json& state);

 private:
  std::map<std::string, Token> tokens_;
  std::map<std::string, std::string> keys_;
};

}  // namespace latch::collector
