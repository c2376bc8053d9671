// ApiServer: the collector's HTTPS API (Boost.Beast over OpenSSL TLS).
// Callers authenticate with a bearer token; the server keeps only SHA-256
// hashes of the tokens, each mapped to an identity of the policy. Every
// request is size-checked and handed, with the caller's identity, to the
// handler, which the collector runs on its own loop thread (its workflow
// state has one owner); a refused call answers 401 and is reported to the
// handler's refusal hook, which records it.
//
// Connections are served by a thread each, at most max_connections at once,
// and at most max_connections_per_address from one peer address (more are
// closed at once, and recorded): an operators' and auditors' API, not a
// public one. A connection that sends nothing for idle_timeout_ms (in its TLS
// handshake, inside a request, or between keep-alive requests), or does not
// take what it is sent for as long, is closed: 64 idle sockets once locked
// every approver out (issue 14).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "tlog/status.h"

namespace latch::api {

struct ApiRequest {
  std::string method;    // GET, POST, ...
  std::string target;    // path and query
  std::string identity;  // empty for /healthz (and /checkpoint, /tile/ of a public log)
  std::string body;
};

// Writes one piece of a streamed response; false once the client is gone.
using StreamWrite = std::function<bool(const std::string& data)>;

struct ApiResponse {
  ApiResponse() = default;
  ApiResponse(int status_code, std::string type, std::string text)
      : status(status_code), content_type(std::move(type)), body(std::move(text)) {}
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Set for a streamed response (server-sent events): the server sends the
  // status and headers, then calls it with a writer until it returns; the
  // connection closes after it. `body` is ignored.
  std::function<void(const StreamWrite& write)> stream;
};

struct ApiOptions {
  std::string listen_address = "127.0.0.1";
  uint16_t port = 8443;
  std::string cert_path, key_path;
  std::map<std::string, std::string> token_hashes;  // hex SHA-256 of the token -> identity
  // Client certificates: hex SHA-256 of the DER certificate -> identity. The
  // server asks every client for a certificate; one listed here authenticates
  // a request that carries no bearer token.
  std::map<std::string, std::string> client_cert_hashes;
  size_t max_body_bytes = 64 * 1024;
  int max_connections = 64;
  int max_connections_per_address = 16;
  int idle_timeout_ms = 10000;
  int max_streams = 16;  // of those, streamed responses at once (more: 503)
  // /checkpoint and /tile/ without credentials (a public log); otherwise only
  // /healthz is.
  bool public_log = false;
};

class ApiServer {
 public:
  using Handler = std::function<ApiResponse(const ApiRequest&)>;
  // A refused request or connection: its kind, what it was, the peer's address.
  using RefusalHook = std::function<void(const std::string& what, const std::string& detail,
                                         const std::string& peer)>;

  ApiServer(ApiOptions options, Handler handler, RefusalHook refused);
  ~ApiServer();
  // Binds and starts serving on a thread of its own.
  Status Start();
  void Stop();
  bool stopping() const { return stopping_.load(); }
  uint16_t port() const { return bound_port_; }

 private:
  struct Impl;
  void Serve(int fd, const std::string& peer);
  ApiResponse Dispatch(const std::string& method, const std::string& target,
                       const std::string& authorization, const std::string& body,
                       const std::string& client_cert_hash, const std::string& peer);

  ApiOptions options_;
  Handler handler_;
  RefusalHook refused_;
  std::unique_ptr<Impl> impl_;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
  std::mutex per_address_mu_;
  std::map<std::string, int> per_address_;  // GUARDED_BY(per_address_mu_)
  std::atomic<int> connections_{0};
  std::atomic<int> streams_{0};
  uint16_t bound_port_ = 0;
};

// Lower-case hex SHA-256 of a token, as the configuration stores it.
std::string TokenHash(const std::string& token);

}  // namespace latch::api
