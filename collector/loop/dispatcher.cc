#include "collector/loop/dispatcher.h"

// Boost 1.74's Asio needs <utility> first (see agent_daemon.h).
#include <utility>
// clang-format off
#include <boost/asio.hpp>
// clang-format on

namespace latch::collector {

Dispatcher::Dispatcher() : io_(std::make_unique<boost::asio::io_context>(1)) {}

Dispatcher::~Dispatcher() = default;

void Dispatcher::Post(std::function<void()> fn) { boost::asio::post(*io_, std::move(fn)); }

bool Dispatcher::IsLoopThread() const { return io_->get_executor().running_in_this_thread(); }

void Dispatcher::Run() {
  // Work guard: the loop waits for posts even with no I/O pending.
  auto guard = boost::asio::make_work_guard(*io_);
  io_->restart();
  io_->run();
}

void Dispatcher::Exit() { io_->stop(); }

void Dispatcher::Drain() {
  io_->restart();
  io_->poll();
}

}  // namespace latch::collector
