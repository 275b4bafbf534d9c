// The contract items whose proof needs the memory store's instruments
// (docs/conformance.md items 10, 20, 23, 27, 28): the engine, through Lease,
// on a memory store whose faults and counters the test controls.
//
// Everything runs on a SimulatedRuntime: exact times, no sleeping.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "leasehold/backends/memory.h"
#include "leasehold/forwarding_store.h"
#include "leasehold/future.h"
#include "leasehold/lease.h"
#include "leasehold/store.h"
#include "memory_store_fixture.h"

namespace leasehold {
namespace {

using namespace std::chrono_literals;
using memory_test::MemoryStoreTest;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------
// Contract items that need the memory store's instruments.

LeaseOptions Options(std::string name, std::string owner) {
  return {.name = std::move(name), .owner = std::move(owner)};
}

// Item 10: a lost compare-and-swap is retried within the acquire budget, not
// reported as contention or as an error.
TEST_F(MemoryStoreTest, ALostCompareAndSwapIsRetriedWithinTheAcquireBudget) {
  auto lease = MakeLease(Options("n", "a"));
  SetFaults([](MemoryFaults& f) { f.conflict_next_acquires = 2; });
  Result<bool> r = lease->Acquire();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(*r);
  EXPECT_TRUE(lease->CheckAlive());
  EXPECT_EQ(store_->faults().conflict_next_acquires, 0);
  EXPECT_EQ(store_->stats().acquire_calls, 3u);
  EXPECT_EQ(HolderOf("n"), lease->identity());
}

// A Store that forwards to a MemoryStore and watches the renewals going by:
// how many of one lease are in flight at once, and each request's deadline.
class RenewProbe final : public ForwardingStore {
 public:
  struct Sent {
    TimePoint at;
    TimePoint deadline;
  };

  explicit RenewProbe(std::shared_ptr<MemoryStore> inner) : ForwardingStore(std::move(inner)) {}

  int max_in_flight() const { return max_in_flight_; }
  int renew_calls() const { return calls_; }
  const std::vector<Sent>& sent() const { return sent_; }

  void Renew(std::vector<RenewRequest> batch, RenewCallback done) override {
    // The simulation is single-threaded: no lock needed.
    std::vector<std::string> names;
    for (const auto& r : batch) {
      names.push_back(r.name);
      sent_.push_back({runtime()->clock().Now(), r.deadline});
      max_in_flight_ = std::max(max_in_flight_, ++in_flight_[r.name]);
    }
    ++calls_;
    ForwardingStore::Renew(std::move(batch),
                           [this, names, done](std::vector<Result<RenewOutcome>> r) {
                             for (const auto& name : names) --in_flight_[name];
                             done(std::move(r));
                           });
  }

 private:
  std::map<std::string, int> in_flight_;
  int max_in_flight_ = 0;
  int calls_ = 0;
  std::vector<Sent> sent_;
};

// A decorator built on ForwardingStore forwards everything it does not
// override -- including Break and name validation, which hand-written
// forwarders used to drop.
TEST_F(MemoryStoreTest, AForwardingStoreForwardsWhatItDoesNotOverride) {
  auto probe = std::make_shared<RenewProbe>(store_);
  EXPECT_EQ(probe->Describe(), store_->Describe());
  EXPECT_FALSE(probe->ValidateName("").ok());
  auto lease = MakeLease({.name = "n", .owner = "a", .ttl = 3s}, probe);
  ASSERT_TRUE(*lease->Acquire());
  Promise<Status> broke(runtime_);
  probe->Break("n", runtime_->clock().Now() + 1s, [broke](Status s) mutable { broke.Set(s); });
  auto broken = broke.future();
  EXPECT_TRUE(broken.Wait().ok()) << broken.Wait().ToString();
  runtime_->RunFor(2s);  // the next renewal finds the record gone
  EXPECT_FALSE(lease->CheckAlive());
}

// Item 20: renewals of one holder never overlap, even when each one is slower
// than the renewal interval.

TEST_F(MemoryStoreTest, RenewalsOfOneHolderNeverOverlap) {
  auto probe = std::make_shared<RenewProbe>(store_);
  auto lease = MakeLease(
      {.name = "n", .owner = "a", .ttl = 3s, .renew_interval = 500ms, .request_timeout = 1500ms},
      probe);
  ASSERT_TRUE(lease->Acquire().ok());
  ASSERT_TRUE(lease->CheckAlive());
  // Each renewal takes twice the renewal interval to land and answer.
  SetFaults([](MemoryFaults& f) { f.renew.latency = 1s; });
  runtime_->RunFor(10s);
  EXPECT_EQ(probe->max_in_flight(), 1) << "two renewals of one lease in flight";
  EXPECT_GE(probe->renew_calls(), 5) << "renewals stalled";
  EXPECT_TRUE(lease->CheckAlive());
}

// Item 16: failed renewals are retried while time remains, and each attempt's
// deadline is cut to the time left before the safe deadline.
TEST_F(MemoryStoreTest, EachRenewalAttemptFitsInTheTimeLeftBeforeTheDeadline) {
  auto probe = std::make_shared<RenewProbe>(store_);
  auto lease = MakeLease(Options("n", "a"), probe);  // request_timeout = 1s
  ASSERT_TRUE(lease->Acquire().ok());
  const TimePoint deadline = *lease->safe_deadline();
  SetFaults([](MemoryFaults& f) { f.renew.unavailable = true; });
  runtime_->RunFor(deadline - Now() + 1ms);
  EXPECT_FALSE(lease->CheckAlive());
  ASSERT_GE(probe->sent().size(), 3u) << "failed renewals were not retried";
  for (const auto& sent : probe->sent()) {
    EXPECT_LT(sent.at, deadline);
    EXPECT_LE(sent.deadline, deadline) << "an attempt sent " << FormatDuration(deadline - sent.at)
                                       << " before the safe deadline may run "
                                       << FormatDuration(sent.deadline - deadline) << " past it";
  }
  EXPECT_GT(probe->sent().back().deadline - probe->sent().back().at, Duration::zero());
}

// Item 23: Release() when never held sends nothing to the store; neither does
// a second Release().
TEST_F(MemoryStoreTest, ReleaseWhenNotHeldSendsNothing) {
  auto lease = MakeLease(Options("n", "a"));
  EXPECT_TRUE(lease->Release().ok());
  EXPECT_EQ(store_->stats().release_calls, 0u);

  auto holder = MakeLease(Options("n", "b"));
  ASSERT_TRUE(holder->Acquire().ok());
  Result<bool> contended = lease->Acquire();
  ASSERT_TRUE(contended.ok());
  ASSERT_FALSE(*contended);
  EXPECT_TRUE(lease->Release().ok());
  EXPECT_EQ(store_->stats().release_calls, 0u);

  EXPECT_TRUE(holder->Release().ok());
  EXPECT_EQ(store_->stats().release_calls, 1u);
  EXPECT_TRUE(holder->Release().ok());
  EXPECT_EQ(store_->stats().release_calls, 1u);
}

// Item 27: concurrent acquires on one instance become one store request.
TEST_F(MemoryStoreTest, ConcurrentStartAcquiresSendOneRequest) {
  auto lease = MakeLease(Options("n", "a"));
  SetFaults([](MemoryFaults& f) { f.acquire.latency = 50ms; });
  std::vector<Future<AcquireResult>> futures;
  for (int i = 0; i < 4; ++i) futures.push_back(lease->StartAcquire());
  for (auto& f : futures) {
    const AcquireResult& r = f.Wait();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(r->has_value());
    EXPECT_EQ(**r, **futures[0].Wait());
  }
  EXPECT_EQ(store_->stats().acquire_calls, 1u);
}

// Item 8: two acquires in flight at the same time (both sent before either
// lands): exactly one wins, every round.
TEST_F(MemoryStoreTest, TwoAcquiresInFlightTogetherNeverBothWin) {
  auto a = MakeLease(Options("n", "a"));
  auto b = MakeLease(Options("n", "b"));
  SetFaults([](MemoryFaults& f) { f.acquire.latency = 20ms; });
  uint64_t last_sequence = 0;
  for (int round = 0; round < 30; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const uint64_t calls = store_->stats().acquire_calls;
    // Alternate who sends first.
    Lease& first = round % 2 == 0 ? *a : *b;
    Lease& second = round % 2 == 0 ? *b : *a;
    Future<AcquireResult> f1 = first.StartAcquire();
    Future<AcquireResult> f2 = second.StartAcquire();
    ASSERT_EQ(store_->stats().acquire_calls, calls + 2) << "not both in flight";
    const AcquireResult& r1 = f1.Wait();
    const AcquireResult& r2 = f2.Wait();
    ASSERT_TRUE(r1.ok()) << r1.status().ToString();
    ASSERT_TRUE(r2.ok()) << r2.status().ToString();
    ASSERT_NE(r1->has_value(), r2->has_value()) << "exactly one must win";
    EXPECT_TRUE(r1->has_value()) << "the first to land wins";
    EXPECT_NE(a->CheckAlive(), b->CheckAlive());
    const FencingToken won = r1->has_value() ? **r1 : **r2;
    EXPECT_GT(won.sequence, last_sequence);
    last_sequence = won.sequence;
    ASSERT_TRUE((r1->has_value() ? first : second).Release().ok());
  }
}

// Item 28: many leases share the renewal machinery: one Renew() call renews
// the leases that fall due together.
TEST_F(MemoryStoreTest, ManyLeasesShareRenewBatches) {
  constexpr int kLeases = 200;
  std::vector<std::unique_ptr<Lease>> leases;
  for (int i = 0; i < kLeases; ++i) {
    leases.push_back(MakeLease(Options("l" + std::to_string(i), "a")));
    ASSERT_TRUE(leases.back()->Acquire().ok());
  }
  const MemoryStoreStats before = store_->stats();
  runtime_->RunFor(9s);  // three TTLs, about nine renewal rounds
  const MemoryStoreStats after = store_->stats();
  const uint64_t calls = after.renew_calls - before.renew_calls;
  const uint64_t renewed = after.renewed_leases - before.renewed_leases;
  EXPECT_GE(renewed, uint64_t{kLeases} * 8) << "leases were not renewed every interval";
  EXPECT_GT(calls, 0u);
  EXPECT_LE(calls * 20, renewed) << calls << " Renew() calls for " << renewed << " renewals";
  for (const auto& lease : leases) EXPECT_TRUE(lease->CheckAlive());
}

// Items 16, 20: renewals that fail transiently are retried, and the retries are
// visible to the store (not swallowed).
TEST_F(MemoryStoreTest, FailedRenewalsAreRetriedBeforeTheDeadline) {
  auto lease = MakeLease(Options("n", "a"));
  ASSERT_TRUE(lease->Acquire().ok());
  SetFaults([](MemoryFaults& f) { f.renew.fail_next = 3; });
  const TimePoint deadline = *lease->safe_deadline();
  runtime_->RunFor(deadline - Now() - 1ms);
  EXPECT_GE(store_->stats().renew_calls, 4u);
  EXPECT_EQ(store_->faults().renew.fail_next, 0);
  EXPECT_TRUE(lease->CheckAlive());
  EXPECT_GT(*lease->safe_deadline(), deadline);
}

// Item 15: the safe deadline counts from when the acquire or renewal was sent,
// not from when its answer arrived (the store's TTL starts when it processes
// the write, somewhere in between).
TEST_F(MemoryStoreTest, TheSafeDeadlineCountsFromWhenTheRequestWasSent) {
  auto lease = MakeLease(Options("n", "a"));
  const Duration drift = Duration(3s) / 50;
  SetFaults([](MemoryFaults& f) {
    f.acquire.latency = 400ms;
    f.renew.latency = 400ms;
  });
  const TimePoint sent = Now();
  ASSERT_TRUE(lease->Acquire().ok());
  ASSERT_EQ(Now() - sent, 400ms);
  ASSERT_TRUE(lease->CheckAlive());
  EXPECT_EQ(*lease->safe_deadline(), sent + 3s - drift);

  // The first renewal goes out about renew_interval (1s) after the acquire
  // was sent and lands 400ms later; the deadline moves to its send time + TTL.
  runtime_->RunFor(sent + 1s + 400ms - Now());
  ASSERT_GE(store_->stats().renew_calls, 1u);
  const TimePoint deadline = *lease->safe_deadline();
  EXPECT_GT(deadline, sent + 3s - drift) << "the renewal did not move the deadline";
  EXPECT_LE(deadline, sent + 1s + 3s - drift) << "anchored later than the renewal's send time";
  // Renew timers sit on a grid of min(100 ms, renew_interval / 16).
  EXPECT_GE(deadline, sent + 1s - 1s / 16 + 3s - drift);
}

// Item 21: CheckAlive() is false from the moment Release() starts, while the
// release request is still on its way.
TEST_F(MemoryStoreTest, CheckAliveIsFalseWhileASlowReleaseIsInFlight) {
  auto lease = MakeLease(Options("n", "a"));
  ASSERT_TRUE(lease->Acquire().ok());
  SetFaults([](MemoryFaults& f) { f.release.latency = 500ms; });
  std::optional<bool> alive_during_release;
  runtime_->RunAt(Now() + 1ms, [&] { alive_during_release = lease->CheckAlive(); });
  const TimePoint started = Now();
  Status released = lease->Release();
  EXPECT_TRUE(released.ok()) << released.ToString();
  EXPECT_EQ(Now() - started, 500ms);
  ASSERT_TRUE(alive_during_release.has_value());
  EXPECT_FALSE(*alive_during_release);
  EXPECT_EQ(HolderOf("n"), "");
}

// Item 24: a release the store refuses leaves the record for expiry, and the
// holder does not renew it meanwhile.
TEST_F(MemoryStoreTest, AFailedReleaseStopsRenewalAndLeavesTheRecordToExpire) {
  auto lease = MakeLease(Options("n", "a"));
  ASSERT_TRUE(lease->Acquire().ok());
  const TimePoint acquired = Now();
  SetFaults([](MemoryFaults& f) { f.release.unavailable = true; });
  Status released = lease->Release();
  EXPECT_EQ(released.code(), StatusCode::kUnavailable) << released.ToString();
  EXPECT_THAT(released.message(), HasSubstr("n"));
  const uint64_t renewals = store_->stats().renew_calls;
  EXPECT_EQ(HolderOf("n"), lease->identity());
  runtime_->RunFor(acquired + 3s - Now());
  EXPECT_EQ(store_->stats().renew_calls, renewals) << "renewed after Release()";
  EXPECT_EQ(HolderOf("n"), "");
}

}  // namespace
}  // namespace leasehold
