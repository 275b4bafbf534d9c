// Engine behaviours beyond the conformance suite: the orphan rule, renewal
// batching, deadline arithmetic details, refusal to block a loop thread, and a
// smoke test on the real threaded runtime.
#include "leasehold/lease.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "leasehold/backends/memory.h"
#include "leasehold/forwarding_store.h"

namespace leasehold {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

class LeaseEngineTest : public ::testing::Test {
 protected:
  std::unique_ptr<Lease> Make(const std::string& owner, LeaseOptions o = {}) {
    if (o.name.empty()) o.name = "job";
    o.owner = owner;
    if (o.ttl == Duration::zero()) o.ttl = seconds(3);
    auto lease = Lease::Create(store_, o);
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    return std::move(*lease);
  }
  // Operations still in flight when a test ends (injected latency) hold the
  // runtime through their callbacks; let them land so nothing outlives the
  // test. Assertions are all made before this.
  void TearDown() override {
    store_->SetFaults({});
    rt_->RunFor(std::chrono::minutes(1));
  }

  std::shared_ptr<SimulatedRuntime> rt_ = SimulatedRuntime::Create();
  std::shared_ptr<MemoryStore> store_ = MemoryStore::Create(rt_);
};

TEST_F(LeaseEngineTest, DeadlineIsSendTimePlusTtlMinusDrift) {
  auto a = Make("a", {.ttl = seconds(3), .drift_allowance = milliseconds(60)});
  const TimePoint sent = rt_->clock().Now();
  auto token = a->AcquireWithToken();
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  ASSERT_TRUE(token->has_value());
  EXPECT_EQ(a->safe_deadline(), sent + seconds(3) - milliseconds(60));
}

TEST_F(LeaseEngineTest, DeadlineIsAnchoredAtTheSendTimeNotTheAnswerTime) {
  MemoryFaults f;
  f.acquire.latency = milliseconds(400);
  store_->SetFaults(f);
  auto a = Make("a", {.ttl = seconds(3), .drift_allowance = Duration::zero()});
  const TimePoint sent = rt_->clock().Now();
  ASSERT_TRUE(*a->Acquire());
  EXPECT_EQ(rt_->clock().Now(), sent + milliseconds(400));
  EXPECT_EQ(a->safe_deadline(), sent + seconds(3));
}

TEST_F(LeaseEngineTest, HeldLeaseStaysAliveAcrossManyTtls) {
  auto a = Make("a");
  ASSERT_TRUE(*a->Acquire());
  rt_->RunFor(seconds(60));
  EXPECT_TRUE(a->CheckAlive());
  auto b = Make("b");
  EXPECT_FALSE(*b->Acquire());
}

TEST_F(LeaseEngineTest, RenewalsThatFallDueTogetherShareOneStoreCall) {
  std::vector<std::unique_ptr<Lease>> leases;
  for (int i = 0; i < 50; ++i) {
    leases.push_back(Make("a", {.name = "lease-" + std::to_string(i)}));
    ASSERT_TRUE(*leases.back()->Acquire());
  }
  rt_->RunFor(seconds(10));
  const auto stats = store_->stats();
  EXPECT_GE(stats.renewed_leases, 50u * 9);
  EXPECT_LE(stats.renew_calls * 10, stats.renewed_leases);
}

// One scheduler per underlying store: leases reached through decorators share
// its wake-ups (no runtime timer per decorator), yet each lease's renewals
// still go through the decorator it was created on.
TEST_F(LeaseEngineTest, DecoratorsShareWakeUpsYetEachLeaseRenewsThroughItsOwn) {
  class Recording final : public ForwardingStore {
   public:
    using ForwardingStore::ForwardingStore;
    void Renew(std::vector<RenewRequest> batch, RenewCallback done) override {
      for (const RenewRequest& r : batch) names.push_back(r.name);
      ForwardingStore::Renew(std::move(batch), std::move(done));
    }
    std::vector<std::string> names;
  };
  std::vector<std::unique_ptr<Lease>> leases;
  for (int i = 0; i < 4; ++i) {
    leases.push_back(Make("a", {.name = "direct-" + std::to_string(i)}));
    ASSERT_TRUE(*leases.back()->Acquire());
  }
  const size_t timers_direct = rt_->pending_timers();
  auto left = std::make_shared<Recording>(store_);
  auto right = std::make_shared<Recording>(std::make_shared<Recording>(store_));
  for (const auto& [decorator, prefix] :
       {std::pair{std::shared_ptr<Store>(left), "left-"}, {right, "right-"}}) {
    for (int i = 0; i < 4; ++i) {
      auto lease = Lease::Create(
          decorator, {.name = prefix + std::to_string(i), .owner = "a", .ttl = seconds(3)});
      ASSERT_TRUE(lease.ok()) << lease.status().ToString();
      leases.push_back(std::move(*lease));
      ASSERT_TRUE(*leases.back()->Acquire());
    }
  }
  EXPECT_EQ(rt_->pending_timers(), timers_direct) << "a decorator armed wake-ups of its own";
  rt_->RunFor(seconds(10));
  for (const auto& lease : leases) EXPECT_TRUE(lease->CheckAlive()) << lease->name();
  ASSERT_GE(left->names.size(), 4u * 9);
  ASSERT_GE(right->names.size(), 4u * 9);
  for (const std::string& name : left->names) EXPECT_THAT(name, ::testing::StartsWith("left-"));
  for (const std::string& name : right->names) EXPECT_THAT(name, ::testing::StartsWith("right-"));
}

TEST_F(LeaseEngineTest, AbandonedAttemptThatWinsLaterIsReleased) {
  MemoryFaults f;
  f.acquire.latency = seconds(2);
  f.acquire.answer_late = true;
  store_->SetFaults(f);
  auto a = Make("a");
  auto r = a->Acquire({.timeout = milliseconds(500)});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded);
  store_->SetFaults({});
  rt_->RunFor(seconds(2));  // the attempt lands, wins, and is given back
  auto b = Make("b");
  EXPECT_TRUE(*b->Acquire());
}

TEST_F(LeaseEngineTest, NewAttemptWaitsForTheOrphanToSettle) {
  MemoryFaults f;
  f.acquire.latency = milliseconds(1200);
  f.acquire.answer_late = true;  // lands and answers at 1.2s, past its deadline
  store_->SetFaults(f);
  auto a = Make("a");  // request_timeout 1s
  const TimePoint start = rt_->clock().Now();
  ASSERT_FALSE(a->Acquire({.timeout = milliseconds(500)}).ok());
  store_->SetFaults({});
  // Sent while the orphan is in flight: parked until it answered (won) and
  // its tenure was given back, then sent -- a new tenure, not the orphan's.
  auto r = a->AcquireWithToken();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->has_value());
  EXPECT_EQ(rt_->clock().Now() - start, milliseconds(1200));
  EXPECT_EQ((*r)->sequence, 2u);  // 1 was the orphan's, given back
  rt_->RunFor(seconds(5));
  EXPECT_TRUE(a->CheckAlive());
  auto b = Make("b");
  EXPECT_FALSE(*b->Acquire());
}

TEST_F(LeaseEngineTest, AnOrphanThatNeverSettlesParksNewAttemptsOnlyUntilItsBound) {
  MemoryFaults f;
  f.acquire.hang = true;  // the abandoned request is never answered
  store_->SetFaults(f);
  auto a = Make("a");  // request_timeout 1s
  const TimePoint start = rt_->clock().Now();
  ASSERT_FALSE(a->Acquire({.timeout = milliseconds(500)}).ok());
  store_->SetFaults({});
  auto r = a->AcquireWithToken();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->has_value());
  // The orphan's request deadline (0.5s) + one request timeout.
  EXPECT_EQ(rt_->clock().Now() - start, milliseconds(1500));
}

TEST_F(LeaseEngineTest, AnOrphanAnsweringPastItsBoundDoesNotReleaseTheTenureWeHold) {
  MemoryFaults f;
  f.acquire.latency = seconds(2);
  f.acquire.answer_late = true;  // lands at 2s, after the settling bound (1.5s)
  store_->SetFaults(f);
  auto a = Make("a");
  ASSERT_FALSE(a->Acquire({.timeout = milliseconds(500)}).ok());
  store_->SetFaults({});
  auto r = a->AcquireWithToken();  // sent at 1.5s, wins sequence 1
  ASSERT_TRUE(r.ok() && r->has_value());
  std::atomic<int> lost{0};
  auto sub = a->OnLost([&](const LostEvent&) { ++lost; });
  rt_->RunFor(seconds(5));  // at 2s the orphan is applied to our own record
  EXPECT_TRUE(a->CheckAlive());
  EXPECT_EQ(lost.load(), 0);
  auto b = Make("b");
  EXPECT_FALSE(*b->Acquire());
}

TEST_F(LeaseEngineTest, LateRenewalAfterLossGivesTheRecordBack) {
  auto a = Make("a");
  ASSERT_TRUE(*a->Acquire());
  MemoryFaults f;
  f.renew.latency = seconds(5);  // every renewal lands long after the deadline
  store_->SetFaults(f);
  std::atomic<int> lost{0};
  auto sub = a->OnLost([&](const LostEvent&) { ++lost; });
  rt_->RunFor(seconds(4));
  EXPECT_FALSE(a->CheckAlive());
  EXPECT_EQ(lost.load(), 1);
  store_->SetFaults({});
  rt_->RunFor(seconds(3));  // the late renewal lands, then is released
  auto b = Make("b");
  EXPECT_TRUE(*b->Acquire());
}

TEST_F(LeaseEngineTest, ATenureLostByExpiryIsGivenBackAtOnce) {
  // Renewals land in the store but are never confirmed in time: the store
  // keeps extending a record the holder has stopped believing in. At the
  // loss, the engine gives it back, so a contender need not wait out the
  // extensions (here: until 3 s after the last landed renewal).
  auto a = Make("a", {.ttl = seconds(3)});
  ASSERT_TRUE(*a->Acquire());
  MemoryFaults f;
  f.renew.latency = seconds(2);  // lands 2 s after it was sent; the caller hears a timeout
  store_->SetFaults(f);
  TimePoint lost_at{};
  auto sub = a->OnLost([&](const LostEvent&) { lost_at = rt_->clock().Now(); });
  rt_->RunFor(seconds(4));
  ASSERT_NE(lost_at, TimePoint{}) << "the holder never lost the lease";
  const uint64_t releases = store_->stats().release_calls;
  EXPECT_GE(releases, 1u) << "nothing was given back at the loss";
  auto b = Make("b");
  auto got = b->Acquire({.attempts = 1});
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(*got) << "the record lost by expiry still blocks a contender";
}

TEST_F(LeaseEngineTest, RenewalConfirmedAfterTheDeadlineNeverRevivesTheLease) {
  auto a = Make("a", {.ttl = seconds(3), .drift_allowance = milliseconds(60)});
  ASSERT_TRUE(*a->Acquire());
  const TimePoint deadline = *a->safe_deadline();
  MemoryFaults f;
  f.renew.latency = milliseconds(500);
  store_->SetFaults(f);
  std::atomic<int> lost{0};
  auto sub = a->OnLost([&](const LostEvent& e) {
    EXPECT_EQ(e.reason, LossReason::kExpired);
    ++lost;
  });
  rt_->RunFor(seconds(1));  // the renewal is sent; its answer is due 500ms later
  // The process is paused past its deadline: when it resumes, the renewal's
  // answer is processed before the deadline timer.
  rt_->fake_clock().AdvanceTo(deadline + milliseconds(10));
  EXPECT_FALSE(a->CheckAlive());
  rt_->RunUntilIdle();
  EXPECT_FALSE(a->CheckAlive());
  EXPECT_EQ(lost.load(), 1);
  store_->SetFaults({});
  rt_->RunFor(seconds(10));
  EXPECT_FALSE(a->CheckAlive());
  EXPECT_EQ(lost.load(), 1);
  auto b = Make("b");
  EXPECT_TRUE(*b->Acquire());  // the landed renewal was given back
}

TEST_F(LeaseEngineTest, LossIsOnTimeWhenTheStoreDropsTheRenewalWithoutAnswering) {
  auto a = Make("a", {.ttl = seconds(3)});
  ASSERT_TRUE(*a->Acquire());
  rt_->RunFor(seconds(2));  // renewed once
  const TimePoint deadline = *a->safe_deadline();
  MemoryFaults f;
  f.renew.hang = true;  // the store drops every renewal and never answers
  store_->SetFaults(f);
  TimePoint lost_at{};
  auto sub = a->OnLost([&](const LostEvent& e) {
    EXPECT_EQ(e.reason, LossReason::kExpired);
    lost_at = rt_->clock().Now();
  });
  rt_->RunFor(seconds(5));
  EXPECT_EQ(lost_at, deadline);
}

// Review finding: an OnLost handler re-acquires while the give-back of a
// renewal that landed too late is still on its way. The store answers the
// re-acquire with the old (live) record; the late release would then free it.
TEST_F(LeaseEngineTest, ARetiredTenureIsNeverResumedEvenIfTheStoreStillHasIt) {
  auto a = Make("a", {.ttl = seconds(3), .drift_allowance = milliseconds(60)});
  auto b = Make("b", {.ttl = seconds(3)});
  auto first = a->AcquireWithToken();
  ASSERT_TRUE(first.ok() && first->has_value());
  rt_->RunFor(milliseconds(1500));  // renewed at 1s: deadline 3.94s
  MemoryFaults f;
  f.renew.latency = milliseconds(1950);  // the renewal sent at 2s lands at 3.95s
  f.renew.answer_late = true;
  f.acquire.latency = milliseconds(20);
  f.release.latency = milliseconds(30);
  store_->SetFaults(f);
  Future<AcquireResult> again;
  auto sub = a->OnLost([&](const LostEvent&) { again = a->StartAcquire(); });
  bool both = false;
  for (int i = 0; i < 300; ++i) {  // 3s in 10ms steps
    rt_->RunFor(milliseconds(10));
    if (i % 10 == 5 && !b->CheckAlive()) (void)b->StartAcquire();
    both = both || (a->CheckAlive() && b->CheckAlive());
  }
  EXPECT_FALSE(both) << "two live holders";
  ASSERT_TRUE(again.valid());
  ASSERT_TRUE(again.ready());
  const AcquireResult& r = again.Wait();
  if (r.ok() && r->has_value()) {
    EXPECT_GT((*r)->sequence, (*first)->sequence) << "a new tenure reused the old token";
    EXPECT_NE((*r)->value, (*first)->value);
  }
}

// Issue 18, schedule 2: while a releases, the store swallows acquire
// requests for a moment (never answers, never applies them). b's waiting
// acquire must not wait for that answer forever: the engine gives the
// request up at its settling bound and asks again.
TEST_F(LeaseEngineTest, AWaitingAcquireOutlivesARequestTheStoreNeverAnswers) {
  auto a = Make("a");
  auto b = Make("b");
  ASSERT_TRUE(*a->Acquire());
  Future<AcquireResult> waiting = b->StartAcquire({.wait = true});
  rt_->RunFor(milliseconds(500));
  MemoryFaults f;
  f.acquire.hang = true;
  store_->SetFaults(f);
  ASSERT_TRUE(a->Release().ok());  // wakes b, whose retry is swallowed
  rt_->RunFor(milliseconds(1));
  store_->SetFaults({});
  const TimePoint released = rt_->clock().Now();
  TimePoint held_at = TimePoint::max();
  for (int i = 0; i < 50 && held_at == TimePoint::max(); ++i) {
    rt_->RunFor(milliseconds(100));
    if (b->CheckAlive()) held_at = rt_->clock().Now();
  }
  ASSERT_TRUE(waiting.ready()) << "the waiting acquire is stuck on a request nobody answers";
  const AcquireResult& r = waiting.Wait();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->has_value());
  // Given up at its deadline + one request timeout (2 s), then asked again
  // after the waiting acquire's backoff.
  EXPECT_LE(held_at - released, milliseconds(2300));
}

// The first renewal of a tenure waits for its acquire's continuations: one
// that releases the win (as LeaseMajority does with a late win) does so
// before the store ever sees a renewal, even when the win arrived after the
// renewal was already due.
TEST_F(LeaseEngineTest, AWinReleasedByItsContinuationIsNeverRenewed) {
  MemoryFaults f;
  f.acquire.latency = milliseconds(1500);  // past renew_interval (1 s)
  f.acquire.answer_late = true;
  store_->SetFaults(f);
  auto a = Make("a");
  Future<AcquireResult> won = a->StartAcquire({.timeout = seconds(3)});
  Future<Status> released;
  won.Then([&](const AcquireResult& r) {
    ASSERT_TRUE(r.ok() && r->has_value());
    released = a->StartRelease();
  });
  rt_->RunFor(seconds(3));
  ASSERT_TRUE(released.valid() && released.ready());
  EXPECT_TRUE(released.Wait().ok());
  EXPECT_EQ(store_->stats().renew_calls, 0u);
  EXPECT_FALSE(a->CheckAlive());
}

// Review finding: a continuation that throws must not leave the tenure
// unrenewed (the delivery ends whatever the continuation does).
TEST_F(LeaseEngineTest, AThrowingAcquireContinuationDoesNotStopRenewal) {
  MemoryFaults f;
  f.acquire.latency = milliseconds(10);
  store_->SetFaults(f);
  auto a = Make("a");
  Future<AcquireResult> won = a->StartAcquire();
  won.Then([](const AcquireResult&) { throw std::runtime_error("continuation boom"); });
  rt_->RunFor(seconds(20));  // the exception is contained by the runtime
  ASSERT_TRUE(won.ready());
  EXPECT_TRUE(a->CheckAlive()) << "the tenure was not renewed after a throwing continuation";
  EXPECT_GE(store_->stats().renew_calls, 10u);
}

// Review finding: a waiting acquire against a failing store must back off,
// not spin on "changed since no observation".
TEST_F(LeaseEngineTest, AWaitingAcquireBacksOffWhileTheStoreFails) {
  MemoryFaults f;
  f.acquire.unavailable = true;
  store_->SetFaults(f);
  auto a = Make("a");
  auto r = a->Acquire({.wait = true, .timeout = seconds(1)});
  ASSERT_FALSE(r.ok());
  // When the budget runs out, the caller hears why: the store's last error.
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("memory:"));
  EXPECT_LE(rt_->clock().Now(), TimePoint() + std::chrono::hours(1) + seconds(1));
  EXPECT_LT(store_->stats().acquire_calls, 100u);
}

// Review finding: a renewal time within the minimum attempt of the deadline
// must not spin the wake-ups.
TEST_F(LeaseEngineTest, ATinyTtlNeitherSpinsNorStopsTime) {
  auto a = Make("a", {.ttl = milliseconds(2), .renew_interval = microseconds(980)});
  ASSERT_TRUE(*a->Acquire());
  rt_->RunFor(milliseconds(50));  // returns: simulated time moves on
  EXPECT_LT(store_->stats().renew_calls, 200u);
}

TEST_F(LeaseEngineTest, BlockingCallsFromALoopThreadAreRefused) {
  auto rt = Runtime::Create();
  auto store = MemoryStore::Create(rt);
  auto lease = Lease::Create(store, {.name = "x", .owner = "a", .ttl = seconds(3)});
  ASSERT_TRUE(lease.ok());
  Promise<Status> out(nullptr);
  Lease* l = lease->get();
  rt->Post([l, out]() mutable {
    auto r = l->Acquire();
    out.Set(r.ok() ? Status::Ok() : r.status());
  });
  Status s = out.future().Wait();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("loop thread"));
}

TEST(LeaseRealRuntimeTest, AcquireRenewReleaseOnRealThreads) {
  auto store = MemoryStore::Create(Runtime::Create());
  auto a = Lease::Create(store, {.name = "x", .owner = "a", .ttl = milliseconds(300)});
  auto b = Lease::Create(store, {.name = "x", .owner = "b", .ttl = milliseconds(300)});
  ASSERT_TRUE(a.ok() && b.ok());
  auto ta = (*a)->AcquireWithToken();
  ASSERT_TRUE(ta.ok() && ta->has_value());
  std::this_thread::sleep_for(milliseconds(700));  // > 2 TTLs: renewals must run
  EXPECT_TRUE((*a)->CheckAlive());
  auto waiting = (*b)->StartAcquire({.wait = true, .timeout = seconds(5)});
  EXPECT_TRUE((*a)->Release().ok());
  const AcquireResult& tb = waiting.Wait();
  ASSERT_TRUE(tb.ok()) << tb.status().ToString();
  ASSERT_TRUE(tb->has_value());
  EXPECT_GT((*tb)->sequence, (*ta)->sequence);
}

}  // namespace
}  // namespace leasehold
