// The collector's events routes: GET /v1/events (the verified query),
// /v1/events/stream (the live tail) and /v1/proof/inclusion, with the one
// visibility rule they share. They read the ledger and the index, never
// loop-owned state, so they run on the API's workers (RouteApi).
#include <algorithm>
#include <chrono>
#include <memory>
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
  auto tail = std::make_shared<LiveTail>();
  // From the given ledger index, or from what is indexed now (new entries only).
  tail->next = query.from_index_given ? query.filter.min_index : index_->indexed();
  query.by_index = true;
  query.limit = 100;
  tail->query = std::move(query);
  api::ApiResponse res(200, "text/event-stream", "");
  res.stream = [this, tail](api::StreamNext next) {
    // Asked on the loop (the API's thread), for each piece.
    PullTail(tail, std::move(next));
  };
  return res;
}

void CollectorServer::PullTail(const std::shared_ptr<LiveTail>& tail, api::StreamNext next) {
  LATCH_ASSERT_ON_LOOP(*loop_);
  using Clock = std::chrono::steady_clock;
  if (stopping_ || tail->ended) return next(std::nullopt);
  if (!tail->started) {
    tail->started = true;
    tail->quiet_since = Clock::now();
    return next(": latch events from ledger index " + std::to_string(tail->next) + "\n\n");
  }
  const uint64_t indexed = index_->indexed();
  if (indexed > tail->next) {
    // The page is read on a worker (ledger and index reads); its answer, or
    // a look again later, comes back to the loop.
    PostToWorker([this, tail, next, indexed]() mutable {
      tail->query.filter.min_index = tail->next;
      nlohmann::json answer;
      Status s = index::AnswerEventQuery(*ledger_, index_path_, indexed, tail->query, &answer);
      if (!s.ok()) {
        if (s.code() == Status::Code::kCorruption) index_->ReportDamage();
        tail->ended = true;
        return next("event: error\ndata: " + JsonText(nlohmann::json({{"error", s.message()}})) +
                    "\n\n");
      }
      const uint64_t after = answer["next_index"].get<uint64_t>();
      const uint64_t from = tail->next;
      tail->next = std::max(tail->next, after);
      if (!answer["events"].empty()) {
        tail->quiet_since = std::chrono::steady_clock::now();
        // The id is where a reconnecting client resumes (from_index).
        return next("id: " + std::to_string(after) + "\ndata: " + JsonText(answer) + "\n\n");
      }
      // Nothing to send: the checkpoint has not caught up with the index
      // yet (after <= from), or the entries were not this reader's.
      loop_->Post([this, tail, next = std::move(next), again = after > from]() mutable {
        if (again) return PullTail(tail, std::move(next));
        parked_tails_.push_back({tail, std::move(next)});
      });
    });
    return;
  }
  if (Clock::now() - tail->quiet_since > std::chrono::seconds(15)) {
    tail->quiet_since = Clock::now();
    return next(": keepalive\n\n");  // also finds clients that went away
  }
  // Nothing new: looked at again at the next tick (at most 200 ms).
  parked_tails_.push_back({tail, std::move(next)});
}

void CollectorServer::WakeTails() {
  std::vector<ParkedTail> parked;
  parked.swap(parked_tails_);
  for (ParkedTail& p : parked) PullTail(p.tail, std::move(p.next));
}

}  // namespace latch::collector
