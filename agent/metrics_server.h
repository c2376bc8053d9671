// MetricsServer: the agent's metrics in Prometheus text format over plain
// HTTP on a local address, served on the agent's own Asio loop (no thread of
// its own). GET /metrics answers what `render` returns at that moment;
// anything else is 404. Meant for a local scraper: bind it to loopback.
#pragma once

// Boost 1.74's Asio needs <utility> first (see agent_daemon.h).
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on
#include <functional>
#include <memory>
#include <string>

#include "lib/status/status.h"

namespace latch::agent {

class MetricsServer {
 public:
  using Render = std::function<std::string()>;
  // `listen` is "HOST:PORT" (port 0: any free one).
  static Status Start(boost::asio::io_context& io, const std::string& listen, Render render,
                      std::unique_ptr<MetricsServer>* out);
  ~MetricsServer();
  uint16_t port() const;

 private:
  MetricsServer(boost::asio::io_context& io, Render render);
  void Accept();

  boost::asio::ip::tcp::acceptor acceptor_;
  Render render_;
};

}  // namespace latch::agent
