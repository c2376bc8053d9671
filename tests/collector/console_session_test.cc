// The web console's side of the API (issue 19) against a real TLS client:
// signing in gives a hardened session cookie and is on record; a change made
// with the cookie needs the session's CSRF token; signing out (or losing the
// credential) ends the cookie; the console's files are served with their
// security headers and revalidated by ETag; and TLS sessions resume (a
// browser's second connection did not, before).
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>

#include "collector/api/api_server.h"
#include "collector/api/tls_identity.h"
#include "collector/ingest/collector_server.h"
#include "https_client.h"
#include "kernel_sandbox.h"
#include "temp_dir.h"
#include "test_policy.h"

namespace latch::collector {
namespace {

namespace http = boost::beast::http;
using latch::testing::HttpsReply;

class ConsoleSessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    latch::testing::WriteTestPolicy(dir_ / "policy.toml");
    config_.data_dir = data_dir_.empty() ? std::string(dir_ / "data") : data_dir_;
    config_.origin = "console.example/ledger";
    config_.endpoints = {"inproc://console-test-agents"};
    config_.policy = dir_ / "policy.toml";
    config_.api_enabled = true;
    config_.api_port = 0;
    config_.api_tokens[api::TokenHash(kTess)] = "tess";
    config_.api_tokens[api::TokenHash(kSam)] = "sam";
    config_.api_tokens[api::TokenHash(kOtto)] = "otto";
    // ann signs in with a client certificate.
    ASSERT_TRUE(api::EnsureTlsIdentity(dir_ / "ann.crt", dir_ / "ann.key").ok());
    std::string ann_cert;
    ASSERT_TRUE(api::CertificateFingerprint(dir_ / "ann.crt", &ann_cert).ok());
    config_.api_client_certs[ann_cert] = "ann";
    StartServer();
  }
  void StartServer() {
    Status s = CollectorServer::Open(config_, &server_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    thread_ = std::thread([this] { run_status_ = server_->Run(); });
    for (int i = 0; i < 200 && server_->api_port() == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_NE(server_->api_port(), 0);
  }
  void StopServer() {
    if (!server_) return;
    server_->Stop();
    thread_.join();
    EXPECT_TRUE(run_status_.ok()) << run_status_.ToString();
    server_.reset();
  }
  void TearDown() override { StopServer(); }

  HttpsReply Call(http::verb method, const std::string& target, const std::string& token,
                  const std::string& body = "",
                  const std::map<std::string, std::string>& headers = {}) {
    return latch::testing::HttpsCall(server_->api_port(), config_.data_dir + "/api.crt", method,
                                     target, token, body, "", "", headers);
  }
  struct Session {
    std::string cookie;  // "__Host-latch_session=<secret>"
    std::string csrf;
    HttpsReply reply;
  };
  Session SignIn(const std::string& token) {
    Session s;
    s.reply = Call(http::verb::post, "/v1/session", token, "{}");
    std::string set_cookie = s.reply.Header("set-cookie");
    s.cookie = set_cookie.substr(0, set_cookie.find(';'));
    if (s.reply.status == 201) s.csrf = nlohmann::json::parse(s.reply.body)["csrf"];
    return s;
  }
  // The events of `kind` an auditor sees, once the index has them.
  nlohmann::json Events(const std::string& kind, size_t at_least) {
    nlohmann::json events;
    for (int i = 0; i < 200; ++i) {
      events = nlohmann::json::parse(
          Call(http::verb::get, "/v1/events?kind=" + kind, kSam).body)["events"];
      if (events.size() >= at_least) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return events;
  }

  static constexpr const char* kTess = "tess-token-0123456789";
  static constexpr const char* kSam = "sam-token-0123456789";
  static constexpr const char* kOtto = "otto-token-0123456789";
  static constexpr const char* kRequest =
      R"({"resource":"db","duration":"10m","reason":"from the console"})";
  ledger::TempDir dir_;
  std::string data_dir_;  // set before SetUp: the collector's data elsewhere
  CollectorConfig config_;
  std::unique_ptr<CollectorServer> server_;
  std::thread thread_;
  Status run_status_;
};

TEST_F(ConsoleSessionTest, SignInGivesAHardenedCookieAndIsOnRecord) {
  Session s = SignIn(kTess);
  ASSERT_EQ(s.reply.status, 201) << s.reply.body;
  const std::string set_cookie = s.reply.Header("set-cookie");
  EXPECT_TRUE(std::regex_search(set_cookie, std::regex("^__Host-latch_session=[0-9a-f]{64};")))
      << set_cookie;
  for (const char* attribute :
       {"; Path=/", "; Secure", "; HttpOnly", "; SameSite=Strict", "; Max-Age=28800"}) {
    EXPECT_NE(set_cookie.find(attribute), std::string::npos) << attribute << " in " << set_cookie;
  }
  EXPECT_TRUE(std::regex_match(s.csrf, std::regex("[0-9a-f]{64}")));
  EXPECT_EQ(s.reply.Header("cache-control"), "no-store");
  // Who the cookie is, and the console's view of them.
  HttpsReply me = Call(http::verb::get, "/v1/session", "", "", {{"Cookie", s.cookie}});
  ASSERT_EQ(me.status, 200) << me.body;
  auto j = nlohmann::json::parse(me.body);
  EXPECT_EQ(j["identity"], "tess");
  EXPECT_EQ(j["via"], "session");
  EXPECT_EQ(j["csrf"], s.csrf);
  EXPECT_EQ(j["requestable"][0]["name"], "db");
  EXPECT_EQ(j["requestable"][0]["max_duration"], "1h");
  EXPECT_EQ(j["ledger"]["key"], server_->ledger_vkey());
  // On record by its hash: the cookie's secret is in no answer.
  nlohmann::json started = Events("sessionStarted", 1);
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0]["identity"], "tess");
  const std::string secret = s.cookie.substr(s.cookie.find('=') + 1);
  EXPECT_EQ(started.dump().find(secret), std::string::npos);
  EXPECT_EQ(started[0]["record"]["record"]["sessionStarted"]["sessionHash"],
            api::SessionBook::HashOf(secret));
  // Signing in again with the session itself is refused (without its CSRF
  // token, as every change is); a wrong token is a recorded 401.
  EXPECT_EQ(Call(http::verb::post, "/v1/session", "", "{}", {{"Cookie", s.cookie}}).status, 403);
  EXPECT_EQ(Call(http::verb::post, "/v1/session", "", "{}",
                 {{"Cookie", s.cookie}, {"X-Latch-CSRF", s.csrf}})
                .status,
            400);
  EXPECT_EQ(SignIn("wrong-token-0123456789").reply.status, 401);
  nlohmann::json refusals = Events("refusal", 1);
  EXPECT_NE(refusals.dump().find("POST /v1/session"), std::string::npos) << refusals.dump();
}

TEST_F(ConsoleSessionTest, SignInWithAClientCertificate) {
  HttpsReply in = latch::testing::HttpsCall(server_->api_port(), config_.data_dir + "/api.crt",
                                            http::verb::post, "/v1/session", "", "{}",
                                            dir_ / "ann.crt", dir_ / "ann.key");
  ASSERT_EQ(in.status, 201) << in.body;
  std::string set_cookie = in.Header("set-cookie");
  std::string cookie = set_cookie.substr(0, set_cookie.find(';'));
  auto me = nlohmann::json::parse(
      Call(http::verb::get, "/v1/session", "", "", {{"Cookie", cookie}}).body);
  EXPECT_EQ(me["identity"], "ann");
  EXPECT_TRUE(me["roles"]["approver"].get<bool>());
  nlohmann::json started = Events("sessionStarted", 1);
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0]["record"]["record"]["sessionStarted"]["via"], "cert");
}

TEST_F(ConsoleSessionTest, AChangeWithTheCookieNeedsTheSessionsCsrfToken) {
  Session s = SignIn(kTess);
  ASSERT_EQ(s.reply.status, 201);
  // What a cross-site form post can send: the cookie, no token.
  HttpsReply forged = Call(http::verb::post, "/v1/requests", "", kRequest,
                           {{"Cookie", s.cookie}, {"Content-Type", "text/plain"}});
  EXPECT_EQ(forged.status, 403) << forged.body;
  HttpsReply wrong = Call(http::verb::post, "/v1/requests", "", kRequest,
                          {{"Cookie", s.cookie}, {"X-Latch-CSRF", std::string(64, '0')}});
  EXPECT_EQ(wrong.status, 403);
  // Nothing was requested by them.
  auto mine = nlohmann::json::parse(
      Call(http::verb::get, "/v1/requests", "", "", {{"Cookie", s.cookie}}).body);
  EXPECT_TRUE(mine["requests"].empty()) << mine.dump();
  // The refusals are on record, as tess's.
  nlohmann::json refusals = Events("refusal", 1);
  EXPECT_NE(refusals.dump().find("no valid CSRF token"), std::string::npos) << refusals.dump();
  // With the token, the same change is made.
  HttpsReply made = Call(http::verb::post, "/v1/requests", "", kRequest,
                         {{"Cookie", s.cookie}, {"X-Latch-CSRF", s.csrf}});
  EXPECT_EQ(made.status, 201) << made.body;
  EXPECT_EQ(nlohmann::json::parse(made.body)["requester"], "tess");
}

TEST_F(ConsoleSessionTest, ACookieIsRefusedOnceItsHolderSignsOut) {
  Session s = SignIn(kTess);
  ASSERT_EQ(s.reply.status, 201);
  HttpsReply out = Call(http::verb::post, "/v1/session/end", "", "{}",
                        {{"Cookie", s.cookie}, {"X-Latch-CSRF", s.csrf}});
  ASSERT_EQ(out.status, 200) << out.body;
  EXPECT_NE(out.Header("set-cookie").find("Max-Age=0"), std::string::npos);
  // A copy of the cookie taken before (a stolen one) is refused for reads
  // and changes alike.
  EXPECT_EQ(Call(http::verb::get, "/v1/requests", "", "", {{"Cookie", s.cookie}}).status, 401);
  EXPECT_EQ(Call(http::verb::post, "/v1/requests", "", kRequest,
                 {{"Cookie", s.cookie}, {"X-Latch-CSRF", s.csrf}})
                .status,
            401);
  nlohmann::json ended = Events("sessionEnded", 1);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0]["identity"], "tess");
  EXPECT_EQ(ended[0]["record"]["record"]["sessionEnded"]["why"], "signed out");
  // A session cookie that never existed is refused the same way.
  EXPECT_EQ(
      Call(http::verb::get, "/v1/requests", "", "",
           {{"Cookie", std::string(api::ApiServer::kSessionCookie) + "=" + std::string(64, 'a')}})
          .status,
      401);
}

TEST_F(ConsoleSessionTest, SessionsEndWithTheCredentialThatStartedThem) {
  // otto adds a token for sam through the API; sam signs in with it; otto
  // removes it: the session it started is refused from then on, while
  // sam's session from the configuration's token goes on.
  const std::string added = "sam-second-token-0123456789";
  const std::string hash = api::TokenHash(added);
  ASSERT_EQ(Call(http::verb::post, "/v1/credentials", kOtto,
                 R"({"identity":"sam","token_sha256":")" + hash + "\"}")
                .status,
            200);
  Session by_added = SignIn(added);
  Session by_config = SignIn(kSam);
  ASSERT_EQ(by_added.reply.status, 201);
  ASSERT_EQ(by_config.reply.status, 201);
  ASSERT_EQ(Call(http::verb::get, "/v1/grants", "", "", {{"Cookie", by_added.cookie}}).status, 200);
  ASSERT_EQ(
      Call(http::verb::post, "/v1/credentials/remove", kOtto, R"({"token_sha256":")" + hash + "\"}")
          .status,
      200);
  EXPECT_EQ(Call(http::verb::get, "/v1/grants", "", "", {{"Cookie", by_added.cookie}}).status, 401);
  EXPECT_EQ(Call(http::verb::get, "/v1/grants", "", "", {{"Cookie", by_config.cookie}}).status,
            200);
}

TEST_F(ConsoleSessionTest, TheConsolesFilesAreServedWithTheirSecurityHeaders) {
  HttpsReply page = Call(http::verb::get, "/", "");
  ASSERT_EQ(page.status, 200);
  EXPECT_EQ(page.Header("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(page.body.find("/console/js/app.js"), std::string::npos);
  const std::string csp = page.Header("content-security-policy");
  EXPECT_NE(csp.find("default-src 'none'"), std::string::npos) << csp;
  EXPECT_NE(csp.find("script-src 'self';"), std::string::npos) << csp;
  EXPECT_EQ(csp.find("unsafe-inline"), std::string::npos) << csp;
  EXPECT_NE(csp.find("frame-ancestors 'none'"), std::string::npos) << csp;
  EXPECT_EQ(page.Header("x-content-type-options"), "nosniff");
  EXPECT_EQ(page.Header("cache-control"), "no-cache");
  // No page of the console carries an inline script or style: the policy
  // would block it.
  EXPECT_EQ(page.body.find("<script>"), std::string::npos);
  EXPECT_EQ(page.body.find("style="), std::string::npos);
  // Revalidated by ETag.
  const std::string etag = page.Header("etag");
  ASSERT_FALSE(etag.empty());
  HttpsReply again = Call(http::verb::get, "/", "", "", {{"If-None-Match", etag}});
  EXPECT_EQ(again.status, 304);
  EXPECT_TRUE(again.body.empty());
  HttpsReply script = Call(http::verb::get, "/console/verify/merkle.js", "");
  EXPECT_EQ(script.status, 200);
  EXPECT_EQ(script.Header("content-type"), "text/javascript; charset=utf-8");
  // Nothing outside the console's files, however the path is spelled.
  for (const char* path : {"/console/nope.js", "/console/../collector.toml", "/console/%2e%2e/x",
                           "/console/verify/../../api.key"}) {
    EXPECT_EQ(Call(http::verb::get, path, "").status, 404) << path;
  }
  // The API itself still needs credentials.
  EXPECT_EQ(Call(http::verb::get, "/v1/session", "").status, 401);
}

TEST_F(ConsoleSessionTest, SignInRefusesMalformedAndHostileInput) {
  // Bodies: not JSON, a field it does not take, not an object, too large.
  for (const std::string& body :
       {std::string("{not json"), std::string(R"({"admin":true})"), std::string("[]"),
        std::string("\"x\""), std::string(70000, '{')}) {
    HttpsReply r = Call(http::verb::post, "/v1/session", kTess, body);
    EXPECT_TRUE(r.status == 400 || r.status == 413) << r.status << " for " << body.substr(0, 20);
    EXPECT_TRUE(r.Header("set-cookie").empty());
  }
  // Cookies that are no session: empty, wrong length, control characters,
  // bytes that are not UTF-8, the name twice, a huge value.
  const std::string name = api::ApiServer::kSessionCookie;
  for (const std::string& cookie :
       {name + "=", name + "=abc", name + "=" + std::string(64, 'g'),
        name + "=\xff\xfe\xc0" + std::string(61, 'a'),
        name + "=" + std::string(64, 'a') + "; " + name + "=" + std::string(64, 'b'),
        name + "=" + std::string(8000, 'a'), "; ; =; " + name}) {
    HttpsReply r = Call(http::verb::get, "/v1/requests", "", "", {{"Cookie", cookie}});
    EXPECT_TRUE(r.status == 401 || r.status == 400) << r.status << " for " << cookie.substr(0, 40);
  }
  // Control characters in a header are not HTTP: the connection is closed
  // unanswered, as for any request that does not parse.
  EXPECT_EQ(Call(http::verb::get, "/v1/requests", "", "",
                 {{"Cookie", name + "=\x01\x02\x7f" + std::string(61, 'a')}})
                .status,
            -1);
  // And the collector still answers.
  EXPECT_EQ(Call(http::verb::get, "/healthz", "").status, 200);
  EXPECT_EQ(SignIn(kTess).reply.status, 201);
}

TEST_F(ConsoleSessionTest, ARestartEndsEverySessionButNotItsRecord) {
  Session s = SignIn(kTess);
  ASSERT_EQ(s.reply.status, 201);
  StopServer();
  config_.api_port = 0;
  StartServer();
  HttpsReply stale = Call(http::verb::get, "/v1/requests", "", "", {{"Cookie", s.cookie}});
  EXPECT_EQ(stale.status, 401);
  // The browser is told to drop the stale cookie (else it would keep
  // taking precedence over a client certificate).
  EXPECT_NE(stale.Header("set-cookie").find("Max-Age=0"), std::string::npos)
      << stale.Header("set-cookie");
  EXPECT_EQ(Events("sessionStarted", 1).size(), 1u);
  EXPECT_EQ(SignIn(kTess).reply.status, 201);
}

// The collector's data on a small tmpfs that fills: signing in and out need
// their records, so both are refused (503, no cookie given, the session
// kept) while the ledger cannot be written, and work again once it can,
// without a restart.
class ConsoleSessionFullDiskTest : public ConsoleSessionTest {
 protected:
  void SetUp() override {
    LATCH_SKIP_UNLESS_KERNEL_TEST_CAN_RUN();  // root: to mount a small tmpfs
    small_ = dir_ / "small";
    std::filesystem::create_directories(small_);
    ASSERT_EQ(::mount("tmpfs", small_.c_str(), "tmpfs", 0, "size=4m"), 0) << strerror(errno);
    mounted_ = true;
    data_dir_ = small_ + "/data";
    ConsoleSessionTest::SetUp();
  }
  void TearDown() override {
    ConsoleSessionTest::TearDown();
    if (mounted_) ::umount2(small_.c_str(), MNT_DETACH);
  }
  void Fill() {
    std::ofstream fill(small_ + "/fill", std::ios::binary);
    std::string block(64 * 1024, 'x');
    while (fill.write(block.data(), block.size())) {
    }
  }
  std::string small_;
  bool mounted_ = false;
};

TEST_F(ConsoleSessionFullDiskTest, SignInAndOutWaitForTheLedger) {
  if (!mounted_) return;  // skipped in SetUp
  Session tess = SignIn(kTess);
  ASSERT_EQ(tess.reply.status, 201);
  Fill();
  Session sam = SignIn(kSam);
  EXPECT_EQ(sam.reply.status, 503) << sam.reply.body;
  EXPECT_TRUE(sam.reply.Header("set-cookie").empty());
  HttpsReply out = Call(http::verb::post, "/v1/session/end", "", "{}",
                        {{"Cookie", tess.cookie}, {"X-Latch-CSRF", tess.csrf}});
  EXPECT_EQ(out.status, 503) << out.body;
  // Not signed out, since that is not on record: the session still reads.
  EXPECT_EQ(Call(http::verb::get, "/v1/requests", "", "", {{"Cookie", tess.cookie}}).status, 200);
  std::filesystem::remove(small_ + "/fill");
  bool healthy = false;
  for (int i = 0; i < 100 && !healthy; ++i) {
    healthy = Call(http::verb::get, "/healthz", "").status == 200;
    if (!healthy) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(healthy) << "still not ready 10 s after the disk had room";
  out = Call(http::verb::post, "/v1/session/end", "", "{}",
             {{"Cookie", tess.cookie}, {"X-Latch-CSRF", tess.csrf}});
  EXPECT_EQ(out.status, 200) << out.body;
  EXPECT_EQ(Call(http::verb::get, "/v1/requests", "", "", {{"Cookie", tess.cookie}}).status, 401);
  EXPECT_EQ(SignIn(kSam).reply.status, 201);
}

// A client that resumes its TLS session (as a browser's second connection
// does) is served: with peer verification on and no session context,
// OpenSSL refused it, and Chromium could not load the console's modules.
TEST_F(ConsoleSessionTest, ATlsSessionResumes) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  ASSERT_NE(ctx, nullptr);
  SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);  // resumption by session id/ticket
  SSL_SESSION* session = nullptr;
  for (int round = 0; round < 2; ++round) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = latch::agent::Loopback4(server_->api_port());
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (session != nullptr) SSL_set_session(ssl, session);
    ASSERT_EQ(SSL_connect(ssl), 1) << "round " << round;
    if (round == 1) {
      EXPECT_EQ(SSL_session_reused(ssl), 1);
    }
    const char request[] = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    ASSERT_GT(SSL_write(ssl, request, sizeof(request) - 1), 0);
    char buf[512];
    int n = SSL_read(ssl, buf, sizeof(buf));
    ASSERT_GT(n, 0) << "round " << round;
    EXPECT_EQ(std::string(buf, n).rfind("HTTP/1.1 200", 0), 0u);
    if (session == nullptr) session = SSL_get1_session(ssl);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    ::close(fd);
  }
  SSL_SESSION_free(session);
  SSL_CTX_free(ctx);
}

}  // namespace
}  // namespace latch::collector
