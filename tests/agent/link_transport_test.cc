// The ZeroMQ link transport against a collector's socket played here: a
// CURVE ROUTER whose ZAP handler refuses every key, as the collector
// refuses an agent it has not enrolled. The agent is told why (issue 16:
// it only saw a silent collector and failed over, again and again).
#include "agent/link_transport.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on
#include <zmq.hpp>

namespace latch::agent {
namespace {

TEST(ZmqLinkTransport, ARefusedKeyIsToldNotTakenForSilence) {
  zmq::context_t ctx;
  zmq::socket_t zap(ctx, zmq::socket_type::rep);
  zap.bind("inproc://zeromq.zap.01");
  schema::CurveKeyPair server_key, agent_key;
  char pub[41], sec[41];
  ASSERT_EQ(zmq_curve_keypair(pub, sec), 0);
  server_key.public_z85 = pub;
  server_key.secret_z85 = sec;
  ASSERT_EQ(zmq_curve_keypair(pub, sec), 0);
  agent_key.public_z85 = pub;
  agent_key.secret_z85 = sec;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::curve_server, 1);
  router.set(zmq::sockopt::curve_secretkey, server_key.secret_z85);
  router.set(zmq::sockopt::zap_domain, "latch");
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  std::atomic<bool> stop{false};
  std::atomic<int> asked{0};
  std::thread refuser([&] {
    zap.set(zmq::sockopt::rcvtimeo, 100);
    while (!stop) {
      std::vector<zmq::message_t> frames;
      zmq::message_t f;
      if (!zap.recv(f)) continue;
      frames.push_back(std::move(f));
      while (frames.back().more()) {
        zmq::message_t g;
        (void)zap.recv(g);
        frames.push_back(std::move(g));
      }
      asked++;
      zap.send(zmq::buffer(frames[0].to_string()), zmq::send_flags::sndmore);  // version
      zap.send(zmq::buffer(frames[1].to_string()), zmq::send_flags::sndmore);  // request id
      zap.send(zmq::buffer(std::string("400")), zmq::send_flags::sndmore);
      zap.send(zmq::buffer(std::string("not enrolled")), zmq::send_flags::sndmore);
      zap.send(zmq::buffer(std::string()), zmq::send_flags::sndmore);
      zap.send(zmq::message_t(), zmq::send_flags::none);
    }
  });
  boost::asio::io_context io;
  auto transport = MakeZmqLinkTransport(io, {server_key.public_z85, agent_key});
  std::string refused;
  transport->SetReceiver([](std::string_view) {});
  transport->SetRefusalHandler([&](const std::string& why) { refused = why; });
  ASSERT_TRUE(transport->Connect(endpoint).ok());
  (void)transport->Send(std::string(8, '\0'));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (refused.empty() && std::chrono::steady_clock::now() < deadline) {
    io.run_for(std::chrono::milliseconds(50));
  }
  stop = true;
  refuser.join();
  EXPECT_GE(asked.load(), 1);
  EXPECT_NE(refused.find("refused this agent's key"), std::string::npos) << refused;
  EXPECT_NE(refused.find("400"), std::string::npos) << refused;
  transport.reset();
}

}  // namespace
}  // namespace latch::agent
