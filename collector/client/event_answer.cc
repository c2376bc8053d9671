#include "collector/client/event_answer.h"

#include "lib/tlog/base64.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/merkle_hash.h"
#include "lib/tlog/proof.h"

namespace latch::client {

Status VerifyEventAnswer(const nlohmann::json& answer, const tlog::NoteVerifier& ledger_key,
                         std::vector<VerifiedEvent>* out, uint64_t* tree_size) {
  out->clear();
  if (!answer.is_object() || !answer.contains("checkpoint") || !answer["checkpoint"].is_string() ||
      !answer.contains("events") || !answer["events"].is_array()) {
    return Status::Corruption("not an events answer");
  }
  tlog::Checkpoint cp;
  LATCH_RETURN_IF_ERROR(
      tlog::OpenCheckpoint(answer["checkpoint"].get<std::string>(), ledger_key, &cp)
          .WithContext("the answer's checkpoint"));
  if (tree_size != nullptr) *tree_size = cp.size;
  tlog::MerkleHasher hasher;
  for (const auto& e : answer["events"]) {
    if (!e.is_object() || !e.contains("index") || !e["index"].is_number_unsigned() ||
        !e.contains("entry") || !e["entry"].is_string() || !e.contains("inclusion_proof") ||
        !e["inclusion_proof"].is_array()) {
      return Status::Corruption("an event of the answer is malformed");
    }
    uint64_t index = e["index"].get<uint64_t>();
    std::string where = "event at index " + std::to_string(index);
    auto entry = tlog::Base64Decode(e["entry"].get<std::string>());
    if (!entry) return Status::Corruption(where + ": entry is not base64");
    std::vector<tlog::Hash> proof;
    for (const auto& p : e["inclusion_proof"]) {
      auto h = p.is_string() ? tlog::Base64Decode(p.get<std::string>()) : std::nullopt;
      if (!h || h->size() != 32) return Status::Corruption(where + ": bad proof hash");
      proof.emplace_back();
      std::copy(h->begin(), h->end(), proof.back().begin());
    }
    LATCH_RETURN_IF_ERROR(tlog::VerifyInclusion(index, cp.size, hasher.Leaf(*entry), proof, cp.root)
                              .WithContext(where + " is not in the checkpoint's tree"));
    VerifiedEvent v;
    v.index = index;
    LATCH_RETURN_IF_ERROR(
        index::ViewRecord({reinterpret_cast<const char*>(entry->data()), entry->size()}, &v.view)
            .WithContext(where));
    if (e.contains("identity") && e["identity"].is_string()) v.identity = e["identity"];
    if (e.contains("resource") && e["resource"].is_string()) v.resource = e["resource"];
    out->push_back(std::move(v));
  }
  return Status::Ok();
}

}  // namespace latch::client
