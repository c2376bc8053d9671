#include "agent/metrics_server.h"

// clang-format off
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
// clang-format on

namespace latch::agent {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// One connection: read a request, answer it, close.
class MetricsSession : public std::enable_shared_from_this<MetricsSession> {
 public:
  MetricsSession(tcp::socket socket, const MetricsServer::Render& render)
      : stream_(std::move(socket)), render_(render) {}

  void Start() {
    stream_.expires_after(std::chrono::seconds(10));
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code ec, size_t) {
                       if (!ec) self->Answer();
                     });
  }

 private:
  void Answer() {
    bool metrics = request_.method() == http::verb::get && request_.target() == "/metrics";
    response_.version(11);
    response_.keep_alive(false);
    response_.set(http::field::server, "latch-agent");
    if (metrics) {
      response_.result(http::status::ok);
      response_.set(http::field::content_type, "text/plain; version=0.0.4");
      response_.body() = render_();
    } else {
      response_.result(http::status::not_found);
      response_.set(http::field::content_type, "text/plain");
      response_.body() = "only /metrics is here\n";
    }
    response_.prepare_payload();
    http::async_write(stream_, response_, [self = shared_from_this()](beast::error_code, size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    });
  }

  beast::tcp_stream stream_;
  MetricsServer::Render render_;
  beast::flat_buffer buffer_;
  http::request<http::empty_body> request_;
  http::response<http::string_body> response_;
};

}  // namespace

MetricsServer::MetricsServer(asio::io_context& io, Render render)
    : acceptor_(io), render_(std::move(render)) {}

MetricsServer::~MetricsServer() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
}

Status MetricsServer::Start(asio::io_context& io, const std::string& listen, Render render,
                            std::unique_ptr<MetricsServer>* out) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == listen.size()) {
    return Status::InvalidArgument("metrics address \"" + listen + "\" is not HOST:PORT");
  }
  std::unique_ptr<MetricsServer> m(new MetricsServer(io, std::move(render)));
  try {
    std::string host = listen.substr(0, colon);
    if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
      host = host.substr(1, host.size() - 2);
    }
    int port = std::stoi(listen.substr(colon + 1));
    if (port < 0 || port > 65535) throw std::out_of_range("port");
    tcp::endpoint at(asio::ip::make_address(host), static_cast<uint16_t>(port));
    m->acceptor_.open(at.protocol());
    m->acceptor_.set_option(tcp::acceptor::reuse_address(true));
    m->acceptor_.bind(at);
    m->acceptor_.listen();
  } catch (const std::exception& e) {
    return Status::IoError("serving metrics on " + listen + ": " + e.what());
  }
  m->Accept();
  *out = std::move(m);
  return Status::Ok();
}

uint16_t MetricsServer::port() const { return acceptor_.local_endpoint().port(); }

void MetricsServer::Accept() {
  acceptor_.async_accept([this](boost::system::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;  // closed
    if (!ec) std::make_shared<MetricsSession>(std::move(socket), render_)->Start();
    Accept();
  });
}

}  // namespace latch::agent
