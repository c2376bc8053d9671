// RouteTable: which handler answers an API request, by method and path, and
// where it runs. A pattern is a path of segments; "{id}" matches a positive
// decimal id (at most 19 digits) and hands it to the handler, a final "*"
// matches the rest of the path (at least one segment). A path some route
// knows under another method is a 405, an unknown one a 404.
//
// Read by the loop thread only (filled before the server starts).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "collector/api/api_server.h"

namespace latch::api {

// Where a route's handler runs: on the collector's loop (workflow and grant
// state, answered at once or once an action is on record), or on a worker
// (ledger and index reads that must not hold up the loop).
enum class RunsOn { kLoop, kWorker };

struct RouteArgs {
  uint64_t id = 0;   // the "{id}" segment
  std::string rest;  // what "*" matched
};

class RouteTable {
 public:
  // The answer, or none when the handler answers through `respond` later.
  using Handler = std::function<std::optional<ApiResponse>(
      const ApiRequest& request, const RouteArgs& args, const ApiServer::Respond& respond)>;
  struct Route {
    std::string method;
    std::vector<std::string> pattern;
    RunsOn runs_on = RunsOn::kLoop;
    Handler handler;
  };
  struct Found {
    const Route* route = nullptr;  // null: none matched
    RouteArgs args;
    int status_if_none = 404;  // 405 when the path is known under another method
  };

  void Add(std::string method, std::string_view pattern, RunsOn runs_on, Handler handler);
  // `path`: the request target without its query.
  Found Find(const std::string& method, std::string_view path) const;

 private:
  static bool Matches(const std::vector<std::string>& pattern,
                      const std::vector<std::string_view>& path, RouteArgs* args);
  std::vector<Route> routes_;
};

// "/a/b/c" as {"a", "b", "c"}; "" and "/" as none.
std::vector<std::string_view> PathSegments(std::string_view path);
// A positive decimal id of at most 19 digits.
bool ParseId(std::string_view text, uint64_t* id);

}  // namespace latch::api
