// Issue 19's measure: the time from loading the console's page to a verified
// timeline of a grant with about 1,000 entries, in Debian's headless
// Chromium, and what the browser's checks cost per entry; side by side with
// `latchctl events --grant` checking the same entries in C++ (and fetching
// them without checking), in the same run.
//
//   build/tests/console_timeline_bench [--connects 495] [--runs 5]
//
// The grant's entries are real: tess's uid makes --connects connects from
// the guarded cgroup under the grant (a decision and an activity record
// each), on top of the request, review, grant and the hosts' applied sets.
// Needs root and BTF (the agent guards a cgroup on this kernel).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "console_stack.h"

namespace {

using latch::testing::ConsoleStack;
namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Every entry of the grant's story the API has indexed so far.
size_t GrantEntries(const ConsoleStack& stack, const std::string& grant) {
  size_t n = 0;
  std::string cursor;
  for (;;) {
    std::string target = "/v1/events?grant=" + grant + "&limit=1000";
    if (!cursor.empty()) target += "&cursor=" + cursor;
    auto page = nlohmann::json::parse(stack.Api(http::verb::get, target, "sam").body);
    n += page["events"].size();
    if (page["next_cursor"].is_null()) return n;
    cursor = page["next_cursor"].get<std::string>();
  }
}

}  // namespace

int main(int argc, char** argv) {
  int connects = 495, runs = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i];
    if (flag == "--connects") connects = std::atoi(argv[i + 1]);
    if (flag == "--runs") runs = std::atoi(argv[i + 1]);
  }
  if (!latch::agent::KernelTestCannotRun().empty()) {
    std::fprintf(stderr, "console_timeline_bench: needs root and BTF (%s)\n",
                 latch::agent::KernelTestCannotRun().c_str());
    return latch::agent::UnderCi() ? 1 : 77;
  }
  ConsoleStack stack;
  std::string why = stack.Start("latch-console-bench");
  if (!why.empty()) {
    std::fprintf(stderr, "console_timeline_bench: %s\n", why.c_str());
    return 1;
  }
  // A grant, by the API (the browser's part is measured below).
  auto asked = stack.Api(http::verb::post, "/v1/requests", "tess",
                         R"({"resource":"db","duration":"30m","reason":"benchmark"})");
  auto approved =
      stack.Api(http::verb::post,
                "/v1/requests/" +
                    std::to_string(nlohmann::json::parse(asked.body)["id"].get<int>()) + "/approve",
                "ann", R"({"comment":"ok"})");
  const std::string grant =
      std::to_string(nlohmann::json::parse(approved.body)["grant_id"].get<uint64_t>());
  if (!stack.ConnectBecomes(0, std::chrono::seconds(15))) {
    std::fprintf(stderr, "the grant did not reach the kernel\n%s", stack.Tail("agent.log").c_str());
    return 1;
  }
  int made = stack.ConnectMany(connects);
  // Until the index has them all (its count stops growing).
  size_t entries = 0;
  for (int quiet = 0; quiet < 10;) {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    size_t now = GrantEntries(stack, grant);
    quiet = now == entries ? quiet + 1 : 0;
    entries = now;
  }
  std::printf("grant %s: %d connects made, %zu entries in its story\n", grant.c_str(), made,
              entries);

  // The browser: each run a fresh profile (signs in, pins the key, checks
  // every entry from nothing), then the page load to all-verified.
  std::vector<double> load_ms, page_ms, fetch_ms;
  for (int r = 0; r < runs; ++r) {
    const std::string who = "bench-" + std::to_string(r);
    auto in = stack.Browser(who, {"sign-in", "--token-file", stack.TokenFile("sam"), "--ledger-key",
                                  stack.ledger_key()});
    auto t = stack.Browser(who, {"timeline", "--grant", grant});
    if (t.contains("error") || in.contains("error")) {
      std::fprintf(stderr, "%s\n", (t.contains("error") ? t : in)["error"].dump().c_str());
      return 1;
    }
    if (t["verified"] != t["total"]) {
      std::fprintf(stderr, "not every entry verified: %s\n", t.dump().c_str());
      return 1;
    }
    load_ms.push_back(t["load_to_verified_ms"].get<double>());
    page_ms.push_back(t["page_ms"].get<double>());
    fetch_ms.push_back(t["fetch_ms"].get<double>());
    std::printf(
        "run %d: %d entries verified; page load to verified %.0f ms (in the page %.0f ms, of "
        "which fetching %.0f ms)\n",
        r + 1, t["total"].get<int>(), load_ms.back(), page_ms.back(), fetch_ms.back());
  }

  // latchctl on the same entries: checked, and fetched without checking.
  auto latchctl = [&](bool verify) {
    std::vector<std::string> args = {LATCHCTL_BIN,
                                     "--server",
                                     stack.Url(),
                                     "--token-file",
                                     stack.TokenFile("sam"),
                                     "--ca",
                                     stack.dir() + "/collector/api.crt",
                                     "--ledger-key",
                                     stack.ledger_key(),
                                     "--json",
                                     "events",
                                     "--grant",
                                     grant,
                                     "--limit",
                                     "1000"};
    if (!verify) args.push_back("--no-verify");
    std::string out;
    auto start = Clock::now();
    int rc = latch::testing::RunTool(args, &out);
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    if (rc != 0) std::fprintf(stderr, "latchctl failed: %s\n", out.substr(0, 500).c_str());
    return ms;
  };
  std::vector<double> cli_ms, cli_fetch_ms;
  for (int r = 0; r < runs; ++r) {
    cli_ms.push_back(latchctl(true));
    cli_fetch_ms.push_back(latchctl(false));
  }
  const double load = Median(load_ms), page = Median(page_ms), cli = Median(cli_ms),
               fetch = Median(cli_fetch_ms), browser_fetch = Median(fetch_ms);
  std::printf("\nmedians of %d runs, %zu entries:\n", runs, entries);
  std::printf("  browser: page load to verified timeline   %8.0f ms\n", load);
  std::printf("  browser: in the page (fetch, check, show) %8.0f ms  = %.0f us per entry\n", page,
              page * 1000 / static_cast<double>(entries));
  std::printf("  browser: of which fetching the pages       %8.0f ms\n", browser_fetch);
  std::printf("  browser: showing and checking             %8.0f ms  = %.0f us per entry\n",
              page - browser_fetch, (page - browser_fetch) * 1000 / static_cast<double>(entries));
  std::printf("  latchctl events --grant (fetch, check)    %8.0f ms  = %.0f us per entry\n", cli,
              cli * 1000 / static_cast<double>(entries));
  std::printf("  latchctl events --grant --no-verify       %8.0f ms\n", fetch);
  std::printf("  ratio, browser in-page / latchctl: %.2f\n", page / cli);
  std::printf(
      "  checking alone, browser (showing included) / latchctl (fetch excluded): %.0f / %.0f ms\n",
      page - browser_fetch, cli - fetch);
  return 0;
}
