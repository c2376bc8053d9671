#include "collector/api/route_table.h"

#include <utility>

namespace latch::api {

std::vector<std::string_view> PathSegments(std::string_view path) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

bool ParseId(std::string_view text, uint64_t* id) {
  if (text.empty() || text.size() > 19) return false;
  uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<uint64_t>(c - '0');  // 19 digits cannot overflow 64 bits
  }
  *id = v;
  return v > 0;
}

void RouteTable::Add(std::string method, std::string_view pattern, RunsOn runs_on,
                     Handler handler) {
  Route r;
  r.method = std::move(method);
  for (std::string_view s : PathSegments(pattern)) r.pattern.emplace_back(s);
  r.runs_on = runs_on;
  r.handler = std::move(handler);
  routes_.push_back(std::move(r));
}

bool RouteTable::Matches(const std::vector<std::string>& pattern,
                         const std::vector<std::string_view>& path, RouteArgs* args) {
  RouteArgs out;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == "*" && i + 1 == pattern.size()) {
      if (path.size() <= i) return false;
      for (size_t k = i; k < path.size(); ++k) {
        out.rest += (k > i ? "/" : "");
        out.rest += path[k];
      }
      *args = std::move(out);
      return true;
    }
    if (i >= path.size()) return false;
    if (pattern[i] == "{id}") {
      if (!ParseId(path[i], &out.id)) return false;
    } else if (pattern[i] != path[i]) {
      return false;
    }
  }
  if (path.size() != pattern.size()) return false;
  *args = std::move(out);
  return true;
}

RouteTable::Found RouteTable::Find(const std::string& method, std::string_view path) const {
  Found found;
  const std::vector<std::string_view> segments = PathSegments(path);
  for (const Route& r : routes_) {
    RouteArgs args;
    if (!Matches(r.pattern, segments, &args)) continue;
    if (r.method != method) {
      found.status_if_none = 405;
      continue;
    }
    found.route = &r;
    found.args = std::move(args);
    return found;
  }
  return found;
}

}  // namespace latch::api
