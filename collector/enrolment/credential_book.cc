#include "collector/enrolment/credential_book.h"

#include <stdexcept>

namespace latch::collector {

void CredentialBook::Apply(schema::WorkflowAction::Reader a) {
  using W = schema::WorkflowAction;
  if (a.which() != W::API_CREDENTIAL_ADDED && a.which() != W::API_CREDENTIAL_REMOVED) return;
  auto c = a.which() == W::API_CREDENTIAL_ADDED ? a.getApiCredentialAdded()
                                                : a.getApiCredentialRemoved();
  std::map<std::string, std::string>& book =
      std::string_view(c.getKind().cStr()) == "cert" ? certs_ : tokens_;
  if (a.which() == W::API_CREDENTIAL_ADDED) {
    book[c.getSha256()] = c.getIdentity();
  } else {
    book.erase(c.getSha256());
  }
}

bool CredentialBook::IsSha256Hex(const std::string& text) {
  if (text.size() != 64) return false;
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

nlohmann::json CredentialBook::ToSnapshot() const {
  nlohmann::json tokens = nlohmann::json::object(), certs = nlohmann::json::object();
  for (const auto& [hash, who] : tokens_) tokens[hash] = who;
  for (const auto& [hash, who] : certs_) certs[hash] = who;
  return {{"tokens", tokens}, {"certs", certs}};
}

Status CredentialBook::FromSnapshot(const nlohmann::json& state) {
  tokens_.clear();
  certs_.clear();
  if (!state.contains("api_credentials")) return Status::Ok();
  try {
    const nlohmann::json& c = state.at("api_credentials");
    for (const auto& [hash, who] : c.at("tokens").items()) tokens_[hash] = who.get<std::string>();
    for (const auto& [hash, who] : c.at("certs").items()) certs_[hash] = who.get<std::string>();
  } catch (const std::exception& e) {
    tokens_.clear();
    certs_.clear();
    return Status::Corruption(std::string("malformed API credential state: ") + e.what());
  }
  return Status::Ok();
}

}  // namespace latch::collector
