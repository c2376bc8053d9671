// The web console in a real browser (issue 19): Debian's headless Chromium,
// driven by tests/console/console_driver.py (Selenium), against a
// latch-collector and a latch-agent started here, the agent guarding a
// cgroup this test makes on the real kernel.
//
//   tess signs in and requests db; ann signs in, finds it in her inbox and
//   approves; a connect from tess's uid in the guarded cgroup then succeeds
//   in the kernel; ann revokes; the connect is refused again; the grant's
//   timeline shows the story with every entry verified in the browser. A
//   test proxy that changes one proof byte makes the page show that entry,
//   and only it, as not verified. And: the in-browser proof module passes
//   the shared vectors, a cross-site form post changes nothing, a cookie
//   copied before sign-out is refused after it, the CSP blocks an inline
//   script, no token is in any URL, storage or log, and each section fits a
//   phone's width.
//
// Screenshots land in $LATCH_SCREENSHOT_DIR (default: the build's
// console-screenshots/); docs/console/ holds a run's.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "console_stack.h"
#include "lib/tlog/checkpoint.h"
#include "lib/tlog/cosignature.h"
#include "lib/tlog/signed_note.h"

namespace latch::testing {
namespace {

namespace fs = std::filesystem;
namespace http = boost::beast::http;

class ConsoleBrowserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LATCH_SKIP_UNLESS_KERNEL_TEST_CAN_RUN();
    const char* shots = std::getenv("LATCH_SCREENSHOT_DIR");
    shots_ = shots != nullptr ? shots : std::string(LATCH_BUILD_DIR) + "/console-screenshots";
    fs::create_directories(shots_);
    stack_ = std::make_unique<ConsoleStack>();
    ASSERT_EQ(stack_->Start("latch-console"), "");
  }
  void TearDown() override { stack_.reset(); }
  // A browser step; a failed one fails the test with what it printed.
  nlohmann::json Browser(const std::string& who, std::vector<std::string> args,
                         const std::string& url = "") {
    nlohmann::json out = stack_->Browser(who, std::move(args), url);
    if (out.contains("error")) ADD_FAILURE() << out["error"].get<std::string>();
    return out;
  }

  std::string shots_;
  std::unique_ptr<ConsoleStack> stack_;
};

TEST_F(ConsoleBrowserTest, ARequestApprovedRevokedAndAuditedInTheBrowser) {
  // tess signs in and requests db.
  nlohmann::json tess = Browser("tess", {"sign-in", "--token-file", stack_->TokenFile("tess"),
                                         "--ledger-key", stack_->ledger_key()});
  ASSERT_EQ(tess.value("who", ""), "tess") << tess.dump();
  EXPECT_FALSE(tess["token_in_urls"].get<bool>());
  EXPECT_FALSE(tess["token_in_storage"].get<bool>());
  nlohmann::json asked = Browser("tess", {"request", "--resource", "db", "--duration", "20m",
                                          "--reason", "rebuild the orders index"});
  ASSERT_TRUE(asked.contains("request_id")) << asked.dump();
  const std::string request_id = std::to_string(asked["request_id"].get<int>());

  // ann signs in, finds it in her inbox with its reason and hosts, approves.
  ASSERT_EQ(Browser("ann", {"sign-in", "--token-file", stack_->TokenFile("ann"), "--ledger-key",
                            stack_->ledger_key()})
                .value("who", ""),
            "ann");
  nlohmann::json approved =
      Browser("ann", {"approve", "--request", request_id, "--screenshot", shots_ + "/inbox.png"});
  ASSERT_TRUE(approved.contains("grant_id")) << approved.dump();
  const std::string card = approved["card"];
  EXPECT_NE(card.find("tess asks for db for 20m"), std::string::npos) << card;
  EXPECT_NE(card.find("rebuild the orders index"), std::string::npos) << card;
  EXPECT_NE(card.find("host-a"), std::string::npos) << card;
  const std::string grant_id = std::to_string(approved["grant_id"].get<int>());

  // The kernel lets tess through, then ann revokes and it refuses again.
  EXPECT_TRUE(stack_->ConnectBecomes(0, std::chrono::seconds(15))) << stack_->Tail("agent.log");
  // Shown in the grants page as in the kernel on host-a.
  nlohmann::json revoked =
      Browser("ann", {"revoke", "--grant", grant_id, "--reason", "work is done"});
  ASSERT_EQ(revoked.value("revoked", 0), std::stoi(grant_id)) << revoked.dump();
  EXPECT_NE(revoked["card"].get<std::string>().find("host-a: in the kernel since"),
            std::string::npos)
      << revoked.dump();
  EXPECT_TRUE(stack_->ConnectBecomes(EPERM, std::chrono::seconds(15))) << stack_->Tail("agent.log");

  // The grant's story, every entry verified in ann's browser.
  nlohmann::json story =
      Browser("ann", {"timeline", "--grant", grant_id, "--screenshot", shots_ + "/timeline.png"});
  ASSERT_TRUE(story.contains("total")) << story.dump();
  EXPECT_EQ(story["verified"], story["total"]) << story.dump(1);
  std::string all;
  for (const auto& e : story["entries"]) all += e["summary"].get<std::string>() + "\n";
  for (const char* step :
       {"tess asked for db", "ann approved request", "issued grant", "applied its grant set",
        "allowed tess's connect", "ann revoked grant"}) {
    EXPECT_NE(all.find(step), std::string::npos) << step << " not in:\n" << all;
  }
  EXPECT_TRUE(story["console_errors"].empty()) << story.dump();

  // Through a proxy that changes one proof byte: that entry, and only it,
  // is shown as not verified, and says why.
  const std::string port_file = stack_->dir() + "/proxy.port";
  stack_->SpawnHelper(
      {"/usr/bin/python3", std::string(LATCH_SOURCE_DIR) + "/tests/console/tamper_proxy.py",
       "--upstream-port", std::to_string(stack_->api_port()), "--cert",
       stack_->dir() + "/collector/api.crt", "--key", stack_->dir() + "/collector/api.key",
       "--port-file", port_file},
      "proxy.log");
  for (int i = 0; i < 100 && !fs::exists(port_file); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const std::string proxied = "https://127.0.0.1:" + ConsoleStack::Slurp(port_file);
  ASSERT_EQ(Browser("sam",
                    {"sign-in", "--token-file", stack_->TokenFile("sam"), "--ledger-key",
                     stack_->ledger_key()},
                    proxied)
                .value("who", ""),
            "sam");
  nlohmann::json tampered = Browser(
      "sam", {"timeline", "--grant", grant_id, "--screenshot", shots_ + "/failed-verification.png"},
      proxied);
  ASSERT_TRUE(tampered.contains("total")) << tampered.dump();
  EXPECT_EQ(tampered["verified"].get<int>() + 1, tampered["total"].get<int>()) << tampered.dump(1);
  int failed = 0;
  for (const auto& e : tampered["entries"]) {
    if (e["verified"] == "yes") continue;
    ++failed;
    EXPECT_NE(e["why"].get<std::string>().find("inclusion proof"), std::string::npos) << e.dump();
  }
  EXPECT_EQ(failed, 1);
  EXPECT_NE(ConsoleStack::Slurp(stack_->dir() + "/proxy.log").find("changed a proof byte"),
            std::string::npos);

  // The audit page's live tail: a connect refused now arrives, verified.
  const std::string ready = stack_->dir() + "/tail.ready";
  auto tail = std::async(std::launch::async, [&] {
    return stack_->Browser(
        "ann", {"live-tail", "--expect", "denied tess's connect", "--ready-file", ready});
  });
  for (int i = 0; i < 300 && !fs::exists(ready); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(stack_->ConnectBecomes(EPERM, std::chrono::seconds(5)));
  nlohmann::json tailed = tail.get();
  EXPECT_FALSE(tailed.contains("error")) << tailed.dump();
  EXPECT_EQ(tailed.value("verified", ""), "yes") << tailed.dump();

  // A phone's width: every section fits, every control is reachable.
  nlohmann::json phone = Browser("ann", {"layout", "--width", "390", "--height", "844",
                                         "--screenshot", shots_ + "/phone-inbox.png"});
  ASSERT_TRUE(phone.contains("sections")) << phone.dump();
  for (const auto& [path, seen] : phone["sections"].items()) {
    EXPECT_LE(seen["overflow"].get<int>(), 0) << path;
    EXPECT_EQ(seen["unreachable"], 0) << path;
  }
  EXPECT_GT(phone["sections"]["#/audit"]["controls"].get<int>(), 5) << "not signed in?";

  // Sign-out: a copy of the cookie taken before it is refused after it.
  nlohmann::json out = Browser("tess", {"sign-out"});
  ASSERT_FALSE(out.value("cookie", "").empty()) << out.dump();
  EXPECT_TRUE(out["http_only"].get<bool>());
  EXPECT_EQ(out["same_site"], "Strict");
  const std::string stolen = "__Host-latch_session=" + out["cookie"].get<std::string>();
  EXPECT_EQ(stack_->Api(http::verb::get, "/v1/requests", "", "", {{"Cookie", stolen}}).status, 401);

  // No token anywhere it could leak: the logs, the ledger, the index.
  std::vector<std::string> files = {stack_->dir() + "/collector.log", stack_->dir() + "/agent.log"};
  for (const auto& e : fs::recursive_directory_iterator(stack_->dir() + "/collector")) {
    if (e.is_regular_file()) files.push_back(e.path());
  }
  for (const auto& [who, token] : stack_->tokens()) {
    for (const auto& f : files) {
      EXPECT_EQ(ConsoleStack::Slurp(f).find(token), std::string::npos)
          << who << "'s token is in " << f;
    }
  }
}

TEST_F(ConsoleBrowserTest, TheBrowsersProofModulePassesTheSharedVectors) {
  nlohmann::json r = Browser(
      "tess", {"proof-vectors", "--vectors", std::string(LATCH_TESTDATA_DIR) + "/merkle-proofs"});
  ASSERT_TRUE(r.contains("cases")) << r.dump();
  EXPECT_GT(r["cases"].get<int>(), 150);
  EXPECT_EQ(r["passed"], r["cases"]) << r["wrong"].dump(1);
}

// verify/checkpoint.js agrees with lib/tlog on notes the collector's own
// signer makes: among them a key whose base64 holds a '+' (the console
// refused every such key before), cosignature lines by witnesses (skipped),
// and every way a note can fail.
TEST_F(ConsoleBrowserTest, TheBrowsersCheckpointModuleAgreesWithTheCollectors) {
  const std::string origin = "console.test/ledger";
  // A signer whose verifier key's base64 has a '+', and one whose has none.
  tlog::NoteSigner plus, plain, other;
  for (int i = 0; i < 200 && (plus.name().empty() || plain.name().empty()); ++i) {
    tlog::NoteSigner s;
    ASSERT_TRUE(tlog::NoteSigner::Generate(origin, &s).ok());
    std::string key = s.verifier().ToString();
    bool has_plus = key.find('+', key.find('+', key.find('+') + 1) + 1) != std::string::npos;
    (has_plus ? plus : plain) = s;
  }
  ASSERT_FALSE(plus.name().empty());
  ASSERT_FALSE(plain.name().empty());
  ASSERT_TRUE(tlog::NoteSigner::Generate(origin, &other).ok());
  tlog::NoteSigner elsewhere;
  ASSERT_TRUE(tlog::NoteSigner::Generate("another.log/ledger", &elsewhere).ok());
  tlog::Checkpoint cp;
  cp.origin = origin;
  cp.size = 1234;
  cp.root.fill(7);
  auto sign = [](const tlog::NoteSigner& s, const std::string& body) {
    std::string note;
    EXPECT_TRUE(s.Sign(body, &note).ok());
    return note;
  };
  nlohmann::json cases = nlohmann::json::array();
  auto add = [&](const std::string& name, const std::string& note, const tlog::NoteSigner& key,
                 bool want_ok) {
    // The C++ verifier's answer is the reference.
    tlog::Checkpoint opened;
    bool cpp_ok = tlog::OpenCheckpoint(note, key.verifier(), &opened).ok();
    EXPECT_EQ(cpp_ok, want_ok) << name;
    cases.push_back(
        {{"name", name}, {"note", note}, {"key", key.verifier().ToString()}, {"want_ok", want_ok}});
  };
  const std::string good = sign(plus, cp.Body());
  add("a key with '+' in its base64", good, plus, true);
  add("a key without", sign(plain, cp.Body()), plain, true);
  // A witness's cosignature line after the log's: skipped.
  std::string cosigned = good + std::string(tlog::SignatureLine("witness.example/w", 0x01020304,
                                                                std::vector<uint8_t>(72, 9)));
  add("with a cosignature line", cosigned, plus, true);
  std::string flipped = good;
  flipped[flipped.size() - 6] = flipped[flipped.size() - 6] == 'A' ? 'B' : 'A';
  add("one signature character changed", flipped, plus, false);
  add("signed by another key of the same name", sign(other, cp.Body()), plus, false);
  tlog::Checkpoint theirs = cp;
  theirs.origin = "another.log/ledger";
  add("another log's checkpoint signed with this log's key", sign(plus, theirs.Body()), plus,
      false);
  add("another log's checkpoint, its own key", sign(elsewhere, theirs.Body()), elsewhere, true);
  std::string body_changed = good;
  body_changed.replace(body_changed.find("1234"), 4, "1235");
  add("the size changed after signing", body_changed, plus, false);
  add("no signature block", cp.Body(), plus, false);
  const std::string file = stack_->dir() + "/checkpoint-cases.json";
  std::ofstream(file) << cases.dump();
  nlohmann::json r = Browser("sam", {"checkpoints", "--cases", file});
  ASSERT_TRUE(r.contains("cases")) << r.dump();
  EXPECT_EQ(r["cases"], cases.size());
  EXPECT_EQ(r["passed"], r["cases"]) << r["wrong"].dump(1);
}

// One's own request is never offered for review; a break-glass member is
// offered theirs apart, in red, needing a reason, and the grant it makes is
// marked in the Grants page and flagged in the ledger.
TEST_F(ConsoleBrowserTest, ABreakGlassApprovalIsOfferedApartAndMarked) {
  for (const char* who : {"tess", "otis"}) {
    ASSERT_EQ(Browser(who, {"sign-in", "--token-file", stack_->TokenFile(who), "--ledger-key",
                            stack_->ledger_key()})
                  .value("who", ""),
              who);
  }
  const int tess_request =
      Browser("tess", {"request", "--resource", "db", "--duration", "10m", "--reason", "routine"})
          .value("request_id", 0);
  const int otis_request = Browser("otis", {"request", "--resource", "db", "--duration", "15m",
                                            "--reason", "the primary is down"})
                               .value("request_id", 0);
  ASSERT_GT(tess_request, 0);
  ASSERT_GT(otis_request, 0);
  // tess may not approve her own, and is not offered it.
  nlohmann::json tess_inbox = Browser("tess", {"inbox"});
  EXPECT_TRUE(tess_inbox["review"].empty()) << tess_inbox.dump();
  EXPECT_TRUE(tess_inbox["own_break_glass"].empty()) << tess_inbox.dump();
  // otis is offered his own as break-glass, apart; tess's he may not review.
  nlohmann::json otis_inbox = Browser("otis", {"inbox"});
  EXPECT_TRUE(otis_inbox["review"].empty()) << otis_inbox.dump();
  EXPECT_EQ(otis_inbox["own_break_glass"], nlohmann::json::array({otis_request}))
      << otis_inbox.dump();
  nlohmann::json glass =
      Browser("otis", {"break-glass", "--request", std::to_string(otis_request), "--reason",
                       "INC-42 primary down", "--screenshot", shots_ + "/break-glass.png"});
  ASSERT_TRUE(glass.contains("grant_id")) << glass.dump();
  EXPECT_NE(glass["card"].get<std::string>().find("BREAK-GLASS"), std::string::npos);
  EXPECT_NE(glass["without_reason"].get<std::string>().find("needs a reason"), std::string::npos);
  EXPECT_TRUE(glass["grant_marked"].get<bool>()) << glass.dump();
  EXPECT_NE(glass["grant_card"].get<std::string>().find("BREAK-GLASS"), std::string::npos);
  // Flagged on record.
  auto grants = nlohmann::json::parse(stack_->Api(http::verb::get, "/v1/grants", "sam").body);
  ASSERT_EQ(grants["grants"].size(), 1u) << grants.dump();
  EXPECT_TRUE(grants["grants"][0]["grant"]["break_glass"].get<bool>());
}

TEST_F(ConsoleBrowserTest, TheBrowserRefusesInlineScriptAndCrossSiteChanges) {
  nlohmann::json csp = Browser("tess", {"csp"});
  EXPECT_FALSE(csp.value("ran", true)) << csp.dump();
  EXPECT_NE(csp.value("violated", "").find("script-src"), std::string::npos) << csp.dump();

  // tess is signed in; a page of another site posts a request as her.
  ASSERT_EQ(Browser("tess", {"sign-in", "--token-file", stack_->TokenFile("tess"), "--ledger-key",
                             stack_->ledger_key()})
                .value("who", ""),
            "tess");
  fs::create_directories(stack_->dir() + "/attacker");
  std::ofstream(stack_->dir() + "/attacker/attack.html")
      << "<!doctype html><title>attacked</title>"
      << "<form id=f method=POST enctype=text/plain action=\"" << stack_->Url() << "/v1/requests\">"
      << "<input name='{\"resource\":\"db\",\"duration\":\"10m\",\"reason\":\"forged\",\"x\":\"' "
      << "value='\"}'></form><script>document.getElementById('f').submit()</script>";
  const uint16_t attacker_port = agent::FreeLoopbackPort();
  stack_->SpawnHelper({"/usr/bin/python3", "-m", "http.server", "--bind", "127.0.0.1",
                       "--directory", stack_->dir() + "/attacker", std::to_string(attacker_port)},
                      "attacker.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  nlohmann::json attack =
      Browser("tess", {"csrf", "--attacker-url",
                       "http://localhost:" + std::to_string(attacker_port) + "/attack.html"});
  EXPECT_NE(attack.value("body", "").find("error"), std::string::npos) << attack.dump();
  // Nothing was requested.
  auto requests =
      nlohmann::json::parse(stack_->Api(http::verb::get, "/v1/requests", "tess").body)["requests"];
  EXPECT_TRUE(requests.empty()) << requests.dump();
}

}  // namespace
}  // namespace latch::testing
