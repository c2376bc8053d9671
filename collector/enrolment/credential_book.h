// CredentialBook: API tokens and client certificates an admin added through
// the API (apiCredentialAdded, apiCredentialRemoved), by their SHA-256, as
// the ledger records them. Ledger state on top of the configuration's
// [[api_token]] and [[api_client]] lists, as the EnrolmentBook is for agent
// keys: rebuilt by replay, kept in state snapshots, changed only once the
// record that changes it is durable (promise 7).
//
// Owned by the loop thread.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "lib/status/status.h"
#include "schemas/workflow.capnp.h"

namespace latch::collector {

class CredentialBook {
 public:
  // Takes in one of the records above; others are ignored.
  void Apply(schema::WorkflowAction::Reader action);

  // sha256 -> identity, by kind.
  const std::map<std::string, std::string>& tokens() const { return tokens_; }
  const std::map<std::string, std::string>& certs() const { return certs_; }

  nlohmann::json ToSnapshot() const;
  // A snapshot without credentials (taken before there were any) is empty.
  Status FromSnapshot(const nlohmann::json& state);

  // Whether `text` is a SHA-256 as the books keep it: 64 lowercase hex digits.
  static bool IsSha256Hex(const std::string& text);

 private:
  std::map<std::string, std::string> tokens_, certs_;
};

}  // namespace latch::collector
