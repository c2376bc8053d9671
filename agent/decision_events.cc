#include "agent/decision_events.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace latch::agent {

Status DecisionEventReader::Create(int events_map_fd, Handler handler,
                                   std::unique_ptr<DecisionEventReader>* out) {
  std::unique_ptr<DecisionEventReader> r(new DecisionEventReader());
  r->handler_ = std::move(handler);
  r->rb_ = ring_buffer__new(events_map_fd, &DecisionEventReader::OnSample, r.get(), nullptr);
  if (r->rb_ == nullptr) return Status::FromErrno("opening the decision ring buffer", errno);
  *out = std::move(r);
  return Status::Ok();
}

DecisionEventReader::~DecisionEventReader() { ring_buffer__free(rb_); }

int DecisionEventReader::epoll_fd() const { return ring_buffer__epoll_fd(rb_); }

int DecisionEventReader::OnSample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<DecisionEventReader*>(ctx);
  if (size < sizeof(latch_decision_event)) {
    // The kernel and this binary disagree on the layout: count and say so.
    ++self->malformed_;
    std::fprintf(stderr,
                 "latch-agent: decision event of %zu bytes, expected %zu; dropped and counted\n",
                 size, sizeof(latch_decision_event));
    return 0;
  }
  latch_decision_event e;
  std::memcpy(&e, data, sizeof(e));
  self->handler_(e);
  return 0;
}

Status DecisionEventReader::Consume(int* handled) {
  int n = ring_buffer__consume(rb_);
  if (n < 0) return Status::FromErrno("reading decision events", -n);
  *handled = n;
  return Status::Ok();
}

Status DecisionEventReader::Poll(int timeout_ms, int* handled) {
  int n = ring_buffer__poll(rb_, timeout_ms);
  if (n < 0 && n != -EINTR) return Status::FromErrno("waiting for decision events", -n);
  *handled = n < 0 ? 0 : n;
  return Status::Ok();
}

}  // namespace latch::agent
