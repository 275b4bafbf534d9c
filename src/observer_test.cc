// The observer seam (observer.h): what a Lease reports, counted exactly for
// scripted scenarios on the memory store and the simulated clock.
#include "leasehold/observer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <vector>

#include "leasehold/backends/memory.h"
#include "leasehold/forwarding_store.h"
#include "leasehold/lease.h"

namespace leasehold {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Outcome = LeaseObserver::AcquireOutcome;

// Records every call as a line, and counts them.
class Recorder final : public LeaseObserver {
 public:
  void AcquireAttempted(std::string_view lease) override { Add(lease, "attempt"); }
  void AcquireFinished(std::string_view lease, Outcome outcome, Duration elapsed) override {
    Add(lease, "acquire " + std::string(AcquireOutcomeName(outcome)));
    std::lock_guard lock(mu_);
    last_elapsed_ = elapsed;
  }
  void RenewalAnswered(std::string_view lease, bool ok, Duration latency,
                       Duration time_left) override {
    Add(lease, ok ? "renewed" : "renewal failed");
    std::lock_guard lock(mu_);
    latencies_.push_back(latency);
    time_left_.push_back(time_left);
  }
  void Lost(std::string_view lease, LossReason reason) override {
    Add(lease, "lost " + std::string(LossReasonName(reason)));
  }
  void Released(std::string_view lease, bool confirmed) override {
    Add(lease, confirmed ? "released" : "release unconfirmed");
  }
  void HeldChanged(std::string_view lease, bool held) override {
    Add(lease, held ? "held" : "not held");
  }

  int count(const std::string& what) const {
    std::lock_guard lock(mu_);
    auto it = counts_.find(what);
    return it == counts_.end() ? 0 : it->second;
  }
  std::vector<std::string> lines() const {
    std::lock_guard lock(mu_);
    return lines_;
  }
  Duration last_elapsed() const {
    std::lock_guard lock(mu_);
    return last_elapsed_;
  }
  std::vector<Duration> latencies() const {
    std::lock_guard lock(mu_);
    return latencies_;
  }
  std::vector<Duration> time_left() const {
    std::lock_guard lock(mu_);
    return time_left_;
  }

 private:
  void Add(std::string_view lease, const std::string& what) {
    std::lock_guard lock(mu_);
    lines_.push_back(std::string(lease) + ": " + what);
    ++counts_[what];
  }
  mutable std::mutex mu_;
  std::vector<std::string> lines_;
  std::map<std::string, int> counts_;
  Duration last_elapsed_{0};
  std::vector<Duration> latencies_, time_left_;
};

// Answers renewals with a chosen error instead of asking the store.
class RenewErrorStore final : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  void FailRenewalsWith(Status s) {
    std::lock_guard lock(mu_);
    error_ = std::move(s);
  }
  void Renew(std::vector<RenewRequest> batch, RenewCallback done) override {
    Status error;
    {
      std::lock_guard lock(mu_);
      error = error_;
    }
    if (error.ok()) return ForwardingStore::Renew(std::move(batch), std::move(done));
    done(std::vector<Result<RenewOutcome>>(batch.size(), error));
  }

 private:
  std::mutex mu_;
  Status error_;
};

class ObserverTest : public ::testing::Test {
 protected:
  std::unique_ptr<Lease> Make(const std::string& owner, std::shared_ptr<Store> store = nullptr) {
    auto lease = Lease::Create(store ? store : store_, {.name = "job",
                                                        .owner = owner,
                                                        .ttl = seconds(3),
                                                        .drift_allowance = Duration::zero(),
                                                        .observer = recorder_});
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    return std::move(*lease);
  }
  void TearDown() override {
    store_->SetFaults({});
    rt_->RunFor(std::chrono::minutes(1));
  }
  std::string Lines() const {
    std::string out;
    for (const auto& l : recorder_->lines()) out += l + "\n";
    return out;
  }

  std::shared_ptr<SimulatedRuntime> rt_ = SimulatedRuntime::Create();
  std::shared_ptr<MemoryStore> store_ = MemoryStore::Create(rt_);
  std::shared_ptr<Recorder> recorder_ = std::make_shared<Recorder>();
};

TEST_F(ObserverTest, AnAcquireRenewalsAndAReleaseAreReportedInOrder) {
  auto a = Make("a");
  ASSERT_TRUE(*a->Acquire());
  rt_->RunFor(milliseconds(2500));  // renewals every second
  ASSERT_TRUE(a->Release().ok());
  EXPECT_THAT(
      recorder_->lines(),
      ::testing::ElementsAre("job: attempt", "job: held", "job: acquire acquired", "job: renewed",
                             "job: renewed", "job: not held", "job: released"));
  // The simulated store answers at once: no latency, and each renewal
  // leaves a whole TTL.
  for (Duration d : recorder_->latencies()) EXPECT_EQ(d, Duration::zero());
  for (Duration d : recorder_->time_left()) EXPECT_EQ(d, seconds(3));
}

TEST_F(ObserverTest, ContentionIsOneAttemptPerTryAndOneOutcome) {
  auto a = Make("a");
  auto b = Make("b");
  ASSERT_TRUE(*a->Acquire());
  EXPECT_FALSE(*b->Acquire({.attempts = 3}));
  EXPECT_EQ(recorder_->count("attempt"), 1 + 3);
  EXPECT_EQ(recorder_->count("acquire acquired"), 1);
  EXPECT_EQ(recorder_->count("acquire contended"), 1);
  EXPECT_EQ(recorder_->count("held"), 1);
  // Two retry delays (100 ms) between the three attempts.
  EXPECT_EQ(recorder_->last_elapsed(), milliseconds(200));
  // Already held: answered locally, an outcome without an attempt.
  EXPECT_TRUE(*a->Acquire());
  EXPECT_EQ(recorder_->count("attempt"), 4);
  EXPECT_EQ(recorder_->count("acquire acquired"), 2);
}

TEST_F(ObserverTest, AnAcquireThatFailsIsReportedFailed) {
  MemoryFaults f;
  f.acquire.unavailable = true;
  store_->SetFaults(f);
  auto a = Make("a");
  EXPECT_FALSE(a->Acquire({.attempts = 2}).ok());
  EXPECT_EQ(recorder_->count("attempt"), 2);
  EXPECT_EQ(recorder_->count("acquire failed"), 1);
  EXPECT_EQ(recorder_->count("held"), 0);
}

TEST_F(ObserverTest, ARetriedRenewalIsReportedFailedThenRenewed) {
  auto a = Make("a");
  ASSERT_TRUE(*a->Acquire());
  MemoryFaults f;
  f.renew.fail_next = 2;
  store_->SetFaults(f);
  rt_->RunFor(milliseconds(1500));
  EXPECT_TRUE(a->CheckAlive());
  EXPECT_EQ(recorder_->count("renewal failed"), 2) << Lines();
  EXPECT_EQ(recorder_->count("renewed"), 1) << Lines();
  EXPECT_EQ(recorder_->count("lost expired"), 0);
  // The failures left less than a TTL; the success a whole one again.
  const auto left = recorder_->time_left();
  ASSERT_EQ(left.size(), 3u);
  EXPECT_LT(left[0], seconds(3));
  EXPECT_LT(left[1], left[0]);
  EXPECT_EQ(left[2], seconds(3));
}

TEST_F(ObserverTest, EachLossReasonIsReportedOnceWithTheEndOfTheTenure) {
  struct Case {
    const char* what;
    std::function<void(RenewErrorStore&)> cause;
  };
  const std::vector<Case> cases = {
      {"lost expired",
       [&](RenewErrorStore&) {
         MemoryFaults f;
         f.renew.unavailable = true;
         store_->SetFaults(f);
       }},
      {"lost taken over", [&](RenewErrorStore&) { store_->TakeOver("job", "x", seconds(30)); }},
      {"lost deleted", [&](RenewErrorStore&) { store_->Delete("job"); }},
      {"lost unauthorized",
       [](RenewErrorStore& s) { s.FailRenewalsWith(UnauthenticatedError("token expired")); }},
      {"lost backend error",
       [](RenewErrorStore& s) { s.FailRenewalsWith(DataLossError("not our record")); }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    recorder_ = std::make_shared<Recorder>();
    store_ = MemoryStore::Create(rt_);
    auto store = std::make_shared<RenewErrorStore>(store_);
    auto a = Make("a", store);
    ASSERT_TRUE(*a->Acquire());
    c.cause(*store);
    rt_->RunFor(seconds(5));
    EXPECT_FALSE(a->CheckAlive());
    EXPECT_EQ(recorder_->count(c.what), 1) << Lines();
    EXPECT_EQ(recorder_->count("not held"), 1) << Lines();
    EXPECT_EQ(recorder_->lines().back(), "job: not held") << Lines();
    // A release after the loss has nothing to release.
    EXPECT_TRUE(a->Release().ok());
    EXPECT_EQ(recorder_->count("released"), 0);
    store_->SetFaults({});
  }
}

TEST_F(ObserverTest, AReleaseTheStoreDidNotConfirmIsReportedSo) {
  auto a = Make("a");
  ASSERT_TRUE(*a->Acquire());
  MemoryFaults f;
  f.release.unavailable = true;
  store_->SetFaults(f);
  EXPECT_FALSE(a->Release().ok());
  EXPECT_EQ(recorder_->count("not held"), 1);
  EXPECT_EQ(recorder_->count("release unconfirmed"), 1);
  EXPECT_EQ(recorder_->count("released"), 0);
}

TEST_F(ObserverTest, DestroyingAHeldLeaseEndsItsTenureForTheObserver) {
  auto a = Make("a");
  ASSERT_TRUE(*a->Acquire());
  a.reset();
  rt_->RunFor(seconds(1));
  EXPECT_EQ(recorder_->count("not held"), 1);
  EXPECT_EQ(recorder_->count("released"), 1);
}

TEST(AcquireOutcomeNameTest, NamesEachOutcome) {
  EXPECT_EQ(AcquireOutcomeName(Outcome::kAcquired), "acquired");
  EXPECT_EQ(AcquireOutcomeName(Outcome::kContended), "contended");
  EXPECT_EQ(AcquireOutcomeName(Outcome::kFailed), "failed");
}

}  // namespace
}  // namespace leasehold
