#include "agent/link_transport.h"

// Boost 1.74's Asio needs <utility> first (see agent_daemon.h).
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on
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
  // The descriptor belongs to the ZeroMQ socket: Asio must not close it.
  void Release() {
    if (notify_fd_) {
      (void)notify_fd_->release();
      notify_fd_.reset();
    }
    armed_ = false;
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
  zmq::context_t context_;
  std::unique_ptr<zmq::socket_t> socket_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> notify_fd_;
  bool armed_ = false;
};

}  // namespace

std::unique_ptr<LinkTransport> MakeZmqLinkTransport(boost::asio::io_context& io,
                                                    CurveCredentials credentials) {
  return std::make_unique<ZmqLinkTransport>(io, std::move(credentials));
}

}  // namespace latch::agent
