// The API's route table (collector/api/route_table.h): which route a method
// and path reach, the id a route is handed, and 404 against 405.
#include "collector/api/route_table.h"

#include <gtest/gtest.h>

namespace latch::api {
namespace {

RouteTable::Handler Answer(int status) {
  return [status](const ApiRequest&, const RouteArgs&,
                  const ApiServer::Respond&) -> std::optional<ApiResponse> {
    return ApiResponse{status, "text/plain", ""};
  };
}

int StatusOf(const RouteTable& table, const std::string& method, const std::string& path,
             RouteArgs* args = nullptr) {
  RouteTable::Found f = table.Find(method, path);
  if (f.route == nullptr) return f.status_if_none;
  if (args != nullptr) *args = f.args;
  return f.route->handler(ApiRequest{}, f.args, nullptr)->status;
}

TEST(RouteTable, MethodAndPathPickTheRoute) {
  RouteTable t;
  t.Add("GET", "/v1/requests", RunsOn::kLoop, Answer(200));
  t.Add("POST", "/v1/requests", RunsOn::kLoop, Answer(201));
  t.Add("GET", "/v1/requests/{id}", RunsOn::kLoop, Answer(202));
  t.Add("POST", "/v1/requests/{id}/approve", RunsOn::kLoop, Answer(203));
  t.Add("GET", "/v1/events", RunsOn::kWorker, Answer(204));
  EXPECT_EQ(StatusOf(t, "GET", "/v1/requests"), 200);
  EXPECT_EQ(StatusOf(t, "POST", "/v1/requests"), 201);
  RouteArgs args;
  EXPECT_EQ(StatusOf(t, "GET", "/v1/requests/42", &args), 202);
  EXPECT_EQ(args.id, 42u);
  EXPECT_EQ(StatusOf(t, "POST", "/v1/requests/7/approve", &args), 203);
  EXPECT_EQ(args.id, 7u);
  EXPECT_EQ(t.Find("GET", "/v1/events").route->runs_on, RunsOn::kWorker);
}

TEST(RouteTable, AKnownPathUnderAnotherMethodIs405AndAnUnknownOne404) {
  RouteTable t;
  t.Add("GET", "/v1/requests", RunsOn::kLoop, Answer(200));
  t.Add("POST", "/v1/requests/{id}/approve", RunsOn::kLoop, Answer(203));
  EXPECT_EQ(StatusOf(t, "DELETE", "/v1/requests"), 405);
  EXPECT_EQ(StatusOf(t, "GET", "/v1/requests/7/approve"), 405);
  EXPECT_EQ(StatusOf(t, "GET", "/v1/nothing"), 404);
  EXPECT_EQ(StatusOf(t, "GET", "/v1/requests/extra"), 404);
  EXPECT_EQ(StatusOf(t, "GET", "/v1"), 404);
  EXPECT_EQ(StatusOf(t, "GET", ""), 404);
  EXPECT_EQ(StatusOf(t, "POST", "/v1/requests/7/approve/more"), 404);
}

// An id is a positive decimal number of at most 19 digits: anything else
// matches no route (hostile ids never reach a handler).
TEST(RouteTable, OnlyAPositiveDecimalIdMatchesAnIdSegment) {
  RouteTable t;
  t.Add("GET", "/v1/requests/{id}", RunsOn::kLoop, Answer(200));
  RouteArgs args;
  EXPECT_EQ(StatusOf(t, "GET", "/v1/requests/9999999999999999999", &args), 200);
  EXPECT_EQ(args.id, 9999999999999999999u);
  for (const char* bad : {"0", "-1", "+1", "1e3", "0x10", "12a", "99999999999999999999",
                          "18446744073709551616", " 1", "%31", "\xc3\xa9"}) {
    EXPECT_EQ(StatusOf(t, "GET", std::string("/v1/requests/") + bad), 404) << bad;
  }
}

TEST(RouteTable, AStarTakesTheRestOfThePath) {
  RouteTable t;
  t.Add("GET", "/tile/*", RunsOn::kLoop, Answer(200));
  RouteArgs args;
  EXPECT_EQ(StatusOf(t, "GET", "/tile/0/x001/234.p/5", &args), 200);
  EXPECT_EQ(args.rest, "0/x001/234.p/5");
  EXPECT_EQ(StatusOf(t, "GET", "/tile"), 404);
  EXPECT_EQ(StatusOf(t, "GET", "/tile/"), 404);
}

TEST(RouteTable, PathSegmentsSkipEmptyOnes) {
  EXPECT_EQ(PathSegments("/a/b/c"), (std::vector<std::string_view>{"a", "b", "c"}));
  EXPECT_EQ(PathSegments("//a//b/"), (std::vector<std::string_view>{"a", "b"}));
  EXPECT_TRUE(PathSegments("/").empty());
  EXPECT_TRUE(PathSegments("").empty());
}

}  // namespace
}  // namespace latch::api
