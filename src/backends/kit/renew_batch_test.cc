#include "kit/renew_batch.h"

#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "kit/lease_label.h"

namespace leasehold::kit {
namespace {

using namespace std::chrono_literals;

TEST(LeaseLabelTest, QuotesTheNameAsItIs) {
  EXPECT_EQ(LeaseLabel("jobs"), "lease \"jobs\"");
  EXPECT_EQ(LeaseLabel(""), "lease \"\"");
  EXPECT_EQ(LeaseLabel("a/b \"c\""), "lease \"a/b \"c\"\"");
}

TEST(RenewBatchTest, TheBatchAnswersByItsEarliestDeadline) {
  const TimePoint t0{};
  std::vector<RenewRequest> batch(3);
  batch[0].deadline = t0 + 3s;
  batch[1].deadline = t0 + 1s;
  batch[2].deadline = t0 + 2s;
  EXPECT_EQ(EarliestDeadline(batch), t0 + 1s);
  EXPECT_EQ(EarliestDeadline({}), TimePoint::max());
}

TEST(RenewBatchTest, AFailedRoundTripFailsEveryRequest) {
  const auto results = AllFailed(3, UnavailableError("store: down"));
  ASSERT_EQ(results.size(), 3u);
  for (const auto& r : results) {
    EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
    EXPECT_EQ(r.status().message(), "store: down");
  }
  EXPECT_TRUE(AllFailed(0, UnavailableError("x")).empty());
}

}  // namespace
}  // namespace leasehold::kit
