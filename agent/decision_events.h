// Reads decision events from the guard's ring buffer. epoll_fd() is what an
// event loop waits on; Consume() then drains what is there without blocking.
#pragma once

#include <functional>
#include <memory>

#include "guard_abi.h"
#include "tlog/status.h"

struct ring_buffer;

namespace latch::agent {

class DecisionEventReader {
 public:
  using Handler = std::function<void(const latch_decision_event&)>;
  static Status Create(int events_map_fd, Handler handler,
                       std::unique_ptr<DecisionEventReader>* out);
  ~DecisionEventReader();

  int epoll_fd() const;
  // Handles every event available now; returns how many.
  Status Consume(int* handled);
  // Waits up to timeout_ms for events, then handles them.
  Status Poll(int timeout_ms, int* handled);
  // Records shorter than an event: a layout mismatch; should not happen.
  uint64_t malformed() const { return malformed_; }

 private:
  DecisionEventReader() = default;
  static int OnSample(void* ctx, void* data, size_t size);

  ring_buffer* rb_ = nullptr;
  Handler handler_;
  uint64_t malformed_ = 0;
};

}  // namespace latch::agent
