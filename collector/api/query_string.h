// URL query strings ("a=1&b=x%20y") as a map, strictly: every pair has a
// key, no key repeats, escapes are well formed, and the decoded text has no
// control characters. The reason for a refusal names the offending part.
#pragma once

#include <map>
#include <string>
#include <string_view>

namespace latch::api {

bool ParseQueryString(std::string_view query, std::map<std::string, std::string>* out,
                      std::string* why);

}  // namespace latch::api
