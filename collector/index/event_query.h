// The events query: who reached what, when, under which grant. An answer is
// a page of ledger entries matching a filter, each with its ledger index, the
// entry's bytes and an inclusion proof against one signed checkpoint that the
// answer names, so a client can check every result without trusting the
// server: VerifyEventAnswer() decodes what it shows from the proven bytes.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "collector/client/event_answer.h"
#include "collector/index/event_index.h"
#include "collector/index/record_view.h"
#include "collector/ledger/ledger.h"
#include "lib/status/status.h"
#include "lib/tlog/signed_note.h"

namespace latch::index {

inline constexpr int kDefaultEventLimit = 100;

struct EventQuery {
  EventFilter filter;
  EventCursor cursor;
  int limit = kDefaultEventLimit;  // at most client::kMaxEventLimit
  // The live tail: entries from filter.min_index on, in ledger order; the
  // answer's next_index is where the next page starts.
  bool by_index = false;
  bool from_index_given = false;  // from_index was a parameter (else: from now on)
};

// From URL query parameters: host, identity, resource, grant, verdict, kind,
// uid, since_ns, until_ns (Unix ns), limit (1..1000), cursor (from a previous
// page), from_index (a ledger index; the stream starts there). InvalidArgument
// naming the parameter for anything else or malformed.
Status ParseEventQuery(const std::map<std::string, std::string>& params, EventQuery* out);

// The answer as JSON (see docs/API.md): checkpoint, tree_size, indexed_size,
// events[] {index, time_ns, identity, resource, entry, inclusion_proof,
// record}, next_cursor (null on the last page).
Status AnswerEventQuery(ledger::Ledger& ledger, const std::string& index_path,
                        uint64_t indexed_size, const EventQuery& query, nlohmann::json* out);

}  // namespace latch::index
