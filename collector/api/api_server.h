// ApiServer: the collector's HTTPS API (Boost.Beast over OpenSSL TLS).
// Callers authenticate with a bearer token; the server keeps only SHA-256
// hashes of the tokens, each mapped to an identity of the policy. Every
// request is size-checked and handed, with the caller's identity, to the
// handler, which answers through a Respond callback from whatever thread did
// the work (the collector's loop for workflow state, a worker for index
// reads); a refused call answers 401 and is reported to the refusal hook,
// which records it.
//
// Every connection is asynchronous on one io_context, run by one thread (the
// caller's): an idle or slow client costs a socket, not a thread, so holding
// a thousand connections open does not keep an approver out (issue 15; before
// it, 64 idle sockets did). What bounds a connection is time and size: one
// that sends nothing for idle_timeout_ms (in its TLS handshake, inside a
// request, or between keep-alive requests), or takes longer than that to
// send a request's head and body, or does not take what it is sent for as
// long, is closed; a head is at most 16 KiB and a body max_body_bytes. At
// most max_connections_per_address come from one peer address (more are
// closed at once and recorded): an operators' and auditors' API, not a public
// one. Streamed responses (server-sent events), at most max_streams at once,
// are pulled from their source a piece at a time, asynchronously like the
// rest (StreamSource).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "collector/api/session_book.h"
#include "lib/status/status.h"

namespace boost::asio {
class io_context;
}

namespace latch::api {

struct ApiRequest {
  std::string method;    // GET, POST, ...
  std::string target;    // path and query
  std::string identity;  // empty for /healthz (and /checkpoint, /tile/ of a public log)
  std::string body;
  // How the identity was established: "token", "cert" or "session" (a
  // console's session cookie); and the hex SHA-256 of that token,
  // certificate or session secret.
  std::string via;
  std::string credential;
  std::string if_none_match;  // the If-None-Match header (static files)
};

// A streamed response is pulled, piece by piece: once the headers, and then
// each piece, are written, the server asks the response's source for the
// next one, handing it a StreamNext. The source answers by calling it, once,
// now or later and from any thread, with the next piece, or with nullopt to
// end the response (the connection then closes). Nothing waits on a thread:
// a source with nothing to say yet answers later (from a timer, or once a
// worker has read what it sends). A client that goes away, or does not take
// a piece within idle_timeout_ms, ends the stream; the source is then not
// asked again.
using StreamNext = std::function<void(std::optional<std::string> piece)>;
using StreamSource = std::function<void(StreamNext next)>;

struct ApiResponse {
  ApiResponse() = default;
  ApiResponse(int status_code, std::string type, std::string text)
      : status(status_code), content_type(std::move(type)), body(std::move(text)) {}
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // More headers (Set-Cookie, ETag, Cache-Control, Content-Security-Policy).
  std::vector<std::pair<std::string, std::string>> headers;
  // Set for a streamed response (server-sent events): the server sends the
  // status and headers, then the pieces `stream` gives (see StreamSource).
  // `body` is ignored.
  StreamSource stream;
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
  // Connections held at once: bounded by file descriptors, not threads.
  // Start() raises the process's soft descriptor limit toward it and lowers
  // it (with a warning) to what the hard limit leaves.
  int max_connections = 4096;
  int max_connections_per_address = 16;
  int idle_timeout_ms = 10000;
  int max_streams = 16;  // of those, streamed responses at once (more: 503)
  // /checkpoint and /tile/ without credentials (a public log); otherwise only
  // /healthz is.
  bool public_log = false;
  // More paths served without credentials (a witness's /add-checkpoint,
  // whose only authentication is the log's signature on what it is sent).
  std::set<std::string> open_paths;
  // Path prefixes served without credentials (the console's static files).
  std::vector<std::string> open_prefixes;
};

class ApiServer {
 public:
  // Answers one request; callable once, from any thread.
  using Respond = std::function<void(ApiResponse)>;
  // Must call `respond` exactly once, now or later, from any thread; it runs
  // on the io_context's thread and must not block it.
  using Handler = std::function<void(ApiRequest request, Respond respond)>;
  // A refused request or connection: its kind, what it was, the peer's
  // address, and the identity refused when it is known (a 403).
  using RefusalHook = std::function<void(const std::string& what, const std::string& detail,
                                         const std::string& peer, const std::string& identity)>;

  // Serves on `io`, which the caller runs (on one thread) for as long as
  // the server lives.
  ApiServer(boost::asio::io_context& io, ApiOptions options, Handler handler, RefusalHook refused);
  ~ApiServer();
  // Binds and starts accepting (on the io_context's thread from then on).
  Status Start();
  // Closes the listener and every connection (streams included). Call it on
  // the io_context's thread. A stream's source may still answer afterwards;
  // its answer is dropped.
  void Stop();
  uint16_t port() const { return bound_port_; }
  // Replaces the accepted tokens and client certificates (on the
  // io_context's thread): requests authenticated from then on use them.
  // Sessions whose credential is no longer among them end.
  void SetCredentials(std::map<std::string, std::string> token_hashes,
                      std::map<std::string, std::string> client_cert_hashes);
  // The console's sessions: a request that carries the session cookie (and
  // no Authorization header) is its session's identity's, and one that
  // changes anything (not GET or HEAD) must carry the session's CSRF token
  // in X-Latch-CSRF, or is refused 403 (a cross-site form cannot set it).
  // The io_context's thread's.
  SessionBook& sessions() { return sessions_; }
  static constexpr const char* kSessionCookie = "__Host-latch_session";

  // The headers of a request that authentication reads.
  struct Credentials {
    std::string authorization;
    std::string cookie;
    std::string csrf;  // X-Latch-CSRF
    std::string client_cert_hash;
  };

 private:
  class Session;
  struct Impl;
  void Accept();
  void CloseAll();
  // Authentication, then the handler; calls `respond` with a refusal itself.
  void Dispatch(ApiRequest req, const Credentials& credentials, const std::string& peer,
                Respond respond);
  // Who a request is: sets req->identity, via and credential from its
  // credentials; an error response (401, or 403 for a change without its
  // session's CSRF token) if it cannot be admitted.
  std::optional<ApiResponse> Authenticate(ApiRequest* req, const Credentials& credentials,
                                          const std::string& peer);
  // Streams under way, counted against max_streams (on the io_context's
  // thread): one ends when its session closes.
  bool StreamStarted();
  void StreamEnded();
  // A session's end (on the io_context's thread): its slots are free again.
  void Forget(Session* session, const std::string& peer);

  boost::asio::io_context& io_;
  ApiOptions options_;
  Handler handler_;
  RefusalHook refused_;
  std::unique_ptr<Impl> impl_;  // owned by the io_context's thread after Start()
  uint16_t bound_port_ = 0;
  int streams_ = 0;       // the io_context's thread's
  SessionBook sessions_;  // the io_context's thread's
  bool stopping_ = false;
};

// Lower-case hex SHA-256 of a token, as the configuration stores it.
std::string TokenHash(const std::string& token);

// The value of cookie `name` in a Cookie header ("a=1; b=2"), or "".
std::string CookieValue(std::string_view header, std::string_view name);

}  // namespace latch::api
