// The Prometheus adapter: the metrics a scripted scenario leaves, as the
// text exposition format shows them.
#include "leasehold/observers/prometheus.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <prometheus/text_serializer.h>

#include "leasehold/backends/memory.h"
#include "leasehold/lease.h"

namespace leasehold {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;

class PrometheusObserverTest : public ::testing::Test {
 protected:
  std::unique_ptr<Lease> Make(const std::string& name, const std::string& owner) {
    auto lease = Lease::Create(store_, {.name = name,
                                        .owner = owner,
                                        .ttl = seconds(3),
                                        .drift_allowance = Duration::zero(),
                                        .observer = metrics_});
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    return std::move(*lease);
  }
  std::string Text() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }
  void TearDown() override {
    store_->SetFaults({});
    rt_->RunFor(std::chrono::minutes(1));
  }

  std::shared_ptr<SimulatedRuntime> rt_ = SimulatedRuntime::Create();
  std::shared_ptr<MemoryStore> store_ = MemoryStore::Create(rt_);
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  std::shared_ptr<PrometheusObserver> metrics_ = std::make_shared<PrometheusObserver>(registry_);
};

TEST_F(PrometheusObserverTest, ALeasesMetricsExistAtZeroFromItsCreation) {
  auto a = Make("jobs", "a");
  const std::string text = Text();
  EXPECT_THAT(text, HasSubstr("leasehold_acquire_attempts_total{lease=\"jobs\"} 0"));
  EXPECT_THAT(text, HasSubstr("leasehold_acquires_total{lease=\"jobs\",outcome=\"acquired\"} 0"));
  EXPECT_THAT(text, HasSubstr("leasehold_losses_total{lease=\"jobs\",reason=\"taken_over\"} 0"));
  EXPECT_THAT(text, HasSubstr("leasehold_held{lease=\"jobs\"} 0"));
  EXPECT_THAT(text, HasSubstr("leader_election_master_status{name=\"jobs\"} 0"));
  EXPECT_THAT(text, HasSubstr("# TYPE leasehold_renewal_duration_seconds histogram"));
}

TEST_F(PrometheusObserverTest, AScriptedLifeIsCountedExactly) {
  auto a = Make("jobs", "a");
  auto b = Make("jobs", "b");
  ASSERT_TRUE(*a->Acquire());
  EXPECT_FALSE(*b->Acquire({.attempts = 2}));
  rt_->RunFor(milliseconds(2500));  // two renewals
  {
    const std::string text = Text();
    EXPECT_THAT(text, HasSubstr("leasehold_acquire_attempts_total{lease=\"jobs\"} 3"));
    EXPECT_THAT(text, HasSubstr("leasehold_acquires_total{lease=\"jobs\",outcome=\"acquired\"} 1"));
    EXPECT_THAT(text,
                HasSubstr("leasehold_acquires_total{lease=\"jobs\",outcome=\"contended\"} 1"));
    EXPECT_THAT(text, HasSubstr("leasehold_renewals_total{lease=\"jobs\",outcome=\"ok\"} 2"));
    EXPECT_THAT(text, HasSubstr("leasehold_renewal_duration_seconds_count{lease=\"jobs\"} 2"));
    EXPECT_THAT(text, HasSubstr("leasehold_deadline_remaining_seconds{lease=\"jobs\"} 3"));
    EXPECT_THAT(text, HasSubstr("leasehold_held{lease=\"jobs\"} 1"));
    EXPECT_THAT(text, HasSubstr("leader_election_master_status{name=\"jobs\"} 1"));
  }
  // Taken over by a foreign writer: lost at the next renewal.
  store_->TakeOver("jobs", "x", seconds(30));
  rt_->RunFor(seconds(2));
  EXPECT_FALSE(a->CheckAlive());
  const std::string text = Text();
  EXPECT_THAT(text, HasSubstr("leasehold_losses_total{lease=\"jobs\",reason=\"taken_over\"} 1"));
  EXPECT_THAT(text, HasSubstr("leasehold_losses_total{lease=\"jobs\",reason=\"expired\"} 0"));
  EXPECT_THAT(text, HasSubstr("leasehold_renewals_total{lease=\"jobs\",outcome=\"failed\"} 1"));
  EXPECT_THAT(text, HasSubstr("leasehold_held{lease=\"jobs\"} 0"));
  EXPECT_THAT(text, HasSubstr("leader_election_master_status{name=\"jobs\"} 0"));
  EXPECT_THAT(text, Not(HasSubstr("releases_total{lease=\"jobs\",outcome=\"confirmed\"} 1")));
}

TEST_F(PrometheusObserverTest, ReleasesAreCountedByOutcome) {
  auto a = Make("jobs", "a");
  ASSERT_TRUE(*a->Acquire());
  ASSERT_TRUE(a->Release().ok());
  ASSERT_TRUE(*a->Acquire());
  MemoryFaults f;
  f.release.unavailable = true;
  store_->SetFaults(f);
  EXPECT_FALSE(a->Release().ok());
  const std::string text = Text();
  EXPECT_THAT(text, HasSubstr("leasehold_releases_total{lease=\"jobs\",outcome=\"confirmed\"} 1"));
  EXPECT_THAT(text,
              HasSubstr("leasehold_releases_total{lease=\"jobs\",outcome=\"unconfirmed\"} 1"));
  EXPECT_THAT(text, HasSubstr("leasehold_acquires_total{lease=\"jobs\",outcome=\"acquired\"} 2"));
  EXPECT_THAT(text, HasSubstr("leasehold_held{lease=\"jobs\"} 0"));
}

TEST_F(PrometheusObserverTest, LeasesAreLabelledApartAndMayOutliveTheObserver) {
  auto a = Make("one", "a");
  auto b = Make("two", "a");
  metrics_.reset();  // the leases keep their metrics
  ASSERT_TRUE(*a->Acquire());
  const std::string text = Text();
  EXPECT_THAT(text, HasSubstr("leasehold_held{lease=\"one\"} 1"));
  EXPECT_THAT(text, HasSubstr("leasehold_held{lease=\"two\"} 0"));
}

TEST_F(PrometheusObserverTest, EventsByNameFindTheSameMetrics) {
  auto a = Make("jobs", "a");
  metrics_->AcquireAttempted("jobs");
  metrics_->Lost("jobs", LossReason::kBackendError);
  const std::string text = Text();
  EXPECT_THAT(text, HasSubstr("leasehold_acquire_attempts_total{lease=\"jobs\"} 1"));
  EXPECT_THAT(text, HasSubstr("leasehold_losses_total{lease=\"jobs\",reason=\"backend_error\"} 1"));
}

}  // namespace
}  // namespace leasehold
