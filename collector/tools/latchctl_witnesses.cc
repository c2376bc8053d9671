#include "collector/tools/latchctl_witnesses.h"

#include <nlohmann/json.hpp>

#include "lib/tlog/base64.h"
#include "lib/tlog/proof.h"
#include "lib/tlog/witnessed_checkpoint.h"

namespace latchctl {

latch::Status LoadWitnesses(const Settings& s, Witnesses* out) {
  out->keys.clear();
  for (const std::string& k : s.witness_keys) {
    latch::tlog::CosignatureVerifier w;
    if (!latch::tlog::CosignatureVerifier::Parse(k, &w).ok()) {
      return latch::Status::InvalidArgument("'" + T(k) +
                                            "' is not a witness key (<name>+<id>+<key>)");
    }
    out->keys.push_back(w);
  }
  out->quorum = s.witness_quorum == 0 ? out->keys.size() : s.witness_quorum;
  if (out->quorum > out->keys.size()) {
    return latch::Status::InvalidArgument("witness quorum " + std::to_string(out->quorum) +
                                          " is more than the " + std::to_string(out->keys.size()) +
                                          " witness keys");
  }
  return latch::Status::Ok();
}

latch::Status FetchConsistencyProof(const Settings& s, uint64_t from, uint64_t to,
                                    std::vector<latch::tlog::Hash>* proof) {
  proof->clear();
  if (from == to) return latch::Status::Ok();
  Reply p = Call(
      s, "GET", "/v1/proof/consistency?from=" + std::to_string(from) + "&to=" + std::to_string(to));
  auto j = nlohmann::json::parse(p.body, nullptr, false);
  if (p.status != 200 || !j.is_object() || !j.contains("proof") || !j["proof"].is_array()) {
    return latch::Status::IoError("cannot get a consistency proof (" + std::to_string(p.status) +
                                  ")");
  }
  for (const auto& h : j["proof"]) {
    auto bytes = h.is_string() ? latch::tlog::Base64Decode(h.get<std::string>()) : std::nullopt;
    if (!bytes || bytes->size() != 32) {
      return latch::Status::VerifyFailed("a consistency proof hash is not 32 bytes");
    }
    latch::tlog::Hash x;
    std::copy(bytes->begin(), bytes->end(), x.begin());
    proof->push_back(x);
  }
  return latch::Status::Ok();
}

latch::Status CheckAgainstWitnessed(const Settings& s, const latch::tlog::NoteVerifier& key,
                                    const Witnesses& w, const latch::tlog::Checkpoint& verified,
                                    WitnessedView* out) {
  Reply r = Call(s, "GET", "/checkpoint");
  if (r.status != 200) {
    return latch::Status::VerifyFailed("no witnessed checkpoint: the collector answered " +
                                       std::to_string(r.status) + ": " + T(r.body));
  }
  LATCH_RETURN_IF_ERROR(latch::tlog::OpenWitnessedCheckpoint(r.body, key, w.keys, w.quorum,
                                                             &out->checkpoint, &out->cosigned));
  const latch::tlog::Checkpoint& witnessed = out->checkpoint;
  const bool behind = witnessed.size <= verified.size;
  const latch::tlog::Checkpoint& small = behind ? witnessed : verified;
  const latch::tlog::Checkpoint& large = behind ? verified : witnessed;
  std::vector<latch::tlog::Hash> proof;
  if (small.size == large.size) {
    if (small.root != large.root) {
      return latch::Status::VerifyFailed("the witnessed checkpoint has another root at size " +
                                         std::to_string(small.size));
    }
    return latch::Status::Ok();
  }
  LATCH_RETURN_IF_ERROR(FetchConsistencyProof(s, small.size, large.size, &proof));
  return latch::tlog::VerifyConsistency(small.size, large.size, proof, small.root, large.root)
      .WithContext("the witnessed checkpoint (" + std::to_string(witnessed.size) +
                   " entries) against the one verified (" + std::to_string(verified.size) + ")");
}

std::string CosignedBy(const Witnesses& w, const std::vector<size_t>& cosigned) {
  std::string names;
  for (size_t i : cosigned) names += (names.empty() ? "" : ", ") + w.keys[i].name();
  return "cosigned by " + std::to_string(cosigned.size()) + " of " + std::to_string(w.keys.size()) +
         " witnesses (" + names + ")";
}

}  // namespace latchctl
