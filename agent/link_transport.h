// LinkTransport: how the CollectorLink reaches a collector, and nothing
// else. The link decides (sessions, batches, receipts, alarms); the
// transport carries frames. ZmqLinkTransport is the real one (a CURVE DEALER
// socket waited on through its ZMQ_FD on the agent's Asio loop); a test
// gives the link one of its own and plays the collector without a socket
// (tests/agent/collector_link_test.cc).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "lib/status/status.h"
#include "schemas/curve_key.h"

namespace boost::asio {
class io_context;
}

namespace latch::agent {

class LinkTransport {
 public:
  // A frame from the collector, handed over on the loop.
  using OnFrame = std::function<void(std::string_view frame)>;
  virtual ~LinkTransport() = default;
  // Where received frames go; set once, before Connect.
  virtual void SetReceiver(OnFrame on_frame) = 0;
  // Told why, when the collector refuses this agent (its key is not
  // enrolled there); on the loop. Optional: a transport may never call it.
  using OnRefused = std::function<void(const std::string& why)>;
  virtual void SetRefusalHandler(OnRefused on_refused) { (void)on_refused; }
  // Drops any connection and connects to `endpoint`; frames sent before it
  // is up are queued (a few).
  virtual Status Connect(const std::string& endpoint) = 0;
  // Queues one frame on the connection without blocking; false if it could
  // not be queued (no connection, or its queue is full).
  virtual bool Send(const std::string& frame) = 0;
  // One frame to another endpoint, best effort, outside the connection: an
  // alarm every collector should hear.
  virtual void SendOnce(const std::string& endpoint, const std::string& frame) = 0;
};

// The CURVE keys a ZeroMQ transport authenticates with.
struct CurveCredentials {
  std::string server_public_key;  // Z85
  schema::CurveKeyPair key;       // this agent's
};

std::unique_ptr<LinkTransport> MakeZmqLinkTransport(boost::asio::io_context& io,
                                                    CurveCredentials credentials);

}  // namespace latch::agent
