// An HTTP request as the API reads it: Beast's parser with the API's limits,
// then its target's query string and its JSON body as the handlers parse
// them (api::ParseQueryString, api::ParseJsonBody), and the fields a request
// body carries (a duration, free text), and the console's session cookie as
// authentication reads it (api::CookieValue, then a SessionBook lookup).
// Nothing here may crash, hang or leak.
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "collector/api/api_server.h"
#include "collector/api/json_body.h"
#include "collector/api/query_string.h"
#include "collector/api/session_book.h"
#include "collector/workflow/duration.h"
#include "collector/workflow/free_text.h"
#include "lib/text/utf8.h"

namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http::request_parser<http::string_body> parser;
  parser.body_limit(1 << 20);  // ApiOptions::max_body_bytes' default
  parser.header_limit(16 * 1024);
  parser.eager(true);
  boost::beast::error_code ec;
  size_t used = parser.put(boost::asio::buffer(data, size), ec);
  if (!ec && !parser.is_done()) parser.put_eof(ec);
  (void)used;
  if (ec || !parser.is_done()) return 0;
  const auto& msg = parser.get();
  // A cookie header of any shape: its session value, looked up.
  std::string secret = latch::api::CookieValue(std::string(msg[http::field::cookie]),
                                               latch::api::ApiServer::kSessionCookie);
  static latch::api::SessionBook sessions;
  (void)sessions.Find(secret, 0);
  (void)latch::api::SecretsEqual(secret, std::string(msg["X-Latch-CSRF"]));
  std::string target(msg.target());
  if (!latch::text::IsValidUtf8(target)) return 0;  // refused before any handler
  std::map<std::string, std::string> params;
  std::string why;
  size_t qm = target.find('?');
  if (qm != std::string::npos)
    (void)latch::api::ParseQueryString(target.substr(qm + 1), &params, &why);
  nlohmann::json body;
  if (!latch::api::ParseJsonBody(msg.body(), {"resource", "duration", "reason", "comment"}, &body,
                                 &why)) {
    return 0;
  }
  if (body.contains("duration") && body["duration"].is_string()) {
    int64_t ns = 0;
    (void)latch::workflow::ParseDuration(body["duration"].get<std::string>(), &ns);
  }
  for (const char* field : {"reason", "comment"}) {
    if (body.contains(field) && body[field].is_string()) {
      std::string text = body[field].get<std::string>();
      (void)latch::workflow::CheckFreeText(text, field);
      (void)latch::workflow::IsBlank(text);
    }
  }
  (void)body.dump();  // every string in it is valid UTF-8 (dump throws otherwise)
  return 0;
}
