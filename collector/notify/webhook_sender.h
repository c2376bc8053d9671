// WebhookSender: delivers workflow notifications (new requests, reviews,
// decisions) as JSON POSTs to configured URLs, from its own thread, with
// retries. Delivery is at least once while the collector runs: each message
// is retried with growing pauses (0.5 s doubling, up to `max_attempts`); one
// that still fails, or that finds the queue full, is logged and counted,
// never silently dropped. With a secret, each POST carries
// X-Latch-Signature: sha256=<hex HMAC-SHA256 of the body>.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "lib/status/status.h"
#include "lib/sync/mutex.h"

namespace latch::notify {

struct WebhookTarget {
  std::string url;     // http://HOST[:PORT]/PATH or https://...
  std::string ca;      // https: certificate file to verify the server with (default: system)
  std::string secret;  // optional: signs each body
  std::set<std::string> events;  // which notification types; empty: all
};

struct WebhookCounters {
  std::atomic<uint64_t> delivered{0};
  std::atomic<uint64_t> retried{0};
  std::atomic<uint64_t> failed{0};   // gave up after max_attempts
  std::atomic<uint64_t> dropped{0};  // the queue was full
};

class WebhookSender {
 public:
  // InvalidArgument for a URL it cannot use.
  static Status ParseUrl(const std::string& url, bool* tls, std::string* host, std::string* port,
                         std::string* path);

  WebhookSender(std::vector<WebhookTarget> targets, int max_attempts = 8, size_t max_queue = 10000);
  ~WebhookSender();
  WebhookSender(const WebhookSender&) = delete;
  WebhookSender& operator=(const WebhookSender&) = delete;

  // Queues `json` for every target that takes `type`; never blocks.
  void Send(const std::string& type, const std::string& json);
  const WebhookCounters& counters() const { return counters_; }
  bool enabled() const { return !targets_.empty(); }

 private:
  struct Message {
    size_t target;
    std::string body;
    int attempts = 0;
    std::chrono::steady_clock::time_point due;
  };
  void Loop();
  // One POST; OK on a 2xx answer.
  Status Post(const WebhookTarget& target, const std::string& body);

  std::vector<WebhookTarget> targets_;
  int max_attempts_;
  size_t max_queue_;
  WebhookCounters counters_;
  Mutex mu_;
  CondVar wake_;
  std::deque<Message> queue_ LATCH_GUARDED_BY(mu_);
  bool stop_ LATCH_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace latch::notify
