// Dispatcher: the collector's one event loop, and who may touch what it
// owns. One thread (the one that calls Run) runs every completion: agent
// messages, API requests and answers, timers. Other threads (the ledger's
// committer, index readers, webhook senders) hand work to it with Post and
// never touch loop-owned state themselves; code that must run on the loop
// says so with LATCH_ASSERT_ON_LOOP, checked in debug builds, in the spirit
// of Envoy's Event::Dispatcher::isThreadSafe().
#pragma once

#include <cassert>
#include <functional>
#include <memory>

namespace boost::asio {
class io_context;
}

namespace latch::collector {

class Dispatcher {
 public:
  Dispatcher();
  ~Dispatcher();
  Dispatcher(const Dispatcher&) = delete;
  Dispatcher& operator=(const Dispatcher&) = delete;

  // What asynchronous I/O (sockets, timers) is registered with.
  boost::asio::io_context& io() { return *io_; }
  // Runs `fn` on the loop thread, after what is queued before it; safe from
  // any thread (not from a signal handler).
  void Post(std::function<void()> fn);
  // Whether the calling thread is running the loop now.
  bool IsLoopThread() const;
  // Runs the loop on the calling thread until Exit().
  void Run();
  // Makes Run return once the completion being run (if any) ends; what is
  // still queued stays queued for Drain.
  void Exit();
  // Runs what is ready now, without waiting (after Run, at shutdown).
  void Drain();

 private:
  std::unique_ptr<boost::asio::io_context> io_;
};

}  // namespace latch::collector

// A debug-build check that loop-owned state is touched on the loop.
#define LATCH_ASSERT_ON_LOOP(dispatcher) assert((dispatcher).IsLoopThread())
