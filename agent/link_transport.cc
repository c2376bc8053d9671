#include "agent/link_transport.h"

// Boost 1.74's Asio needs <utility> first (see agent_daemon.h).
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on
#include <cstdint>
#include <cstring>
#include <zmq.hpp>

#include "lib/logging/logger.h"

namespace latch::agent {
namespace {

class ZmqLinkTransport : public LinkTransport {
 public:
  ZmqLinkTransport(boost::asio::io_context& io, CurveCredentials credentials)
      : io_(io), credentials_(std::move(credentials)) {}
  ~ZmqLinkTransport() override { Release(); }

  void SetReceiver(OnFrame on_frame) override { on_frame_ = std::move(on_frame); }
  void SetRefusalHandler(OnRefused on_refused) override { on_refused_ = std::move(on_refused); }

  Status Connect(const std::string& endpoint) override {
    Release();
    socket_.reset();
    try {
      socket_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
      SetCurve(*socket_);
      socket_->set(zmq::sockopt::linger, 0);
      // Messages queue until the connection is up (the Hello sent right
      // after connect() must not be dropped); the receipt timeout covers
      // the rest.
      socket_->set(zmq::sockopt::sndhwm, 64);
      socket_->set(zmq::sockopt::heartbeat_ivl, 1000);
      socket_->set(zmq::sockopt::heartbeat_timeout, 5000);
      socket_->set(zmq::sockopt::reconnect_ivl, 200);
      socket_->set(zmq::sockopt::reconnect_ivl_max, 5000);
      socket_->connect(endpoint);
      int fd = socket_->get(zmq::sockopt::fd);
      notify_fd_ = std::make_unique<boost::asio::posix::stream_descriptor>(io_, fd);
      WatchHandshakes();
    } catch (const zmq::error_t& e) {
      return Status::IoError("connecting to collector " + endpoint + ": " + e.what());
    }
    Arm();
    return Status::Ok();
  }

  bool Send(const std::string& frame) override {
    if (!socket_) return false;
    bool sent = false;
    try {
      sent = socket_->send(zmq::buffer(frame), zmq::send_flags::dontwait).has_value();
    } catch (const zmq::error_t&) {
      sent = false;
    }
    // The notification fd is edge-triggered: a send can consume the
    // readiness of messages already waiting. Look again on the loop.
    boost::asio::post(io_, [this] { ProcessIncoming(); });
    return sent;
  }

  void SendOnce(const std::string& endpoint, const std::string& frame) override {
    try {
      zmq::socket_t s(context_, zmq::socket_type::dealer);
      SetCurve(s);
      s.set(zmq::sockopt::linger, 1000);
      s.connect(endpoint);
      (void)s.send(zmq::buffer(frame), zmq::send_flags::dontwait);
    } catch (const zmq::error_t&) {
    }
  }

 private:
  void SetCurve(zmq::socket_t& s) {
    s.set(zmq::sockopt::curve_serverkey, credentials_.server_public_key);
    s.set(zmq::sockopt::curve_publickey, credentials_.key.public_z85);
    s.set(zmq::sockopt::curve_secretkey, credentials_.key.secret_z85);
  }
  // The descriptors belong to the ZeroMQ sockets: Asio must not close them.
  void Release() {
    if (notify_fd_) {
      (void)notify_fd_->release();
      notify_fd_.reset();
    }
    armed_ = false;
    if (monitor_fd_) {
      boost::system::error_code ec;
      monitor_fd_->cancel(ec);
      (void)monitor_fd_->release();
      monitor_fd_.reset();
    }
    monitor_armed_ = false;
    if (socket_) (void)zmq_socket_monitor(socket_->handle(), nullptr, 0);
    monitor_.reset();
  }

  // The socket's handshakes, through a monitor: a refusal by the collector's
  // ZAP handler (this agent's key is not enrolled) is told to the link,
  // which says so in the agent's log instead of only seeing a silent
  // collector (issue 16).
  void WatchHandshakes() {
    const std::string address = "inproc://latch-link-monitor-" + std::to_string(++monitors_);
    if (zmq_socket_monitor(socket_->handle(), address.c_str(),
                           ZMQ_EVENT_HANDSHAKE_FAILED_AUTH | ZMQ_EVENT_HANDSHAKE_SUCCEEDED) != 0) {
      return;  // no monitor: refusals look like a silent collector, as before
    }
    monitor_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::pair);
    monitor_->set(zmq::sockopt::linger, 0);
    monitor_->connect(address);
    monitor_fd_ = std::make_unique<boost::asio::posix::stream_descriptor>(
        io_, monitor_->get(zmq::sockopt::fd));
    // ZMQ_FD signals only once the socket has been read dry (until then
    // the writer takes the reader to be busy): read first, then wait.
    ReadMonitor();
  }
  void ArmMonitor() {
    if (monitor_armed_ || !monitor_fd_) return;
    monitor_armed_ = true;
    monitor_fd_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                            [this](const boost::system::error_code& ec) {
                              monitor_armed_ = false;
                              if (ec) return;
                              ReadMonitor();
                            });
  }
  void ReadMonitor() {
    if (!monitor_) return;
    try {
      while (monitor_->get(zmq::sockopt::events) & ZMQ_POLLIN) {
        zmq::message_t event, endpoint;
        if (!monitor_->recv(event, zmq::recv_flags::dontwait)) break;
        if (event.more()) (void)monitor_->recv(endpoint, zmq::recv_flags::none);
        if (event.size() < 6) continue;
        uint16_t id = 0;
        uint32_t value = 0;
        std::memcpy(&id, event.data(), sizeof(id));
        std::memcpy(&value, static_cast<const char*>(event.data()) + 2, sizeof(value));
        if (id == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH && on_refused_) {
          on_refused_("the collector at " + endpoint.to_string() +
                      " refused this agent's key (ZAP status " + std::to_string(value) + ")");
        }
      }
    } catch (const zmq::error_t& e) {
      logging::Default().Error("collector socket monitor", {{"error", e.what()}});
    }
    ArmMonitor();
  }
  void Arm() {
    if (armed_ || !notify_fd_) return;
    armed_ = true;
    notify_fd_->async_wait(boost::asio::posix::stream_descriptor::wait_read,
                           [this](const boost::system::error_code& ec) {
                             armed_ = false;
                             if (ec) return;
                             ProcessIncoming();
                           });
  }
  void ProcessIncoming() {
    if (!socket_) return;
    try {
      while (socket_->get(zmq::sockopt::events) & ZMQ_POLLIN) {
        zmq::message_t msg;
        if (!socket_->recv(msg, zmq::recv_flags::dontwait)) break;
        if (on_frame_) on_frame_({static_cast<const char*>(msg.data()), msg.size()});
      }
    } catch (const zmq::error_t& e) {
      logging::Default().Error("collector socket", {{"error", e.what()}});
    }
    Arm();
  }

  boost::asio::io_context& io_;
  CurveCredentials credentials_;
  OnFrame on_frame_;
  OnRefused on_refused_;
  zmq::context_t context_;
  std::unique_ptr<zmq::socket_t> socket_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> notify_fd_;
  bool armed_ = false;
  std::unique_ptr<zmq::socket_t> monitor_;  // PAIR: the socket's handshake events
  std::unique_ptr<boost::asio::posix::stream_descriptor> monitor_fd_;
  bool monitor_armed_ = false;
  int monitors_ = 0;  // each Connect's monitor has an address of its own
};

}  // namespace

std::unique_ptr<LinkTransport> MakeZmqLinkTransport(boost::asio::io_context& io,
                                                    CurveCredentials credentials) {
  return std::make_unique<ZmqLinkTransport>(io, std::move(credentials));
}

}  // namespace latch::agent
