// Test and benchmark helper: one HTTPS call to the collector's API on
// loopback, verifying the server against the certificate it made (named
// "localhost"). Returns status -1 and the error text if there is no answer.
#pragma once

#include <cctype>
#include <chrono>
#include <cstdint>
#include <map>
#include <string>
// clang-format off
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
// clang-format on

namespace latch::testing {

struct HttpsReply {
  int status = 0;
  std::string body;
  std::multimap<std::string, std::string> headers;  // names in lower case
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

inline HttpsReply HttpsCall(uint16_t port, const std::string& ca_file,
                            boost::beast::http::verb method, const std::string& target,
                            const std::string& token, const std::string& body = "",
                            const std::string& client_cert = "", const std::string& client_key = "",
                            const std::map<std::string, std::string>& extra_headers = {}) {
  namespace asio = boost::asio;
  namespace beast = boost::beast;
  namespace http = beast::http;
  asio::io_context io;
  asio::ssl::context tls(asio::ssl::context::tls_client);
  tls.load_verify_file(ca_file);
  tls.set_verify_mode(asio::ssl::verify_peer);
  if (!client_cert.empty()) {
    tls.use_certificate_chain_file(client_cert);
    tls.use_private_key_file(client_key, asio::ssl::context::pem);
  }
  beast::ssl_stream<beast::tcp_stream> stream(io, tls);
  beast::error_code ec;
  beast::get_lowest_layer(stream).connect(
      asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
  if (ec) return {-1, ec.message(), {}};
  stream.set_verify_callback(asio::ssl::host_name_verification("localhost"));
  stream.handshake(asio::ssl::stream_base::client, ec);
  if (ec) return {-1, ec.message(), {}};
  http::request<http::string_body> req{method, target, 11};
  req.set(http::field::host, "localhost");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  for (const auto& [name, value] : extra_headers) req.set(name, value);
  req.body() = body;
  req.prepare_payload();
  beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(10));
  // The server may answer (413) and close before a too-large body is all
  // written: the write error is expected then, the answer is what counts.
  beast::error_code write_ec;
  http::write(stream, req, write_ec);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  http::read(stream, buffer, res, ec);
  if (ec) return {-1, ec.message(), {}};
  stream.shutdown(ec);
  HttpsReply reply{static_cast<int>(res.result_int()), res.body(), {}};
  for (const auto& field : res) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    reply.headers.emplace(name, std::string(field.value()));
  }
  return reply;
}

}  // namespace latch::testing
