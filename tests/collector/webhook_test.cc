// Webhooks: requests, reviews and decisions reach a configured URL as signed
// JSON, a failed delivery is retried, and one that keeps failing or finds
// the queue full is counted.
#include <gtest/gtest.h>
#include <openssl/hmac.h>

#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
// clang-format off
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on

#include "collector/api/api_server.h"
#include "collector/ingest/collector_server.h"
#include "collector/notify/webhook_sender.h"
#include "https_client.h"
#include "lib/tlog/hex.h"
#include "temp_dir.h"
#include "test_policy.h"

namespace latch::collector {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

// A plain HTTP receiver on loopback: answers 500 to the first `fail_first`
// requests, 200 after; keeps every body and signature header.
class Receiver {
 public:
  explicit Receiver(int fail_first) : fail_first_(fail_first), acceptor_(io_) {
    asio::ip::tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.bind(ep);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] {
      while (!stop_) {
        beast::error_code ec;
        asio::ip::tcp::socket s(io_);
        acceptor_.accept(s, ec);
        if (ec || stop_) continue;
        beast::flat_buffer buf;
        http::request<http::string_body> req;
        http::read(s, buf, req, ec);
        if (ec) continue;
        int n;
        {
          std::lock_guard<std::mutex> lock(mu_);
          bodies_.push_back(req.body());
          signatures_.push_back(std::string(req["X-Latch-Signature"]));
          n = static_cast<int>(bodies_.size());
        }
        http::response<http::string_body> res{
            n <= fail_first_ ? http::status::internal_server_error : http::status::ok, 11};
        res.prepare_payload();
        http::write(s, res, ec);
      }
    });
  }
  ~Receiver() {
    stop_ = true;
    beast::error_code ec;
    asio::ip::tcp::socket s(io_);
    s.connect(acceptor_.local_endpoint(), ec);
    thread_.join();
  }
  uint16_t port() const { return port_; }
  std::vector<std::pair<std::string, std::string>> Received() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::pair<std::string, std::string>> out;
    for (size_t i = 0; i < bodies_.size(); ++i) out.emplace_back(bodies_[i], signatures_[i]);
    return out;
  }
  // Waits until `n` requests have arrived (10 s at most).
  bool WaitFor(size_t n) {
    for (int i = 0; i < 200; ++i) {
      if (Received().size() >= n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

 private:
  int fail_first_;
  asio::io_context io_;
  asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> bodies_, signatures_;
};

std::string Hmac(const std::string& secret, const std::string& body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
  return "sha256=" + tlog::HexEncode({mac, len});
}

TEST(Webhooks, RequestsAndDecisionsArriveSignedAfterARetry) {
  Receiver hook(/*fail_first=*/1);
  ledger::TempDir dir;
  latch::testing::WriteTestPolicy(dir / "policy.toml");
  CollectorConfig config;
  config.data_dir = dir / "data";
  config.origin = "hooks.example/ledger";
  config.endpoints = {"inproc://webhook-test-agents"};
  config.policy = dir / "policy.toml";
  config.api_enabled = true;
  config.api_port = 0;
  const std::string tess = "tess-token-0123456789", ann = "ann-token-0123456789";
  config.api_tokens[api::TokenHash(tess)] = "tess";
  config.api_tokens[api::TokenHash(ann)] = "ann";
  config.webhooks.push_back(
      {"http://127.0.0.1:" + std::to_string(hook.port()) + "/latch", "", "s3cret", {}});
  std::unique_ptr<CollectorServer> server;
  Status s = CollectorServer::Open(config, &server);
  ASSERT_TRUE(s.ok()) << s.ToString();
  Status run;
  std::thread loop([&] { run = server->Run(); });
  for (int i = 0; i < 200 && server->api_port() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  auto call = [&](const std::string& target, const std::string& token, const std::string& body) {
    return latch::testing::HttpsCall(server->api_port(), config.data_dir + "/api.crt",
                                     http::verb::post, target, token, body);
  };
  ASSERT_EQ(
      call("/v1/requests", tess, R"({"resource":"db","duration":"10m","reason":"hook"})").status,
      201);
  // The first delivery is answered 500; the retry, half a second later, 200.
  ASSERT_TRUE(hook.WaitFor(2));
  ASSERT_EQ(call("/v1/requests/1/approve", ann, R"({"comment":"fine"})").status, 200);
  ASSERT_TRUE(hook.WaitFor(4));
  auto got = hook.Received();
  std::vector<std::string> types;
  for (const auto& [body, signature] : got) {
    EXPECT_EQ(signature, Hmac("s3cret", body)) << body;
    auto j = nlohmann::json::parse(body);
    types.push_back(j["type"]);
    EXPECT_EQ(j["request_id"], 1);
  }
  EXPECT_EQ(got[0].first, got[1].first) << "the retry carries the same notification";
  EXPECT_EQ(types, (std::vector<std::string>{"request.created", "request.created",
                                             "request.reviewed", "request.decided"}));
  auto decided = nlohmann::json::parse(got[3].first);
  EXPECT_EQ(decided["action"]["requestDecided"]["state"], "approved");
  server->Stop();
  loop.join();
  EXPECT_TRUE(run.ok()) << run.ToString();
}

TEST(Webhooks, FailuresAndOverflowAreCounted) {
  Receiver always_failing(/*fail_first=*/1000);
  {
    notify::WebhookSender sender(
        {{"http://127.0.0.1:" + std::to_string(always_failing.port()) + "/x", "", "", {}}},
        /*max_attempts=*/2);
    sender.Send("request.created", "{}");
    for (int i = 0; i < 100 && sender.counters().failed == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(sender.counters().failed, 1u);
    EXPECT_EQ(sender.counters().retried, 1u);
    EXPECT_EQ(always_failing.Received().size(), 2u);
  }
  notify::WebhookSender full({{"http://127.0.0.1:1/x", "", "", {}}}, 2, /*max_queue=*/0);
  full.Send("request.created", "{}");
  EXPECT_EQ(full.counters().dropped, 1u);
  // A target that does not take a type is not sent it.
  notify::WebhookSender picky({{"http://127.0.0.1:1/x", "", "", {"request.decided"}}}, 2, 0);
  picky.Send("request.created", "{}");
  EXPECT_EQ(picky.counters().dropped, 0u);
  bool tls = false;
  std::string host, port, path;
  EXPECT_FALSE(notify::WebhookSender::ParseUrl("ftp://x/y", &tls, &host, &port, &path).ok());
  EXPECT_FALSE(notify::WebhookSender::ParseUrl("http://:80/", &tls, &host, &port, &path).ok());
  ASSERT_TRUE(
      notify::WebhookSender::ParseUrl("https://h.example/a/b", &tls, &host, &port, &path).ok());
  EXPECT_TRUE(tls);
  EXPECT_EQ(port, "443");
  EXPECT_EQ(path, "/a/b");
}

}  // namespace
}  // namespace latch::collector
