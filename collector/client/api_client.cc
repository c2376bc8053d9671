#include "collector/client/api_client.h"

// Boost 1.74's Asio needs <utility> first (see agent_daemon.h).
#include <utility>
// clang-format off
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
// clang-format on

#include <algorithm>
#include <chrono>
#include <vector>

namespace latch::client {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct ApiConnection::Impl {
  asio::io_context io;
  asio::ssl::context tls{asio::ssl::context::tls_client};
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> stream;
  beast::flat_buffer buffer;

  // Runs the asynchronous operation `start` begins until it ends; the
  // stream's expiry (set before) cancels it if the server stalls. Throws
  // what it failed with, like the blocking calls would.
  template <typename Start>
  void Await(std::chrono::milliseconds timeout, Start start) {
    beast::get_lowest_layer(*stream).expires_after(timeout);
    beast::error_code result = asio::error::would_block;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    io.restart();
    io.run();
    if (result) throw beast::system_error(result);
  }

  http::request<http::string_body> Request(const ApiConnection& c, http::verb method,
                                           const std::string& target) const {
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, c.host_);
    req.set(http::field::user_agent, c.endpoint_.user_agent);
    if (!c.endpoint_.token.empty()) {
      req.set(http::field::authorization, "Bearer " + c.endpoint_.token);
    }
    return req;
  }
};

ApiConnection::~ApiConnection() = default;

namespace {

// The servers of "https://a,https://b" (collectors sharing one ledger).
std::vector<std::string> ServerList(const std::string& list) {
  std::vector<std::string> servers;
  for (size_t at = 0; at <= list.size();) {
    size_t comma = list.find(',', at);
    if (comma == std::string::npos) comma = list.size();
    std::string one = list.substr(at, comma - at);
    while (!one.empty() && one.front() == ' ') one.erase(0, 1);
    while (!one.empty() && one.back() == ' ') one.pop_back();
    if (!one.empty()) servers.push_back(std::move(one));
    at = comma + 1;
  }
  return servers;
}

// A standby's refusal of a change (collector/ingest/standby.cc): nothing
// was done, and another collector of the list may be the sequencer.
bool FromAStandby(const Reply& r) {
  return r.status == 503 && r.body.find("\"standby\":true") != std::string::npos;
}

// The sequencer a standby's refusal names ("": none). Its URL is printable
// ASCII without quotes or backslashes (the collector's config checks).
std::string NamedSequencer(const Reply& r) {
  const std::string key = "\"sequencer\":\"";
  const size_t at = r.body.find(key);
  if (at == std::string::npos) return "";
  const size_t end = r.body.find('"', at + key.size());
  if (end == std::string::npos) return "";
  std::string url = r.body.substr(at + key.size(), end - at - key.size());
  return url.rfind("https://", 0) == 0 ? url : "";
}

}  // namespace

Status ApiConnection::Open(const Endpoint& endpoint, std::unique_ptr<ApiConnection>* out) {
  // Several servers (collectors sharing one ledger, issue 17): the first
  // that connects and completes the handshake.
  const std::vector<std::string> servers = ServerList(endpoint.server);
  if (servers.empty()) return Status::InvalidArgument("no server given");
  std::string failures;
  for (const std::string& server : servers) {
    Endpoint one = endpoint;
    one.server = server;
    Status s = OpenOne(one, out);
    if (s.ok() || s.code() != Status::Code::kIoError) return s;
    failures += (failures.empty() ? "" : "; ") + s.message();
  }
  return Status::IoError(failures);
}

Status ApiConnection::OpenOne(const Endpoint& endpoint, std::unique_ptr<ApiConnection>* out) {
  std::string rest = endpoint.server;
  if (rest.rfind("https://", 0) != 0) {
    return Status::InvalidArgument("the server must be an https:// URL");
  }
  rest = rest.substr(8);
  while (!rest.empty() && rest.back() == '/') rest.pop_back();
  size_t colon = rest.rfind(':');
  std::unique_ptr<ApiConnection> c(new ApiConnection());
  c->endpoint_ = endpoint;
  c->host_ = colon == std::string::npos ? rest : rest.substr(0, colon);
  std::string port = colon == std::string::npos ? "443" : rest.substr(colon + 1);
  c->impl_ = std::make_unique<Impl>();
  Impl& i = *c->impl_;
  try {
    if (!endpoint.ca.empty()) {
      i.tls.load_verify_file(endpoint.ca);
    } else {
      i.tls.set_default_verify_paths();
    }
    i.tls.set_verify_mode(asio::ssl::verify_peer);
    if (!endpoint.cert.empty()) {
      i.tls.use_certificate_chain_file(endpoint.cert);
      i.tls.use_private_key_file(endpoint.key.empty() ? endpoint.cert : endpoint.key,
                                 asio::ssl::context::pem);
    }
    i.stream = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(i.io, i.tls);
    asio::ip::tcp::resolver resolver(i.io);
    const auto addresses = resolver.resolve(c->host_, port);
    i.Await(endpoint.timeout,
            [&](auto done) { beast::get_lowest_layer(*i.stream).async_connect(addresses, done); });
    i.stream->set_verify_callback(asio::ssl::host_name_verification(c->host_));
    SSL_set_tlsext_host_name(i.stream->native_handle(), c->host_.c_str());
    i.Await(endpoint.timeout,
            [&](auto done) { i.stream->async_handshake(asio::ssl::stream_base::client, done); });
  } catch (const std::exception& e) {
    return Status::IoError(endpoint.server + ": " + e.what());
  }
  *out = std::move(c);
  return Status::Ok();
}

Status ApiConnection::Call(std::string_view method, const std::string& target,
                           const std::string& body, Reply* out) {
  try {
    Impl& i = *impl_;
    auto req = i.Request(
        *this, http::string_to_verb(beast::string_view(method.data(), method.size())), target);
    if (!body.empty()) req.set(http::field::content_type, endpoint_.content_type);
    req.body() = body;
    req.prepare_payload();
    const auto timeout = endpoint_.timeout;
    i.Await(timeout, [&](auto done) { http::async_write(*i.stream, req, done); });
    http::response_parser<http::string_body> parser;
    parser.body_limit(64u << 20);
    i.Await(timeout, [&](auto done) { http::async_read(*i.stream, i.buffer, parser, done); });
    *out = {static_cast<int>(parser.get().result_int()), parser.get().body()};
    // A server that never says goodbye costs one short wait, not a hang.
    try {
      i.Await(std::min(timeout, std::chrono::milliseconds(1000)),
              [&](auto done) { i.stream->async_shutdown(done); });
    } catch (const std::exception&) {
    }
  } catch (const std::exception& e) {
    return Status::IoError(endpoint_.server + ": " + e.what());
  }
  return Status::Ok();
}

Status ApiConnection::OpenStream(const std::string& target, int* status, std::string* first) {
  try {
    Impl& i = *impl_;
    auto req = i.Request(*this, http::verb::get, target);
    i.Await(endpoint_.timeout, [&](auto done) { http::async_write(*i.stream, req, done); });
    http::response_parser<http::empty_body> head;
    head.skip(true);
    i.Await(endpoint_.timeout,
            [&](auto done) { http::async_read_header(*i.stream, i.buffer, head, done); });
    *status = static_cast<int>(head.get().result_int());
    first->assign(static_cast<const char*>(impl_->buffer.data().data()), impl_->buffer.size());
    impl_->buffer.consume(impl_->buffer.size());
  } catch (const std::exception& e) {
    return Status::IoError(e.what());
  }
  return Status::Ok();
}

Status ApiConnection::ReadSome(std::string* out) {
  try {
    char buf[8192];
    beast::get_lowest_layer(*impl_->stream).expires_never();
    size_t n = impl_->stream->read_some(asio::buffer(buf));
    out->append(buf, n);
  } catch (const std::exception& e) {
    return Status::IoError(e.what());
  }
  return Status::Ok();
}

Status Call(const Endpoint& endpoint, std::string_view method, const std::string& target,
            const std::string& body, Reply* out) {
  // Each server in turn while it cannot be reached, or is a standby that
  // refused a change (which then was not made, so asking the next is safe);
  // a call that fails once sent is not repeated elsewhere.
  std::vector<std::string> servers = ServerList(endpoint.server);
  if (servers.empty()) return Status::InvalidArgument("no server given");
  std::string failures;
  bool answered = false;  // by a standby, which refused
  for (size_t i = 0; i < servers.size(); ++i) {
    Endpoint one = endpoint;
    one.server = servers[i];
    std::unique_ptr<ApiConnection> c;
    Status s = ApiConnection::Open(one, &c);
    if (!s.ok() && s.code() != Status::Code::kIoError) return s;
    if (!s.ok()) {
      failures += (failures.empty() ? "" : "; ") + s.message();
      continue;
    }
    LATCH_RETURN_IF_ERROR(c->Call(method, target, body, out));
    answered = true;
    if (!FromAStandby(*out)) return Status::Ok();
    // A standby that names the sequencer: if the list has it further on,
    // it is asked next. One the list does not have is not asked (the
    // credentials go only where the user sent them); the refusal names it.
    const std::string named = NamedSequencer(*out);
    auto later =
        std::find(servers.begin() + static_cast<std::ptrdiff_t>(i) + 1, servers.end(), named);
    if (!named.empty() && later != servers.end()) {
      std::rotate(servers.begin() + static_cast<std::ptrdiff_t>(i) + 1, later, later + 1);
    }
  }
  // Every server that answered was a standby (a takeover under way): its
  // refusal is the answer.
  if (answered) return Status::Ok();
  return Status::IoError(failures);
}

}  // namespace latch::client
