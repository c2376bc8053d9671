// RoundTripEstimator: how long a batch takes to come back as a receipt on
// this link, learnt from the receipts themselves (the smoothed round trip and
// its variation, as TCP's retransmission timer does it, RFC 6298), and the
// receipt timeout that follows: the smoothed time plus four variations, never
// below the configured floor nor above the ceiling. On a fast link the floor
// rules; on a slow or lossy one the timeout stretches instead of resending
// what is merely late (issue 13.5).
#pragma once

#include <chrono>

namespace latch::agent {

class RoundTripEstimator {
 public:
  using Duration = std::chrono::microseconds;

  RoundTripEstimator(Duration floor, Duration ceiling) : floor_(floor), ceiling_(ceiling) {}

  // One batch's time from send to the receipt that covered it.
  void Sample(Duration round_trip);
  // A receipt timeout passed with nothing back: the next one waits twice as
  // long (up to the ceiling) until a sample comes in again.
  void BackOff();

  Duration timeout() const;
  Duration smoothed() const { return smoothed_; }
  bool has_samples() const { return has_samples_; }

 private:
  Duration floor_, ceiling_;
  Duration smoothed_{0}, variation_{0};
  int backoff_shift_ = 0;
  bool has_samples_ = false;
};

}  // namespace latch::agent
