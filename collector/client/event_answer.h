// What a client of the collector's API needs to trust an events answer
// without trusting the server: the checkpoint's signature, each entry's
// inclusion proof, and the entry decoded from its proven bytes. latchctl and
// tests link it; it holds no server code (no index, no ledger writer).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "collector/index/record_view.h"
#include "lib/status/status.h"
#include "lib/tlog/signed_note.h"

namespace latch::client {

// The most events one page of GET /v1/events holds (limit=1..1000).
inline constexpr int kMaxEventLimit = 1000;

// Checks an answer: the checkpoint's signature under `ledger_key`, and each
// event's inclusion proof against it; returns the events as decoded from
// their proven entry bytes, with their ledger indexes.
struct VerifiedEvent {
  uint64_t index = 0;
  index::RecordView view;
  std::string identity;  // the server's attribution (not part of the proof)
  std::string resource;
};
Status VerifyEventAnswer(const nlohmann::json& answer, const tlog::NoteVerifier& ledger_key,
                         std::vector<VerifiedEvent>* out, uint64_t* tree_size = nullptr);

}  // namespace latch::client
