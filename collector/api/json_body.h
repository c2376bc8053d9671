// Request bodies: a JSON object with only the fields a handler knows. What
// the values must be is each handler's check; this refuses everything else
// (not JSON, not an object, invalid UTF-8 in a string, an unknown field).
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>

namespace latch::api {

// An empty body is {}. On refusal, *why says what is wrong.
bool ParseJsonBody(std::string_view body, const std::set<std::string>& allowed, nlohmann::json* out,
                   std::string* why);

}  // namespace latch::api
