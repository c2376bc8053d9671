#include "collector/api/api_server.h"

// Boost 1.74's Asio needs <utility> first (see agent_daemon.h).
#include <utility>
// clang-format off
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
// clang-format on

#include <cstdio>

#include "text/utf8.h"
#include "tlog/hex.h"
#include "tlog/sha256.h"

namespace latch::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string TokenHash(const std::string& token) {
  tlog::Hash h = tlog::Sha256::Of({reinterpret_cast<const uint8_t*>(token.data()), token.size()});
  return tlog::HexEncode(h);
}

struct ApiServer::Impl {
  asio::io_context io;
  asio::ssl::context tls{asio::ssl::context::tls_server};
  std::unique_ptr<tcp::acceptor> acceptor;
};

ApiServer::ApiServer(ApiOptions options, Handler handler, RefusalHook refused)
    : options_(std::move(options)),
      handler_(std::move(handler)),
      refused_(std::move(refused)),
      impl_(std::make_unique<Impl>()) {}

ApiServer::~ApiServer() { Stop(); }

Status ApiServer::Start() {
  try {
    impl_->tls.set_options(asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1 |
                           asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3);
    impl_->tls.use_certificate_chain_file(options_.cert_path);
    impl_->tls.use_private_key_file(options_.key_path, asio::ssl::context::pem);
    // Ask for a client certificate without requiring one, and accept any:
    // it is authenticated by its pinned fingerprint, not by a chain.
    impl_->tls.set_verify_mode(asio::ssl::verify_peer);
    impl_->tls.set_verify_callback([](bool, asio::ssl::verify_context&) { return true; });
    auto address = asio::ip::make_address(options_.listen_address);
    impl_->acceptor =
        std::make_unique<tcp::acceptor>(impl_->io, tcp::endpoint(address, options_.port));
    bound_port_ = impl_->acceptor->local_endpoint().port();
  } catch (const std::exception& e) {
    return Status::IoError(std::string("starting the HTTPS API: ") + e.what());
  }
  acceptor_ = std::thread([this] {
    while (!stopping_) {
      boost::system::error_code ec;
      tcp::socket s(impl_->io);
      impl_->acceptor->accept(s, ec);
      if (ec || stopping_) continue;
      boost::system::error_code peer_ec;
      std::string peer = s.remote_endpoint(peer_ec).address().to_string();
      if (peer_ec) continue;
      if (connections_.load() >= options_.max_connections) {
        refused_("api_busy", "too many connections", peer);
        continue;  // closed: the client retries
      }
      {
        std::lock_guard<std::mutex> lock(per_address_mu_);
        int& held = per_address_[peer];
        if (held >= options_.max_connections_per_address) {
          refused_("api_busy", "too many connections from one address", peer);
          continue;  // closed
        }
        ++held;
      }
      connections_++;
      int fd = s.release();
      std::thread([this, fd, peer] {
        Serve(fd, peer);
        {
          std::lock_guard<std::mutex> lock(per_address_mu_);
          if (--per_address_[peer] <= 0) per_address_.erase(peer);
        }
        connections_--;
      }).detach();
    }
  });
  return Status::Ok();
}

void ApiServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (impl_->acceptor) {
    boost::system::error_code ec;
    // Wake the blocking accept with a connection of our own.
    tcp::socket s(impl_->io);
    s.connect(impl_->acceptor->local_endpoint(), ec);
    impl_->acceptor->close(ec);
  }
  if (acceptor_.joinable()) acceptor_.join();
  while (connections_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

ApiResponse ApiServer::Dispatch(const std::string& method, const std::string& target,
                                const std::string& authorization, const std::string& body,
                                const std::string& client_cert_hash, const std::string& peer) {
  if (!text::IsValidUtf8(target)) {
    refused_("api_malformed", method + " (a request target that is not UTF-8)", peer);
    return {400, "application/json", R"({"error":"the request target must be UTF-8"})"};
  }
  ApiRequest req{method, target, "", body};
  bool open = target == "/healthz" ||
              (options_.public_log && (target == "/checkpoint" || target.rfind("/tile/", 0) == 0));
  if (!open) {
    // A bearer token if the request has one (it must be valid), else a
    // pinned client certificate.
    const std::string prefix = "Bearer ";
    if (authorization.rfind(prefix, 0) == 0) {
      auto it = options_.token_hashes.find(TokenHash(authorization.substr(prefix.size())));
      if (it != options_.token_hashes.end()) req.identity = it->second;
    } else if (authorization.empty() && !client_cert_hash.empty()) {
      auto it = options_.client_cert_hashes.find(client_cert_hash);
      if (it != options_.client_cert_hashes.end()) req.identity = it->second;
    }
    if (req.identity.empty()) {
      refused_("api_unauthenticated", method + " " + std::string(text::TruncateUtf8(target, 200)),
               peer);
      return {401, "application/json",
              R"({"error":"a valid bearer token or client certificate is required"})"};
    }
  }
  ApiResponse res;
  try {
    res = handler_(req);
  } catch (const std::exception& e) {
    // Handlers on this thread (the events query) must not end the
    // connection unanswered either.
    res = {500, "application/json", R"({"error":"internal error"})"};
  }
  if (res.status == 403) {
    // Authorization failures are recorded like authentication failures.
    refused_("api_forbidden",
             req.identity + ": " + method + " " +
                 std::string(
                     text::TruncateUtf8(std::string_view(target).substr(0, target.find('?')), 200)),
             peer);
  }
  return res;
}

void ApiServer::Serve(int fd, const std::string& peer) {
  // Every operation below is asynchronous on this connection's own loop and
  // waited for at once: Beast's stream deadlines (expires_after) apply only
  // to asynchronous operations, and with blocking calls a client that
  // connected and sent nothing held its thread and its slot for ever.
  asio::io_context io;
  auto wait = [&io](auto start) {
    beast::error_code result;
    start([&result](beast::error_code e, auto&&...) { result = e; });
    io.restart();
    io.run();
    return result;
  };
  const auto idle = std::chrono::milliseconds(options_.idle_timeout_ms);
  try {
    beast::ssl_stream<beast::tcp_stream> stream(io, impl_->tls);
    beast::get_lowest_layer(stream).socket().assign(tcp::v4(), fd);
    beast::get_lowest_layer(stream).expires_after(idle);
    if (wait([&](auto done) { stream.async_handshake(asio::ssl::stream_base::server, done); })) {
      return;  // not TLS, or too slow: nothing to answer
    }
    // The client's certificate, if it sent one, by its fingerprint.
    std::string client_cert_hash;
    if (X509* cert = SSL_get1_peer_certificate(stream.native_handle())) {
      unsigned char* der = nullptr;
      int len = i2d_X509(cert, &der);
      if (len > 0) {
        client_cert_hash = tlog::HexEncode(tlog::Sha256::Of({der, static_cast<size_t>(len)}));
      }
      OPENSSL_free(der);
      X509_free(cert);
    }
    beast::flat_buffer buffer;
    while (!stopping_) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(options_.max_body_bytes);
      parser.header_limit(16 * 1024);
      beast::error_code ec;
      beast::get_lowest_layer(stream).expires_after(idle);
      ec = wait([&](auto done) { http::async_read(stream, buffer, parser, done); });
      if (ec == http::error::end_of_stream || ec == asio::ssl::error::stream_truncated) break;
      ApiResponse out;
      bool keep = false;
      bool oversized = ec == http::error::body_limit;
      if (oversized) {
        out = {413, "application/json", R"({"error":"request body too large"})"};
      } else if (ec) {
        break;  // not HTTP: nothing to answer
      } else {
        auto& msg = parser.get();
        keep = msg.keep_alive();
        std::string auth(msg[http::field::authorization]);
        out = Dispatch(std::string(msg.method_string()), std::string(msg.target()), auth,
                       msg.body(), client_cert_hash, peer);
      }
      if (out.stream) {
        if (streams_.fetch_add(1) >= options_.max_streams) {
          streams_--;
          refused_("api_busy", "too many event streams", peer);
          out = {503, "application/json", R"({"error":"too many event streams; retry later"})"};
        } else {
          // Headers, then the body as the handler writes it, until it ends or
          // the client goes; the end of the connection ends the body.
          http::response<http::empty_body> head{static_cast<http::status>(out.status), 11};
          head.set(http::field::server, "latch-collector");
          head.set(http::field::content_type, out.content_type);
          head.set(http::field::cache_control, "no-cache");
          head.keep_alive(false);
          http::response_serializer<http::empty_body> sr(head);
          beast::get_lowest_layer(stream).expires_after(idle);
          ec = wait([&](auto done) { http::async_write_header(stream, sr, done); });
          beast::get_lowest_layer(stream).expires_never();
          if (!ec) {
            out.stream([&](const std::string& data) {
              beast::error_code wec;
              beast::get_lowest_layer(stream).expires_after(idle);
              wec = wait([&](auto done) { asio::async_write(stream, asio::buffer(data), done); });
              return !wec && !stopping_;
            });
          }
          streams_--;
          break;
        }
      }
      http::response<http::string_body> res{static_cast<http::status>(out.status), 11};
      res.set(http::field::server, "latch-collector");
      res.set(http::field::content_type, out.content_type);
      res.keep_alive(keep);
      res.body() = std::move(out.body);
      res.prepare_payload();
      beast::get_lowest_layer(stream).expires_after(idle);
      ec = wait([&](auto done) { http::async_write(stream, res, done); });
      if (oversized && !ec) {
        // Lingering close: take in (and drop) what the client is still
        // sending, bounded, so closing with unread data does not reset the
        // connection and destroy the answer before the client reads it.
        beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
        char sink[16384];
        size_t drained = 0;
        beast::error_code dec;
        while (drained < (4u << 20)) {
          size_t n = 0;
          dec = wait([&](auto done) {
            stream.async_read_some(asio::buffer(sink), [&n, done](beast::error_code e, size_t got) {
              n = got;
              done(e);
            });
          });
          if (dec) break;
          drained += n;
        }
      }
      if (ec || !keep) break;
    }
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(2));
    (void)wait([&](auto done) { stream.async_shutdown(done); });
  } catch (const std::exception& e) {
    // A failed handshake or a reset connection ends only that connection.
  }
}

}  // namespace latch::api
