#include "collector/api/json_body.h"

namespace latch::api {

bool ParseJsonBody(std::string_view body, const std::set<std::string>& allowed, nlohmann::json* out,
                   std::string* why) {
  if (body.empty()) {
    *out = nlohmann::json::object();
    return true;
  }
  // Without exceptions: malformed JSON and invalid UTF-8 are "discarded".
  *out = nlohmann::json::parse(body, nullptr, false);
  if (out->is_discarded() || !out->is_object()) {
    *why = "the body must be a JSON object";
    return false;
  }
  for (auto& [k, v] : out->items()) {
    if (!allowed.count(k)) {
      *why = "unknown field '" + k + "'";
      return false;
    }
  }
  return true;
}

}  // namespace latch::api
