#include "agent/round_trip.h"

#include <algorithm>

namespace latch::agent {

void RoundTripEstimator::Sample(Duration rtt) {
  if (rtt < Duration(0)) rtt = Duration(0);
  if (!has_samples_) {
    smoothed_ = rtt;
    variation_ = rtt / 2;
    has_samples_ = true;
  } else {
    Duration error = smoothed_ > rtt ? smoothed_ - rtt : rtt - smoothed_;
    variation_ = (variation_ * 3 + error) / 4;
    smoothed_ = (smoothed_ * 7 + rtt) / 8;
  }
  backoff_shift_ = 0;
}

void RoundTripEstimator::BackOff() { backoff_shift_ = std::min(backoff_shift_ + 1, 6); }

RoundTripEstimator::Duration RoundTripEstimator::timeout() const {
  Duration base = has_samples_ ? smoothed_ + variation_ * 4 : floor_;
  base = std::clamp(base, floor_, ceiling_);
  return std::min(ceiling_, base * (1 << backoff_shift_));
}

}  // namespace latch::agent
