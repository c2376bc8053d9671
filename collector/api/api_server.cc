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

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <thread>

#include "lib/logging/logger.h"
#include "lib/text/utf8.h"
#include "lib/tlog/hex.h"
#include "lib/tlog/sha256.h"

namespace latch::api {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string TokenHash(const std::string& token) {
  tlog::Hash h = tlog::Sha256::Of({reinterpret_cast<const uint8_t*>(token.data()), token.size()});
  return tlog::HexEncode(h);
}

std::string CookieValue(std::string_view header, std::string_view name) {
  while (!header.empty()) {
    size_t end = header.find(';');
    std::string_view pair = header.substr(0, end);
    header = end == std::string_view::npos ? std::string_view() : header.substr(end + 1);
    while (!pair.empty() && pair.front() == ' ') pair.remove_prefix(1);
    size_t eq = pair.find('=');
    if (eq != std::string_view::npos && pair.substr(0, eq) == name) {
      return std::string(pair.substr(eq + 1));
    }
  }
  return "";
}

namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Headers every answer carries: nothing is sniffed into another type,
// framed by another site, or told where it was linked from.
template <class Message>
void SetCommonHeaders(Message& m) {
  m.set("X-Content-Type-Options", "nosniff");
  m.set("X-Frame-Options", "DENY");
  m.set("Referrer-Policy", "no-referrer");
}

// Descriptors a process needs beyond its API connections (ledger, index,
// ZeroMQ, logs).
constexpr int kReservedDescriptors = 256;

// Raises the soft descriptor limit toward what `connections` need; returns
// how many connections the limit leaves room for.
int RoomForConnections(int connections) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return connections;
  rlim_t want = static_cast<rlim_t>(connections) + kReservedDescriptors;
  if (lim.rlim_cur < want) {
    lim.rlim_cur = lim.rlim_max == RLIM_INFINITY ? want : std::min(want, lim.rlim_max);
    (void)::setrlimit(RLIMIT_NOFILE, &lim);
    (void)::getrlimit(RLIMIT_NOFILE, &lim);
  }
  if (lim.rlim_cur >= want) return connections;
  return std::max(16, static_cast<int>(lim.rlim_cur) - kReservedDescriptors);
}

}  // namespace

struct ApiServer::Impl {
  explicit Impl(asio::io_context& io) : acceptor(io), retry(io) {}
  asio::ssl::context tls{asio::ssl::context::tls_server};
  tcp::acceptor acceptor;
  asio::steady_timer retry;  // accepting again after running out of descriptors
  // All below: the io_context's thread only.
  int connections = 0;
  std::map<std::string, int> per_address;
  std::map<Session*, std::weak_ptr<Session>> sessions;
  bool closed = false;
};

// One connection: TLS handshake, then requests in turn (keep-alive), each
// read under one deadline, handed to the server's Dispatch, answered when
// the handler responds. Every step is a completion on the io_context's
// thread; a Respond from another thread is posted there.
class ApiServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(ApiServer* server, tcp::socket socket, std::string peer)
      : server_(server),
        io_(server->io_),
        stream_(std::move(socket), server->impl_->tls),
        peer_(std::move(peer)),
        idle_(server->options_.idle_timeout_ms) {}

  void Start() {
    Lowest().expires_after(idle_);
    stream_.async_handshake(asio::ssl::stream_base::server,
                            [self = shared_from_this()](beast::error_code ec) {
                              if (self->closed_) return;
                              if (ec) return self->Close();  // not TLS, or too slow
                              self->NoteClientCertificate();
                              self->Read();
                            });
  }

  // Ends the connection now (Stop, or a failed step); idempotent.
  void Close() {
    if (closed_) return;
    closed_ = true;
    if (streaming_) server_->StreamEnded();
    beast::error_code ec;
    Lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
    Lowest().socket().close(ec);
    server_->Forget(this, peer_);
  }

 private:
  beast::tcp_stream& Lowest() { return beast::get_lowest_layer(stream_); }

  void NoteClientCertificate() {
    if (X509* cert = SSL_get1_peer_certificate(stream_.native_handle())) {
      unsigned char* der = nullptr;
      int len = i2d_X509(cert, &der);
      if (len > 0) {
        client_cert_hash_ = tlog::HexEncode(tlog::Sha256::Of({der, static_cast<size_t>(len)}));
      }
      OPENSSL_free(der);
      X509_free(cert);
    }
  }

  void Read() {
    parser_.emplace();
    parser_->body_limit(server_->options_.max_body_bytes);
    parser_->header_limit(16 * 1024);
    // One deadline for the whole request: a client that trickles its head
    // a byte at a time is closed like one that sends nothing.
    Lowest().expires_after(idle_);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (!self->closed_) self->OnRead(ec);
                     });
  }

  void OnRead(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::ssl::error::stream_truncated) {
      return Shutdown();
    }
    if (ec == http::error::body_limit) {
      oversized_ = true;
      keep_ = false;
      return Write({413, "application/json", R"({"error":"request body too large"})"});
    }
    if (ec) return Close();    // not HTTP, or too slow: nothing to answer
    Lowest().expires_never();  // the handler's time is not the client's
    auto& msg = parser_->get();
    keep_ = msg.keep_alive();
    ApiRequest req;
    req.method = std::string(msg.method_string());
    req.target = std::string(msg.target());
    req.body = std::move(msg.body());
    req.if_none_match = std::string(msg[http::field::if_none_match]);
    Credentials credentials;
    credentials.authorization = std::string(msg[http::field::authorization]);
    credentials.cookie = std::string(msg[http::field::cookie]);
    credentials.csrf = std::string(msg["X-Latch-CSRF"]);
    credentials.client_cert_hash = client_cert_hash_;
    server_->Dispatch(std::move(req), credentials, peer_, MakeRespond());
  }

  // The handler's answer, once, from any thread; a handler that drops it
  // unanswered still gets the client a 500 rather than a hung connection.
  struct Responder {
    std::shared_ptr<Session> session;
    std::atomic<bool> done{false};
    void Answer(ApiResponse out) {
      if (done.exchange(true)) return;
      asio::post(session->io_, [s = session, out = std::move(out)]() mutable {
        if (!s->closed_) s->OnResponse(std::move(out));
      });
    }
    ~Responder() {
      if (!done) Answer({500, "application/json", R"({"error":"internal error"})"});
    }
  };
  Respond MakeRespond() {
    auto r = std::make_shared<Responder>();
    r->session = shared_from_this();
    return [r](ApiResponse out) { r->Answer(std::move(out)); };
  }

  void OnResponse(ApiResponse out) {
    if (!out.stream) return Write(std::move(out));
    if (!server_->StreamStarted()) {
      server_->refused_("api_busy", "too many event streams", peer_, "");
      return Write({503, "application/json", R"({"error":"too many event streams; retry later"})"});
    }
    StartStream(std::move(out.stream), out.status, out.content_type);
  }

  void Write(ApiResponse out) {
    auto res = std::make_shared<http::response<http::string_body>>(
        static_cast<http::status>(out.status), 11);
    res->set(http::field::server, "latch-collector");
    res->set(http::field::content_type, out.content_type);
    SetCommonHeaders(*res);
    for (const auto& [name, value] : out.headers) res->insert(name, value);
    res->keep_alive(keep_);
    res->body() = std::move(out.body);
    res->prepare_payload();
    Lowest().expires_after(idle_);
    http::async_write(stream_, *res,
                      [self = shared_from_this(), res](beast::error_code ec, size_t) {
                        if (self->closed_) return;
                        if (ec) return self->Close();
                        if (self->oversized_) {
                          self->Lowest().expires_after(std::chrono::seconds(2));
                          return self->Drain();
                        }
                        if (!self->keep_) return self->Shutdown();
                        self->Read();
                      });
  }

  // Lingering close after a 413: take in (and drop) what the client is
  // still sending, bounded, so closing with unread data does not reset the
  // connection and destroy the answer before the client reads it.
  void Drain() {
    stream_.async_read_some(asio::buffer(sink_),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              if (self->closed_) return;
                              self->drained_ += n;
                              if (ec || self->drained_ >= (4u << 20)) return self->Shutdown();
                              self->Drain();
                            });
  }

  void Shutdown() {
    Lowest().expires_after(std::chrono::seconds(2));
    stream_.async_shutdown([self = shared_from_this()](beast::error_code) { self->Close(); });
  }

  // Headers, then the body as the source gives it, a piece at a time,
  // until it ends or the client goes; the end of the connection ends the
  // body. The stream is counted until the session closes.
  void StartStream(StreamSource source, int status, const std::string& type) {
    streaming_ = true;
    auto head =
        std::make_shared<http::response<http::empty_body>>(static_cast<http::status>(status), 11);
    head->set(http::field::server, "latch-collector");
    head->set(http::field::content_type, type);
    head->set(http::field::cache_control, "no-cache");
    SetCommonHeaders(*head);
    head->keep_alive(false);
    auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*head);
    Lowest().expires_after(idle_);
    http::async_write_header(stream_, *sr,
                             [self = shared_from_this(), head, sr, source = std::move(source)](
                                 beast::error_code ec, size_t) mutable {
                               if (ec || self->closed_) return self->Close();
                               self->Lowest().expires_never();
                               self->Pull(std::move(source));
                             });
  }

  // Asks the source for its next piece; its answer comes back to the
  // io_context's thread, is written, and the next is asked for.
  void Pull(StreamSource source) {
    auto answered = std::make_shared<std::atomic<bool>>(false);
    auto shared_source = std::make_shared<StreamSource>(std::move(source));
    (*shared_source)(
        [self = shared_from_this(), shared_source, answered](std::optional<std::string> piece) {
          if (answered->exchange(true)) return;  // a source answers once per pull
          asio::post(self->io_, [self, shared_source, piece = std::move(piece)]() mutable {
            if (self->closed_) return;
            if (!piece) return self->Shutdown();
            auto bytes = std::make_shared<std::string>(std::move(*piece));
            self->Lowest().expires_after(self->idle_);
            asio::async_write(self->stream_, asio::buffer(*bytes),
                              [self, shared_source, bytes](beast::error_code ec, size_t) {
                                if (self->closed_) return;
                                if (ec) return self->Close();  // gone, or too slow to read
                                self->Lowest().expires_never();
                                self->Pull(std::move(*shared_source));
                              });
          });
        });
  }

  ApiServer* server_;
  asio::io_context& io_;
  beast::ssl_stream<beast::tcp_stream> stream_;
  std::string peer_;
  std::chrono::milliseconds idle_;
  std::string client_cert_hash_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool keep_ = false;
  bool streaming_ = false;  // counted among the server's streams until closed
  bool oversized_ = false;
  bool closed_ = false;
  size_t drained_ = 0;
  char sink_[16384];
};

ApiServer::ApiServer(asio::io_context& io, ApiOptions options, Handler handler, RefusalHook refused)
    : io_(io),
      options_(std::move(options)),
      handler_(std::move(handler)),
      refused_(std::move(refused)),
      impl_(std::make_unique<Impl>(io)) {}

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
    // With peer verification on, OpenSSL refuses to resume a session (a
    // browser's second connection does) unless sessions have a context:
    // without one, Chromium's module scripts failed with a TLS protocol
    // error while the page that loaded them had worked.
    static constexpr unsigned char kSessionContext[] = "latch-api";
    SSL_CTX_set_session_id_context(impl_->tls.native_handle(), kSessionContext,
                                   sizeof(kSessionContext) - 1);
    tcp::endpoint at(asio::ip::make_address(options_.listen_address), options_.port);
    impl_->acceptor.open(at.protocol());
    impl_->acceptor.set_option(tcp::acceptor::reuse_address(true));
    impl_->acceptor.bind(at);
    impl_->acceptor.listen(asio::socket_base::max_listen_connections);
    bound_port_ = impl_->acceptor.local_endpoint().port();
  } catch (const std::exception& e) {
    return Status::IoError(std::string("starting the HTTPS API: ") + e.what());
  }
  int room = RoomForConnections(options_.max_connections);
  if (room < options_.max_connections) {
    logging::Default().Warn("the descriptor limit leaves the API fewer connections",
                            {{"max_connections", options_.max_connections},
                             {"allowed", room},
                             {"hint", "raise LimitNOFILE (the hard RLIMIT_NOFILE)"}});
    options_.max_connections = room;
  }
  asio::post(io_, [this] { Accept(); });
  return Status::Ok();
}

void ApiServer::Accept() {
  impl_->acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (impl_->closed) return;
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      // Out of descriptors (or memory): the listener stays, and accepting
      // resumes once connections end; nothing spins meanwhile.
      refused_("api_busy", "cannot accept a connection: " + ec.message(), "", "");
      impl_->retry.expires_after(std::chrono::milliseconds(100));
      impl_->retry.async_wait([this](beast::error_code wec) {
        if (!wec && !impl_->closed) Accept();
      });
      return;
    }
    Accept();
    beast::error_code peer_ec;
    std::string peer = socket.remote_endpoint(peer_ec).address().to_string();
    if (peer_ec) return;
    if (impl_->connections >= options_.max_connections) {
      refused_("api_busy", "too many connections", peer, "");
      return;  // closed: the client retries
    }
    int& held = impl_->per_address[peer];
    if (held >= options_.max_connections_per_address) {
      refused_("api_busy", "too many connections from one address", peer, "");
      return;  // closed
    }
    ++held;
    ++impl_->connections;
    auto session = std::make_shared<Session>(this, std::move(socket), peer);
    impl_->sessions[session.get()] = session;
    session->Start();
  });
}

void ApiServer::Forget(Session* session, const std::string& peer) {
  impl_->sessions.erase(session);
  --impl_->connections;
  auto it = impl_->per_address.find(peer);
  if (it != impl_->per_address.end() && --it->second <= 0) impl_->per_address.erase(it);
}

void ApiServer::CloseAll() {
  if (impl_->closed) return;
  impl_->closed = true;
  beast::error_code ec;
  impl_->acceptor.close(ec);
  impl_->retry.cancel();
  // Close() forgets the session, which erases it from the map: walk a copy.
  auto sessions = impl_->sessions;
  for (auto& [raw, weak] : sessions) {
    if (auto s = weak.lock()) s->Close();
  }
}

void ApiServer::SetCredentials(std::map<std::string, std::string> token_hashes,
                               std::map<std::string, std::string> client_cert_hashes) {
  options_.token_hashes = std::move(token_hashes);
  options_.client_cert_hashes = std::move(client_cert_hashes);
  std::set<std::string> accepted;
  for (const auto& [hash, who] : options_.token_hashes) accepted.insert(hash);
  for (const auto& [hash, who] : options_.client_cert_hashes) accepted.insert(hash);
  if (size_t ended = sessions_.KeepOnly(accepted)) {
    logging::Default().Info("console sessions ended with their credentials",
                            {{"sessions", static_cast<uint64_t>(ended)}});
  }
}

void ApiServer::Stop() {
  if (stopping_) return;
  stopping_ = true;
  CloseAll();
}

bool ApiServer::StreamStarted() {
  if (stopping_ || streams_ >= options_.max_streams) return false;
  ++streams_;
  return true;
}

void ApiServer::StreamEnded() { --streams_; }

std::optional<ApiResponse> ApiServer::Authenticate(ApiRequest* req, const Credentials& c,
                                                   const std::string& peer) {
  // A bearer token if the request has one (it must be valid), else the
  // console's session cookie (it must be live), else a pinned client
  // certificate. A 401's record names what was asked for (a 403's, below,
  // only its path).
  const std::string what = req->method + " " + std::string(text::TruncateUtf8(req->target, 200));
  const std::string prefix = "Bearer ";
  const std::string session_secret = CookieValue(c.cookie, kSessionCookie);
  if (!c.authorization.empty()) {
    if (c.authorization.rfind(prefix, 0) == 0) {
      std::string hash = TokenHash(c.authorization.substr(prefix.size()));
      auto it = options_.token_hashes.find(hash);
      if (it != options_.token_hashes.end()) {
        req->identity = it->second;
        req->via = "token";
        req->credential = hash;
      }
    }
  } else if (!session_secret.empty()) {
    const SessionBook::Session* s = sessions_.Find(session_secret, NowNs());
    if (s == nullptr) {
      refused_("api_unauthenticated", what + " (a session that has ended)", peer, "");
      // The browser is told to forget it: a stale cookie (after a restart)
      // would otherwise keep taking precedence over a client certificate.
      ApiResponse ended{401, "application/json",
                        R"({"error":"the session has ended; sign in again"})"};
      ended.headers = {
          {"Set-Cookie", std::string(kSessionCookie) +
                             "=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"}};
      return ended;
    }
    // A change must carry the session's CSRF token: a page of another
    // site can make the browser send the cookie, not read the token.
    if (req->method != "GET" && req->method != "HEAD" && !SecretsEqual(c.csrf, s->csrf)) {
      refused_("api_forbidden", s->identity + ": " + what + " (no valid CSRF token)", peer,
               s->identity);
      return ApiResponse{403, "application/json",
                         R"({"error":"a change needs the session's X-Latch-CSRF token"})"};
    }
    req->identity = s->identity;
    req->via = "session";
    req->credential = SessionBook::HashOf(session_secret);
  } else if (!c.client_cert_hash.empty()) {
    auto it = options_.client_cert_hashes.find(c.client_cert_hash);
    if (it != options_.client_cert_hashes.end()) {
      req->identity = it->second;
      req->via = "cert";
      req->credential = c.client_cert_hash;
    }
  }
  if (req->identity.empty()) {
    refused_("api_unauthenticated", what, peer, "");
    return ApiResponse{401, "application/json",
                       R"({"error":"a valid bearer token or client certificate is required"})"};
  }
  return std::nullopt;
}

void ApiServer::Dispatch(ApiRequest req, const Credentials& credentials, const std::string& peer,
                         Respond respond) {
  const std::string method = req.method, target = req.target;
  if (!text::IsValidUtf8(target)) {
    refused_("api_malformed", method + " (a request target that is not UTF-8)", peer, "");
    return respond({400, "application/json", R"({"error":"the request target must be UTF-8"})"});
  }
  const std::string path = target.substr(0, target.find('?'));
  bool open = path == "/healthz" ||
              (options_.public_log && (path == "/checkpoint" || path.rfind("/tile/", 0) == 0)) ||
              options_.open_paths.count(path) != 0;
  for (const std::string& p : options_.open_prefixes) open = open || path.rfind(p, 0) == 0;
  if (!open) {
    if (std::optional<ApiResponse> refusal = Authenticate(&req, credentials, peer)) {
      return respond(std::move(*refusal));
    }
  }
  // Authorization failures are recorded like authentication failures.
  std::string forbidden_detail =
      req.identity + ": " + method + " " +
      std::string(text::TruncateUtf8(std::string_view(target).substr(0, target.find('?')), 200));
  Respond answer = [refused = refused_, respond, forbidden_detail, peer,
                    identity = req.identity](ApiResponse out) {
    if (out.status == 403) refused("api_forbidden", forbidden_detail, peer, identity);
    respond(std::move(out));
  };
  try {
    handler_(std::move(req), answer);
  } catch (const std::exception& e) {
    // Whatever a handler throws ends this request only (a 500), not the
    // connection unanswered or the loop.
    logging::Default().Error(
        "API handler failed; answered 500",
        {{"method", method}, {"path", target.substr(0, target.find('?'))}, {"error", e.what()}});
    answer({500, "application/json", R"({"error":"internal error"})"});
  }
}

}  // namespace latch::api
