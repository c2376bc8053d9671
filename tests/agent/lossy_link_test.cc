// Issue 13.5: the channel on a bad link. A link that drops 20% of packets and
// delays the rest 100 ms each way (a user-space relay between two network
// namespaces the test makes), records made at a steady rate: every record
// reaches the ledger once, and the agent does not resend what the collector
// already has. Before, the agent reset its session dozens of times a minute
// ("no receipt in time" after a fixed 3 s; "consistency proof from size X"
// whenever receipts crossed a new Hello) and the collector received about six
// records for each one made.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "kernel_sandbox.h"
#include "lossy_delivery.h"

namespace latch::testing {
namespace {

TEST(LossyLinkTest, EveryRecordArrivesOnceWithoutResendingWhatTheCollectorHas) {
  LATCH_SKIP_UNLESS_KERNEL_TEST_CAN_RUN();  // namespaces and TUN devices need root
  char tmpl[] = "/tmp/latch-lossy-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  LossyDeliveryResult r = RunLossyDelivery(dir, /*seconds=*/8, /*rate=*/2000, {},
                                           /*drain_limit_secs=*/120);
  std::filesystem::remove_all(dir);
  ASSERT_EQ(r.error, "");
  std::string sessions;  // what a failure needs to be understood
  for (const auto& [why, n] : r.sessions_by_reason)
    sessions += why + " x" + std::to_string(n) + "; ";
  EXPECT_EQ(r.acknowledged, r.made);
  EXPECT_EQ(r.appended, r.made);  // once each
  EXPECT_GT(r.packets_dropped, 0u);
  // Resends: a small fraction at most (before: ~5 duplicates per record).
  EXPECT_LT(r.duplicate, r.made / 4)
      << "duplicates " << r.duplicate << " of " << r.made << "; sessions: " << sessions;
  EXPECT_EQ(r.sessions_by_reason.count("consistency proof from another size"), 0u);
  EXPECT_LE(r.link.sessions, 6u) << sessions;  // the first, and a few the link's worst stalls end
}

}  // namespace
}  // namespace latch::testing
