#include "collector/notify/webhook_sender.h"

#include <openssl/hmac.h>

#include <algorithm>
#include <cstdio>
#include <utility>
// clang-format off
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
// clang-format on

#include "lib/logging/logger.h"
#include "lib/tlog/hex.h"

namespace latch::notify {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

std::string Signature(const std::string& secret, const std::string& body) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), mac, &len);
  return "sha256=" + tlog::HexEncode({mac, len});
}

}  // namespace

Status WebhookSender::ParseUrl(const std::string& url, bool* tls, std::string* host,
                               std::string* port, std::string* path) {
  std::string rest;
  if (url.rfind("https://", 0) == 0) {
    *tls = true;
    rest = url.substr(8);
  } else if (url.rfind("http://", 0) == 0) {
    *tls = false;
    rest = url.substr(7);
  } else {
    return Status::InvalidArgument("webhook url '" + url + "' is not http:// or https://");
  }
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  *path = slash == std::string::npos ? "/" : rest.substr(slash);
  size_t colon = authority.rfind(':');
  *host = colon == std::string::npos ? authority : authority.substr(0, colon);
  *port = colon == std::string::npos ? (*tls ? "443" : "80") : authority.substr(colon + 1);
  if (host->empty() || port->empty() ||
      port->find_first_not_of("0123456789") != std::string::npos) {
    return Status::InvalidArgument("webhook url '" + url + "' has no usable host and port");
  }
  return Status::Ok();
}

WebhookSender::WebhookSender(std::vector<WebhookTarget> targets, int max_attempts, size_t max_queue)
    : targets_(std::move(targets)), max_attempts_(max_attempts), max_queue_(max_queue) {
  if (!targets_.empty()) thread_ = std::thread([this] { Loop(); });
}

WebhookSender::~WebhookSender() {
  {
    MutexLock lock(mu_);
    stop_ = true;
  }
  wake_.SignalAll();
  if (thread_.joinable()) thread_.join();
  MutexLock lock(mu_);
  if (!queue_.empty()) {
    logging::Default().Warn("webhook deliveries not made before stopping",
                            {{"count", queue_.size()}});
  }
}

void WebhookSender::Send(const std::string& type, const std::string& json) {
  if (targets_.empty()) return;
  {
    MutexLock lock(mu_);
    for (size_t t = 0; t < targets_.size(); ++t) {
      if (!targets_[t].events.empty() && !targets_[t].events.count(type)) continue;
      if (queue_.size() >= max_queue_) {
        counters_.dropped++;
        logging::Default().Error("webhook queue full; a notification is lost (counted in /metrics)",
                                 {{"url", targets_[t].url},
                                  {"hint",
                                   "the receiver is down or slow; the ledger keeps "
                                   "the record itself"}});
        continue;
      }
      queue_.push_back({t, json, 0, std::chrono::steady_clock::now()});
    }
  }
  wake_.Signal();
}

void WebhookSender::Loop() {
  mu_.lock();
  while (!stop_) {
    if (queue_.empty()) {
      wake_.Wait(mu_);
      continue;
    }
    // The message due first (retries wait; others need not wait for them).
    auto next = std::min_element(queue_.begin(), queue_.end(),
                                 [](const Message& a, const Message& b) { return a.due < b.due; });
    if (next->due > std::chrono::steady_clock::now()) {
      wake_.WaitUntil(mu_, next->due);
      continue;
    }
    Message m = std::move(*next);
    queue_.erase(next);
    mu_.unlock();  // not held while posting: Send never waits for a receiver
    Status s = Post(targets_[m.target], m.body);
    mu_.lock();
    if (s.ok()) {
      counters_.delivered++;
      continue;
    }
    if (++m.attempts >= max_attempts_) {
      counters_.failed++;
      logging::Default().Error(
          "webhook delivery failed for good",
          {{"url", targets_[m.target].url}, {"attempts", m.attempts}, {"error", s.ToString()}});
      continue;
    }
    counters_.retried++;
    m.due = std::chrono::steady_clock::now() + std::chrono::milliseconds(500 << (m.attempts - 1));
    queue_.push_back(std::move(m));
  }
  mu_.unlock();
}

Status WebhookSender::Post(const WebhookTarget& target, const std::string& body) {
  bool tls = false;
  std::string host, port, path;
  LATCH_RETURN_IF_ERROR(ParseUrl(target.url, &tls, &host, &port, &path));
  http::request<http::string_body> req{http::verb::post, path, 11};
  req.set(http::field::host, host);
  req.set(http::field::user_agent, "latch-collector");
  req.set(http::field::content_type, "application/json");
  if (!target.secret.empty()) req.set("X-Latch-Signature", Signature(target.secret, body));
  req.body() = body;
  req.prepare_payload();
  try {
    asio::io_context io;
    asio::ip::tcp::resolver resolver(io);
    http::response<http::string_body> res;
    beast::flat_buffer buffer;
    if (tls) {
      asio::ssl::context ctx(asio::ssl::context::tls_client);
      if (target.ca.empty()) {
        ctx.set_default_verify_paths();
      } else {
        ctx.load_verify_file(target.ca);
      }
      ctx.set_verify_mode(asio::ssl::verify_peer);
      beast::ssl_stream<beast::tcp_stream> stream(io, ctx);
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
      beast::get_lowest_layer(stream).connect(resolver.resolve(host, port));
      stream.set_verify_callback(asio::ssl::host_name_verification(host));
      SSL_set_tlsext_host_name(stream.native_handle(), host.c_str());
      stream.handshake(asio::ssl::stream_base::client);
      http::write(stream, req);
      http::read(stream, buffer, res);
      beast::error_code ec;
      stream.shutdown(ec);
    } else {
      beast::tcp_stream stream(io);
      stream.expires_after(std::chrono::seconds(10));
      stream.connect(resolver.resolve(host, port));
      http::write(stream, req);
      http::read(stream, buffer, res);
    }
    if (res.result_int() / 100 != 2) {
      return Status::IoError("answered " + std::to_string(res.result_int()));
    }
  } catch (const std::exception& e) {
    return Status::IoError(e.what());
  }
  return Status::Ok();
}

}  // namespace latch::notify
