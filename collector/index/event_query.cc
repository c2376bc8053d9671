#include "collector/index/event_query.h"

#include <charconv>

#include "lib/tlog/base64.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/merkle_hash.h"
#include "lib/tlog/proof.h"

namespace latch::index {
namespace {

bool ParseInt(const std::string& s, int64_t* v) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *v);
  return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

Status ParseEventQuery(const std::map<std::string, std::string>& params, EventQuery* out) {
  EventQuery q;
  for (const auto& param : params) {
    const std::string& key = param.first;
    const std::string& value = param.second;
    auto bad = [&](const std::string& why) {
      return Status::InvalidArgument("parameter '" + key + "': " + why);
    };
    int64_t n = 0;
    if (value.size() > 256) return bad("too long");
    if (key == "host") {
      q.filter.host = value;
    } else if (key == "identity") {
      q.filter.identity = value;
    } else if (key == "resource") {
      q.filter.resource = value;
    } else if (key == "verdict") {
      if (value != "allow" && value != "deny" && value != "audit" && value != "cut")
        return bad("allow, deny, audit or cut");
      q.filter.verdict = value;
    } else if (key == "kind") {
      q.filter.kind = value;
    } else if (key == "grant") {
      if (!ParseInt(value, &n) || n <= 0) return bad("a grant id");
      q.filter.grant_id = static_cast<uint64_t>(n);
    } else if (key == "uid") {
      if (!ParseInt(value, &n) || n < 0 || n > UINT32_MAX) return bad("a uid");
      q.filter.uid = static_cast<uint32_t>(n);
    } else if (key == "since_ns") {
      if (!ParseInt(value, &q.filter.since_ns)) return bad("Unix nanoseconds");
    } else if (key == "until_ns") {
      if (!ParseInt(value, &q.filter.until_ns)) return bad("Unix nanoseconds");
    } else if (key == "limit") {
      if (!ParseInt(value, &n) || n < 1 || n > client::kMaxEventLimit)
        return bad("1 to " + std::to_string(client::kMaxEventLimit));
      q.limit = static_cast<int>(n);
    } else if (key == "from_index") {
      if (!ParseInt(value, &n) || n < 0) return bad("a ledger index");
      q.filter.min_index = static_cast<uint64_t>(n);
      q.from_index_given = true;
    } else if (key == "cursor") {
      size_t dot = value.find('.');
      int64_t idx = 0;
      if (dot == std::string::npos || !ParseInt(value.substr(0, dot), &q.cursor.time_ns) ||
          !ParseInt(value.substr(dot + 1), &idx) || idx < 0) {
        return bad("a cursor from a previous answer");
      }
      q.cursor.index = static_cast<uint64_t>(idx);
      q.cursor.set = true;
    } else {
      return Status::InvalidArgument("unknown parameter '" + key + "'");
    }
  }
  *out = std::move(q);
  return Status::Ok();
}

Status AnswerEventQuery(ledger::Ledger& ledger, const std::string& index_path,
                        uint64_t indexed_size, const EventQuery& query, nlohmann::json* out) {
  // One checkpoint for the whole page: every proof is against its tree.
  std::string note = ledger.checkpoint_note();
  tlog::Checkpoint cp;
  LATCH_RETURN_IF_ERROR(tlog::OpenCheckpoint(note, ledger.verifier(), &cp));
  std::vector<EventHit> hits;
  // Only what the index has covered can be answered; in ledger order (the
  // live tail) the page ends there.
  uint64_t below = query.by_index ? std::min(cp.size, indexed_size) : cp.size;
  LATCH_RETURN_IF_ERROR(EventIndex::Query(index_path, query.filter, below, query.cursor,
                                          query.limit, &hits, query.by_index));
  nlohmann::json events = nlohmann::json::array();
  // One reader for the page: the proofs share most of their upper nodes. The
  // ledger serves only committed hashes, and cp.size is committed.
  tlog::TreeReader tree(ledger, /*memoize=*/true);
  std::string bundle_data;
  uint64_t bundle_at = UINT64_MAX;
  for (const EventHit& h : hits) {
    // Consecutive hits often share a bundle: read each one once.
    uint64_t bundle = h.index / tlog::kTileWidth;
    if (bundle != bundle_at) {
      uint64_t width = std::min<uint64_t>(tlog::kTileWidth, cp.size - bundle * tlog::kTileWidth);
      LATCH_RETURN_IF_ERROR(ledger.ReadTile(
          {tlog::TileId::kEntries, bundle, static_cast<uint32_t>(width)}, &bundle_data));
      bundle_at = bundle;
    }
    size_t pos = 0;
    for (uint64_t k = 0; k < h.index % tlog::kTileWidth; ++k) {
      pos += 2 + ((static_cast<uint8_t>(bundle_data[pos]) << 8) |
                  static_cast<uint8_t>(bundle_data[pos + 1]));
    }
    size_t len =
        (static_cast<uint8_t>(bundle_data[pos]) << 8) | static_cast<uint8_t>(bundle_data[pos + 1]);
    std::string entry = bundle_data.substr(pos + 2, len);
    std::vector<tlog::Hash> proof;
    LATCH_RETURN_IF_ERROR(tree.InclusionProof(h.index, cp.size, &proof));
    nlohmann::json hashes = nlohmann::json::array();
    for (const auto& p : proof) hashes.push_back(tlog::Base64Encode({p.data(), p.size()}));
    RecordView view;
    nlohmann::json record = ViewRecord(entry, &view).ok() ? view.detail : nlohmann::json(nullptr);
    events.push_back({{"index", h.index},
                      {"time_ns", h.time_ns},
                      {"identity", h.identity},
                      {"resource", h.resource},
                      {"entry", tlog::Base64Encode(Bytes(entry))},
                      {"inclusion_proof", hashes},
                      {"record", record}});
  }
  nlohmann::json next = nullptr;
  if (static_cast<int>(hits.size()) == query.limit) {
    next = std::to_string(hits.back().time_ns) + "." + std::to_string(hits.back().index);
  }
  *out = {{"checkpoint", note},
          {"tree_size", cp.size},
          {"indexed_size", std::min(indexed_size, cp.size)},
          {"events", events},
          {"next_cursor", next}};
  if (query.by_index) {
    (*out)["next_index"] = static_cast<int>(hits.size()) == query.limit
                               ? hits.back().index + 1
                               : std::max(below, query.filter.min_index);
  }
  return Status::Ok();
}

}  // namespace latch::index
