// The collector's API answers as JSON, shared by its route files
// (collector_api.cc, events_api.cc).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "collector/api/api_server.h"

namespace latch::collector {

// JSON text that never throws: a string that is not UTF-8 (a record from
// before input checks, or from an agent) is written with U+FFFD in place of
// its bad bytes, instead of ending the answer or the stream (issue 14: one
// such refusal record cut off every events query and live tail past it).
inline std::string JsonText(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
inline api::ApiResponse Json(int status, const nlohmann::json& j) {
  return {status, "application/json", JsonText(j)};
}
inline api::ApiResponse Error(int status, const std::string& why) {
  return Json(status, {{"error", why}});
}

}  // namespace latch::collector
