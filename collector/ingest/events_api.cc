// The collector's events routes: GET /v1/events (the verified query),
// /v1/events/stream (the live tail) and /v1/proof/inclusion, with the one
// visibility rule they share. They read the ledger and the index, never
// loop-owned state, so they run on the API's workers (RouteApi).
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

#include "collector/api/query_string.h"
#include "collector/index/event_query.h"
#include "collector/ingest/api_answer.h"
#include "collector/ingest/collector_server.h"
#include "lib/logging/logger.h"
#include "lib/tlog/base64.h"

namespace latch::collector {

std::optional<api::ApiResponse> CollectorServer::PrepareEventQuery(const api::ApiRequest& req,
                                                                   index::EventQuery* out) {
  std::map<std::string, std::string> params;
  std::string why;
  size_t q = req.target.find('?');
  if (q != std::string::npos && !api::ParseQueryString(req.target.substr(q + 1), &params, &why)) {
    return Error(400, why);
  }
  index::EventQuery query;
  Status s = index::ParseEventQuery(params, &query);
  if (!s.ok()) return Error(400, s.message());
  {
    // Auditors and approvers read every event; anyone else, their own.
    MutexLock lock(event_readers_mu_);
    if (!event_policy_loaded_) return Error(409, "no policy is loaded");
    if (!event_readers_.count(req.identity)) {
      if (query.filter.identity && *query.filter.identity != req.identity) {
        return Error(403, "only auditors and approvers may read others' events");
      }
      query.filter.identity = req.identity;
    }
  }
  *out = std::move(query);
  return std::nullopt;
}

std::optional<api::ApiResponse> CollectorServer::CheckEntryVisible(const std::string& identity,
                                                                   uint64_t index) {
  {
    MutexLock lock(event_readers_mu_);
    if (!event_policy_loaded_) return Error(409, "no policy is loaded");
    if (event_readers_.count(identity)) return std::nullopt;
  }
  if (index >= index_->indexed()) {
    return Error(503, "entry " + std::to_string(index) + " is not indexed yet; ask again shortly");
  }
  index::EventFilter filter;
  filter.identity = identity;
  filter.min_index = index;
  std::vector<index::EventHit> hits;
  Status s = index::EventIndex::Query(index_path_, filter, index + 1, {}, 1, &hits,
                                      /*by_index=*/true);
  if (!s.ok()) return IndexReadFailed(s);
  if (hits.empty() || hits[0].index != index) {
    return Error(403, "only auditors and approvers may see entries that are not about you");
  }
  return std::nullopt;
}

api::ApiResponse CollectorServer::HandleInclusionProof(const api::ApiRequest& req) {
  // On the API's thread, like the events query: the visibility check reads
  // the index, and the ledger's readers are safe on any thread.
  // ?index=I&size=N: entry I's inclusion proof in the tree of N entries
  // (default: the current checkpoint's).
  std::map<std::string, std::string> params;
  std::string bad;
  size_t qm = req.target.find('?');
  if (qm == std::string::npos || !api::ParseQueryString(req.target.substr(qm + 1), &params, &bad))
    return Error(400, bad.empty() ? "need index" : bad);
  uint64_t index = 0, size = ledger_->size();
  try {
    if (!params.count("index")) return Error(400, "need index");
    index = std::stoull(params["index"]);
    if (params.count("size")) size = std::stoull(params["size"]);
  } catch (const std::exception&) {
    return Error(400, "index and size are numbers");
  }
  if (index >= size || size > ledger_->size()) return Error(400, "need index < size <= tree size");
  // The events query's rule: only auditors and approvers may prove
  // entries that are not about them (an entry carries reasons, comments,
  // command lines).
  if (auto refused = CheckEntryVisible(req.identity, index)) return *refused;
  std::vector<tlog::Hash> proof;
  Status s = ledger_->InclusionProof(index, size, &proof);
  if (!s.ok()) return Error(500, s.message());
  std::string entry;
  s = ledger_->ReadEntry(index, &entry);
  if (!s.ok()) return Error(500, s.message());
  nlohmann::json hashes = nlohmann::json::array();
  for (const auto& h : proof) hashes.push_back(tlog::Base64Encode({h.data(), h.size()}));
  return Json(200, {{"index", index},
                    {"size", size},
                    {"entry", tlog::Base64Encode(
                                  {reinterpret_cast<const uint8_t*>(entry.data()), entry.size()})},
                    {"proof", hashes}});
}

api::ApiResponse CollectorServer::HandleEventsQuery(const api::ApiRequest& req) {
  index::EventQuery query;
  if (auto refused = PrepareEventQuery(req, &query)) return *refused;
  nlohmann::json answer;
  Status s = index::AnswerEventQuery(*ledger_, index_path_, index_->indexed(), query, &answer);
  if (!s.ok()) return IndexReadFailed(s);
  return Json(200, answer);
}

api::ApiResponse CollectorServer::IndexReadFailed(const Status& s) {
  if (s.code() == Status::Code::kCorruption) {
    index_->ReportDamage();
    logging::Default().Error("an events query found the index damaged; it is checked and rebuilt",
                             {{"error", s.ToString()}});
    return Error(503,
                 "the events index is damaged and is being rebuilt from the ledger; ask "
                 "again shortly");
  }
  return Error(500, "events query failed: " + s.message());
}

api::ApiResponse CollectorServer::HandleEventsStream(const api::ApiRequest& req) {
  index::EventQuery query;
  if (auto refused = PrepareEventQuery(req, &query)) return *refused;
  if (query.cursor.set) return Error(400, "a stream starts at from_index, not a cursor");
  // From the given ledger index, or from what is indexed now (new entries only).
  uint64_t next = query.from_index_given ? query.filter.min_index : index_->indexed();
  query.by_index = true;
  query.limit = 100;
  api::ApiResponse res(200, "text/event-stream", "");
  res.stream = [this, query, next](const api::StreamWrite& write) mutable {
    using Clock = std::chrono::steady_clock;
    auto quiet_since = Clock::now();
    if (!write(": latch events from ledger index " + std::to_string(next) + "\n\n")) return;
    while (!stopping_) {
      uint64_t indexed = index_->WaitPast(next, std::chrono::milliseconds(1000));
      while (indexed > next && !stopping_) {
        query.filter.min_index = next;
        nlohmann::json answer;
        Status s = index::AnswerEventQuery(*ledger_, index_path_, indexed, query, &answer);
        if (!s.ok()) {
          if (s.code() == Status::Code::kCorruption) index_->ReportDamage();
          write("event: error\ndata: " + JsonText(nlohmann::json({{"error", s.message()}})) +
                "\n\n");
          return;
        }
        uint64_t after = answer["next_index"].get<uint64_t>();
        if (!answer["events"].empty()) {
          // The id is where a reconnecting client resumes (from_index).
          if (!write("id: " + std::to_string(after) + "\ndata: " + JsonText(answer) + "\n\n")) {
            return;
          }
          quiet_since = Clock::now();
        }
        if (after <= next) break;  // the checkpoint has not caught up with the index yet
        next = after;
      }
      if (Clock::now() - quiet_since > std::chrono::seconds(15)) {
        if (!write(": keepalive\n\n")) return;  // also finds clients that went away
        quiet_since = Clock::now();
      }
    }
  };
  return res;
}

}  // namespace latch::collector
