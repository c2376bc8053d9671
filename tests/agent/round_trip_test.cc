// The receipt timeout learnt from the link (issue 13.5).
#include "agent/round_trip.h"

#include <gtest/gtest.h>

namespace latch::agent {
namespace {

using std::chrono::milliseconds;
using Duration = RoundTripEstimator::Duration;

TEST(RoundTripEstimator, AFastLinkKeepsTheFloor) {
  RoundTripEstimator e(milliseconds(3000), milliseconds(60000));
  EXPECT_EQ(e.timeout(), milliseconds(3000));  // nothing learnt yet
  for (int i = 0; i < 20; ++i) e.Sample(milliseconds(5));
  EXPECT_EQ(e.timeout(), milliseconds(3000));
}

TEST(RoundTripEstimator, ASlowOrJitteryLinkStretchesItWithinTheCeiling) {
  RoundTripEstimator e(milliseconds(3000), milliseconds(60000));
  for (int i = 0; i < 20; ++i) e.Sample(milliseconds(i % 2 ? 1000 : 4000));
  // Smoothed about 2.5 s, varying by about 1.5 s: well past the floor.
  EXPECT_GT(e.timeout(), milliseconds(6000));
  EXPECT_LT(e.timeout(), milliseconds(12000));
  for (int i = 0; i < 50; ++i) e.Sample(milliseconds(500000));
  EXPECT_EQ(e.timeout(), milliseconds(60000));
}

TEST(RoundTripEstimator, EachTimeoutDoublesTheNextUntilASampleComes) {
  RoundTripEstimator e(milliseconds(3000), milliseconds(60000));
  e.BackOff();
  EXPECT_EQ(e.timeout(), milliseconds(6000));
  e.BackOff();
  EXPECT_EQ(e.timeout(), milliseconds(12000));
  for (int i = 0; i < 10; ++i) e.BackOff();
  EXPECT_EQ(e.timeout(), milliseconds(60000));
  e.Sample(milliseconds(10));
  EXPECT_EQ(e.timeout(), milliseconds(3000));
}

}  // namespace
}  // namespace latch::agent
