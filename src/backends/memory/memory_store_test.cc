// Unit tests of the memory store itself (the Store operations, fault injection,
// watches, stats). The contract items whose proof needs the memory store's
// instruments are in memory_lease_test.cc; the contract common to every backend
// is proven by the conformance suite (memory_conformance_test.cc).
//
// Everything runs on a SimulatedRuntime: exact times, no sleeping.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "leasehold/backends/memory.h"
#include "leasehold/future.h"
#include "leasehold/lease.h"
#include "leasehold/runtime.h"
#include "leasehold/status.h"
#include "leasehold/store.h"
#include "memory_store_fixture.h"

namespace leasehold {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

using memory_test::MemoryStoreTest;

// ---------------------------------------------------------------------------
// Basics.

TEST_F(MemoryStoreTest, DescribesItselfAndOffersFencingAndWatch) {
  EXPECT_EQ(store_->Describe(), "memory:");
  StoreCapabilities caps = store_->capabilities();
  EXPECT_TRUE(caps.fencing);
  EXPECT_TRUE(caps.watch);
  EXPECT_EQ(store_->runtime(), runtime_);
}

TEST_F(MemoryStoreTest, AcceptsNamesUpTo253BytesWithoutNul) {
  EXPECT_TRUE(store_->ValidateName(std::string(253, 'a')).ok());
  EXPECT_TRUE(store_->ValidateName("db/migrations.v2").ok());
  EXPECT_EQ(store_->ValidateName(std::string(254, 'a')).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ValidateName("").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ValidateName(std::string("a\0b", 3)).code(), StatusCode::kInvalidArgument);
}

TEST_F(MemoryStoreTest, AFreeNameIsGrantedAndALiveOneIsContendedNamingTheHolder) {
  FencingToken token = Won(Acquire("n", "h1", 3s));
  EXPECT_EQ(token.sequence, 1u);
  EXPECT_FALSE(token.value.empty());

  auto busy = Acquire("n", "h2");
  ASSERT_TRUE(busy.ok()) << busy.status().ToString();
  ASSERT_TRUE(std::holds_alternative<Contended>(*busy));
  EXPECT_EQ(std::get<Contended>(*busy).holder, "h1");
  EXPECT_FALSE(std::get<Contended>(*busy).version.empty());
}

TEST_F(MemoryStoreTest, AcquiringOurOwnLiveRecordReturnsTheSameTenure) {
  FencingToken first = Won(Acquire("n", "h1", 3s));
  runtime_->RunFor(2s);
  FencingToken again = Won(Acquire("n", "h1", 3s));
  EXPECT_EQ(again, first);
  runtime_->RunFor(2s);  // 4s after the first write, 2s after the second
  EXPECT_EQ(HolderOf("n"), "h1");
}

// ---------------------------------------------------------------------------
// Fencing counter.

TEST_F(MemoryStoreTest, SequencesNeverRepeatAfterReleaseExpiryDeleteOrTakeOver) {
  std::vector<FencingToken> tokens;
  tokens.push_back(Won(Acquire("n", "h1", 1s)));
  ASSERT_TRUE(Release("n", "h1", tokens.back()).ok());
  tokens.push_back(Won(Acquire("n", "h1", 1s)));  // same holder after release
  runtime_->RunFor(1s + 1ms);                     // expiry
  tokens.push_back(Won(Acquire("n", "h2", 1s)));
  ASSERT_TRUE(store_->Delete("n"));
  tokens.push_back(Won(Acquire("n", "h3", 1s)));
  const uint64_t taken = store_->TakeOver("n", "intruder", 1s);
  tokens.push_back({"", taken});
  ASSERT_TRUE(store_->ExpireNow("n"));
  tokens.push_back(Won(Acquire("n", "h1", 1s)));

  std::set<std::string> values;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) {
      EXPECT_GT(tokens[i].sequence, tokens[i - 1].sequence) << "tenure " << i;
    }
    if (!tokens[i].value.empty()) {
      EXPECT_TRUE(values.insert(tokens[i].value).second) << tokens[i].value;
    }
  }
  // The counter is per name.
  EXPECT_EQ(Won(Acquire("other", "h1")).sequence, 1u);
}

TEST_F(MemoryStoreTest, TokensOfTwoStoresNeverCompareEqual) {
  auto other = MemoryStore::Create(runtime_);
  FencingToken mine = Won(Acquire("n", "h1"));
  Promise<Result<AcquireOutcome>> done(runtime_);
  other->Acquire({"n", "h1", 3s, Now() + 1s},
                 [done](Result<AcquireOutcome> r) mutable { done.Set(std::move(r)); });
  FencingToken theirs = Won(done.future().Wait());
  EXPECT_EQ(mine.sequence, theirs.sequence);  // each store starts at 1
  EXPECT_NE(mine.value, theirs.value);
  EXPECT_NE(mine, theirs);
}

// ---------------------------------------------------------------------------
// Renewal.

// Issue 18, schedule 3: a watcher armed while a 3 s tenure was live must
// hear of a later 0.5 s tenure's expiry when it happens, not at the moment
// the earlier record would have expired.
TEST_F(MemoryStoreTest, WatchersHearOfExpiryOnTimeWhenTtlsDiffer) {
  Won(Acquire("job", "a", 3s));
  auto busy = Acquire("job", "c");
  ASSERT_TRUE(busy.ok() && std::holds_alternative<Contended>(*busy));
  int woken = 0;
  (void)store_->Watch("job", std::get<Contended>(*busy).version, [&] { ++woken; });
  runtime_->RunFor(1s);
  store_->TakeOver("job", "b", 500ms);  // a foreign holder with a short TTL
  ASSERT_EQ(woken, 1);                  // the take-over is a change
  busy = Acquire("job", "c");
  ASSERT_TRUE(busy.ok() && std::holds_alternative<Contended>(*busy));
  TimePoint woken_at{};
  (void)store_->Watch("job", std::get<Contended>(*busy).version, [&] { woken_at = Now(); });
  const TimePoint expires = Now() + 500ms;
  runtime_->RunFor(3s);
  EXPECT_EQ(woken_at, expires) << "woken " << FormatDuration(woken_at - expires) << " late";
}

TEST_F(MemoryStoreTest, RenewalExtendsALiveTenureFromWhenItLands) {
  FencingToken token = Won(Acquire("n", "h1", 1s));
  runtime_->RunFor(600ms);
  auto r = RenewOne("n", "h1", token, 1s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(std::holds_alternative<Renewed>(*r));
  runtime_->RunFor(900ms);  // 1.5s after the acquire, 0.9s after the renewal
  auto record = Inspect("n");
  ASSERT_TRUE(record.ok()) << record.status().ToString();
  EXPECT_EQ(record->holder, "h1");
  ASSERT_TRUE(record->remaining.has_value());
  EXPECT_EQ(*record->remaining, 100ms);
  EXPECT_EQ(record->token, token);
}

TEST_F(MemoryStoreTest, RenewalNeverResurrectsAnExpiredTenure) {
  FencingToken token = Won(Acquire("n", "h1", 1s));
  runtime_->RunFor(1s);  // expires exactly TTL after the write
  auto r = RenewOne("n", "h1", token, 1s);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(std::holds_alternative<Lost>(*r)) << "an expired tenure was renewed";
  EXPECT_EQ(HolderOf("n"), "");

  FencingToken next = Won(Acquire("n", "h2", 1s));
  EXPECT_GT(next.sequence, token.sequence);
  // ... nor after ExpireNow.
  ASSERT_TRUE(store_->ExpireNow("n"));
  auto after = RenewOne("n", "h2", next, 1s);
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_TRUE(std::holds_alternative<Lost>(*after));
  EXPECT_EQ(HolderOf("n"), "");
}

TEST_F(MemoryStoreTest, RenewalOfAnotherTenureIsLostAndLeavesTheRecordAlone) {
  FencingToken old_token = Won(Acquire("n", "h1", 1s));
  ASSERT_TRUE(Release("n", "h1", old_token).ok());
  FencingToken current = Won(Acquire("n", "h2", 1s));
  runtime_->RunFor(500ms);

  // Another holder.
  auto foreign = RenewOne("n", "h1", current, 5s);
  ASSERT_TRUE(foreign.ok());
  ASSERT_TRUE(std::holds_alternative<Lost>(*foreign));
  EXPECT_EQ(std::get<Lost>(*foreign).reason, LossReason::kTakenOver);
  // Our own identity, but an earlier tenure's token.
  ASSERT_TRUE(Release("n", "h2", current).ok());
  FencingToken later = Won(Acquire("n", "h2", 1s));
  auto stale = RenewOne("n", "h2", current, 5s);
  ASSERT_TRUE(stale.ok());
  ASSERT_TRUE(std::holds_alternative<Lost>(*stale));
  EXPECT_EQ(std::get<Lost>(*stale).reason, LossReason::kTakenOver);

  auto record = Inspect("n");
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->token, later);
  ASSERT_TRUE(record->remaining.has_value());
  EXPECT_EQ(*record->remaining, 1s) << "a foreign renewal extended the record";
}

TEST_F(MemoryStoreTest, RenewalOfADeletedRecordIsLostAsDeleted) {
  FencingToken token = Won(Acquire("n", "h1"));
  ASSERT_TRUE(store_->Delete("n"));
  auto r = RenewOne("n", "h1", token);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(std::holds_alternative<Lost>(*r));
  EXPECT_EQ(std::get<Lost>(*r).reason, LossReason::kDeleted);
}

TEST_F(MemoryStoreTest, ABatchRenewalAnswersEachLeaseInOrder) {
  FencingToken a = Won(Acquire("a", "h"));
  FencingToken b = Won(Acquire("b", "h"));
  FencingToken c = Won(Acquire("c", "h"));
  ASSERT_TRUE(store_->Delete("b"));
  auto results = Renew({{"a", "h", a, 3s, Now() + 1s},
                        {"b", "h", b, 3s, Now() + 1s},
                        {"c", "other", c, 3s, Now() + 1s}});
  ASSERT_EQ(results.size(), 3u);
  ASSERT_TRUE(results[0].ok() && results[1].ok() && results[2].ok());
  EXPECT_TRUE(std::holds_alternative<Renewed>(*results[0]));
  ASSERT_TRUE(std::holds_alternative<Lost>(*results[1]));
  EXPECT_EQ(std::get<Lost>(*results[1]).reason, LossReason::kDeleted);
  ASSERT_TRUE(std::holds_alternative<Lost>(*results[2]));
  EXPECT_EQ(std::get<Lost>(*results[2]).reason, LossReason::kTakenOver);
}

// ---------------------------------------------------------------------------
// Release.

TEST_F(MemoryStoreTest, ReleaseClearsOnlyOurOwnTenure) {
  FencingToken mine = Won(Acquire("n", "h1"));
  // Wrong holder, wrong token: OK (nothing of theirs is left) but no effect.
  EXPECT_TRUE(Release("n", "h2", mine).ok());
  EXPECT_TRUE(Release("n", "h1", FencingToken{"forged", mine.sequence}).ok());
  EXPECT_EQ(HolderOf("n"), "h1");

  EXPECT_TRUE(Release("n", "h1", mine).ok());
  EXPECT_EQ(HolderOf("n"), "");
  EXPECT_TRUE(Release("n", "h1", mine).ok()) << "already gone is OK";

  // A lapsed holder's release after someone else took over.
  FencingToken second = Won(Acquire("n", "h2", 1s));
  runtime_->RunFor(1s);
  FencingToken third = Won(Acquire("n", "h3", 1s));
  EXPECT_TRUE(Release("n", "h2", second).ok());
  EXPECT_EQ(HolderOf("n"), "h3");
  EXPECT_NE(third, second);
}

// ---------------------------------------------------------------------------
// Foreign writers.

TEST_F(MemoryStoreTest, TakeOverDeleteAndExpireNowActOnTheRecord) {
  const uint64_t first = store_->TakeOver("n", "intruder", 2s);
  EXPECT_EQ(first, 1u);
  auto record = Inspect("n");
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->holder, "intruder");
  EXPECT_EQ(record->token.sequence, first);
  ASSERT_TRUE(record->remaining.has_value());
  EXPECT_EQ(*record->remaining, 2s);
  auto busy = Acquire("n", "h1");
  ASSERT_TRUE(busy.ok());
  EXPECT_TRUE(std::holds_alternative<Contended>(*busy));

  // Taking over a live record of someone else replaces it.
  const uint64_t second = store_->TakeOver("n", "intruder-2", 2s);
  EXPECT_GT(second, first);
  EXPECT_EQ(HolderOf("n"), "intruder-2");

  EXPECT_TRUE(store_->ExpireNow("n"));
  EXPECT_FALSE(store_->ExpireNow("n")) << "nothing live left to expire";
  EXPECT_EQ(HolderOf("n"), "");
  Won(Acquire("n", "h1"));

  EXPECT_TRUE(store_->Delete("n"));
  EXPECT_FALSE(store_->Delete("n"));
  auto gone = Inspect("n");
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), StatusCode::kNotFound);
  EXPECT_FALSE(store_->ExpireNow("never-existed"));
  EXPECT_FALSE(store_->Delete("never-existed"));
}

// ---------------------------------------------------------------------------
// Inspect.

TEST_F(MemoryStoreTest, InspectReportsTheRecordAndNotFoundForAnUnknownName) {
  auto none = Inspect("n");
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(none.status().message(), HasSubstr("memory:"));
  EXPECT_THAT(none.status().message(), HasSubstr("\"n\""));

  const WallTime wall_before = runtime_->clock().WallNow();
  FencingToken token = Won(Acquire("n", "h1", 3s));
  runtime_->RunFor(1s);
  auto record = Inspect("n");
  ASSERT_TRUE(record.ok()) << record.status().ToString();
  EXPECT_EQ(record->name, "n");
  EXPECT_EQ(record->holder, "h1");
  EXPECT_EQ(record->token, token);
  ASSERT_TRUE(record->remaining.has_value());
  EXPECT_EQ(*record->remaining, 2s);
  EXPECT_EQ(record->acquired_at, wall_before);
  EXPECT_FALSE(record->version.empty());

  // Expired: free (no holder, no remaining time), or gone.
  runtime_->RunFor(2s);
  auto expired = Inspect("n");
  if (expired.ok()) {
    EXPECT_EQ(expired->holder, "");
    EXPECT_FALSE(expired->remaining.has_value());
  } else {
    EXPECT_EQ(expired.status().code(), StatusCode::kNotFound);
  }
}

// ---------------------------------------------------------------------------
// Fault injection.

TEST_F(MemoryStoreTest, LatencyDelaysTheAnswerAndTheEffect) {
  SetFaults([](MemoryFaults& f) { f.acquire.latency = 200ms; });
  const TimePoint sent = Now();
  std::optional<TimePoint> answered;
  Promise<Result<AcquireOutcome>> done(runtime_);
  store_->Acquire({"n", "h1", 3s, sent + 1s}, [&, done](Result<AcquireOutcome> r) mutable {
    answered = Now();
    done.Set(std::move(r));
  });
  EXPECT_FALSE(answered.has_value()) << "answered before the latency";
  EXPECT_EQ(HolderOf("n"), "") << "took effect before the latency";
  Won(done.future().Wait());
  ASSERT_TRUE(answered.has_value());
  EXPECT_EQ(*answered - sent, 200ms);
  auto record = Inspect("n");
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(*record->remaining, 3s) << "the TTL counts from when the write landed";
}

TEST_F(MemoryStoreTest, LatencyPastTheDeadlineAnswersDeadlineExceededButStillLands) {
  SetFaults([](MemoryFaults& f) { f.acquire.latency = 2s; });
  const TimePoint sent = Now();
  auto r = Acquire("n", "h1", 3s, /*timeout=*/1s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(Now() - sent, 1s) << "answered at the caller's deadline";
  EXPECT_EQ(HolderOf("n"), "");
  runtime_->RunFor(1s);
  EXPECT_EQ(HolderOf("n"), "h1") << "a timed-out request may land, like over a network";
}

TEST_F(MemoryStoreTest, UnavailableFailsEveryOperationOfThatKindWithoutEffect) {
  FencingToken token = Won(Acquire("held", "h1", 1s));
  SetFaults([](MemoryFaults& f) {
    f.acquire.unavailable = true;
    f.renew.unavailable = true;
    f.release.unavailable = true;
  });
  for (int i = 0; i < 3; ++i) {
    auto a = Acquire("free", "h1");
    ASSERT_FALSE(a.ok());
    EXPECT_EQ(a.status().code(), StatusCode::kUnavailable);
  }
  EXPECT_FALSE(Inspect("free").ok()) << "a failed acquire took effect";

  runtime_->RunFor(500ms);
  auto renewed =
      Renew({{"held", "h1", token, 1s, Now() + 1s}, {"other", "h1", token, 1s, Now() + 1s}});
  ASSERT_EQ(renewed.size(), 2u);
  for (const auto& r : renewed) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  }
  Status released = Release("held", "h1", token);
  EXPECT_EQ(released.code(), StatusCode::kUnavailable);
  EXPECT_EQ(HolderOf("held"), "h1") << "a failed release took effect";
  runtime_->RunFor(500ms);
  EXPECT_EQ(HolderOf("held"), "") << "a failed renewal extended the record";

  store_->SetFaults({});
  Won(Acquire("free", "h1"));
}

// store.h: errors carry a message naming the store and the lease.
TEST_F(MemoryStoreTest, ErrorsNameTheStoreAndTheLease) {
  SetFaults([](MemoryFaults& f) {
    f.acquire.unavailable = true;
    f.release.unavailable = true;
  });
  auto a = Acquire("my-lease", "h1");
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(a.status().message(), HasSubstr("memory:"));
  EXPECT_THAT(a.status().message(), HasSubstr("my-lease"));
  Status r = Release("my-lease", "h1", FencingToken{"t", 1});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.message(), HasSubstr("memory:"));
  EXPECT_THAT(r.message(), HasSubstr("my-lease"));
}

TEST_F(MemoryStoreTest, HangNeverAnswersAndNeverTakesEffect) {
  FencingToken token = Won(Acquire("held", "h1", 1s));
  SetFaults([](MemoryFaults& f) {
    f.acquire.hang = true;
    f.renew.hang = true;
    f.release.hang = true;
  });
  int answers = 0;
  store_->Acquire({"free", "h1", 3s, Now() + 1s}, [&](Result<AcquireOutcome>) { ++answers; });
  store_->Renew({{"held", "h1", token, 1s, Now() + 1s}},
                [&](std::vector<Result<RenewOutcome>>) { ++answers; });
  store_->Release({"held", "h1", token, Now() + 1s}, [&](Status) { ++answers; });
  runtime_->RunFor(500ms);
  EXPECT_EQ(HolderOf("held"), "h1") << "a hung release took effect";
  runtime_->RunFor(10s);
  EXPECT_EQ(answers, 0);
  EXPECT_FALSE(Inspect("free").ok()) << "a hung acquire took effect";
  EXPECT_EQ(HolderOf("held"), "") << "a hung renewal extended the record";
}

TEST_F(MemoryStoreTest, FailNextFailsExactlyThatManyOperations) {
  SetFaults([](MemoryFaults& f) {
    f.acquire.fail_next = 2;
    f.renew.fail_next = 1;
    f.release.fail_next = 1;
  });
  EXPECT_EQ(Acquire("n", "h1").status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(Acquire("n", "h1").status().code(), StatusCode::kUnavailable);
  FencingToken token = Won(Acquire("n", "h1"));

  auto failed = RenewOne("n", "h1", token);
  EXPECT_EQ(failed.status().code(), StatusCode::kUnavailable);
  auto renewed = RenewOne("n", "h1", token);
  ASSERT_TRUE(renewed.ok()) << renewed.status().ToString();
  EXPECT_TRUE(std::holds_alternative<Renewed>(*renewed));

  EXPECT_EQ(Release("n", "h1", token).code(), StatusCode::kUnavailable);
  EXPECT_EQ(HolderOf("n"), "h1");
  EXPECT_TRUE(Release("n", "h1", token).ok());
  EXPECT_EQ(HolderOf("n"), "");
}

TEST_F(MemoryStoreTest, ConflictNextAcquiresLosesTheCompareAndSwapOfGrantableAcquires) {
  SetFaults([](MemoryFaults& f) { f.conflict_next_acquires = 2; });
  auto first = Acquire("n", "h1");
  ASSERT_FALSE(first.ok());
  EXPECT_EQ(first.status().code(), StatusCode::kAborted);
  EXPECT_EQ(Acquire("n", "h1").status().code(), StatusCode::kAborted);
  EXPECT_EQ(HolderOf("n"), "") << "a lost compare-and-swap took effect";
  FencingToken token = Won(Acquire("n", "h1"));

  // A contended acquire would not have succeeded: it does not use up a conflict.
  SetFaults([](MemoryFaults& f) { f.conflict_next_acquires = 1; });
  auto busy = Acquire("n", "h2");
  ASSERT_TRUE(busy.ok()) << busy.status().ToString();
  EXPECT_TRUE(std::holds_alternative<Contended>(*busy));
  EXPECT_EQ(store_->faults().conflict_next_acquires, 1);
  ASSERT_TRUE(Release("n", "h1", token).ok());
  EXPECT_EQ(Acquire("n", "h2").status().code(), StatusCode::kAborted);
  Won(Acquire("n", "h2"));
}

TEST_F(MemoryStoreTest, ClearingFaultsRestoresNormalService) {
  SetFaults([](MemoryFaults& f) {
    f.acquire.unavailable = true;
    f.acquire.latency = 1s;
  });
  EXPECT_EQ(store_->faults().acquire.latency, 1s);
  store_->SetFaults({});
  EXPECT_FALSE(store_->faults().acquire.unavailable);
  const TimePoint sent = Now();
  Won(Acquire("n", "h1"));
  EXPECT_EQ(Now(), sent);
}

// ---------------------------------------------------------------------------
// Watch.

class WatchTest : public MemoryStoreTest {
 protected:
  // Watches `name` from its current version; counts and timestamps firings.
  WatchId WatchFromNow(const std::string& name) {
    auto record = Inspect(name);
    EXPECT_TRUE(record.ok()) << record.status().ToString();
    return store_->Watch(name, record.ok() ? record->version : "", [this] {
      ++fired_;
      fired_at_ = Now();
    });
  }

  int fired_ = 0;
  std::optional<TimePoint> fired_at_;
};

TEST_F(WatchTest, FiresWhenTheHolderReleases) {
  FencingToken token = Won(Acquire("n", "h1"));
  WatchId id = WatchFromNow("n");
  EXPECT_NE(id, 0u);
  runtime_->RunFor(1s);
  EXPECT_EQ(fired_, 0);
  ASSERT_TRUE(Release("n", "h1", token).ok());
  runtime_->RunUntilIdle();
  EXPECT_EQ(fired_, 1);
}

TEST_F(WatchTest, FiresTheMomentTheRecordExpires) {
  const TimePoint acquired = Now();
  Won(Acquire("n", "h1", 1s));
  WatchFromNow("n");
  runtime_->RunFor(999ms);
  EXPECT_EQ(fired_, 0);
  runtime_->RunFor(1ms);
  ASSERT_EQ(fired_, 1);
  EXPECT_EQ(*fired_at_, acquired + 1s);
}

TEST_F(WatchTest, FiresAtTheRenewedExpiryNotTheOriginalOne) {
  const TimePoint acquired = Now();
  FencingToken token = Won(Acquire("n", "h1", 1s));
  WatchFromNow("n");
  runtime_->RunFor(500ms);
  auto renewed = RenewOne("n", "h1", token, 1s);
  ASSERT_TRUE(renewed.ok());
  ASSERT_TRUE(std::holds_alternative<Renewed>(*renewed));
  runtime_->RunFor(700ms);
  EXPECT_EQ(fired_, 0) << "fired at the expiry the renewal replaced";
  runtime_->RunFor(800ms);
  ASSERT_EQ(fired_, 1);
  EXPECT_EQ(*fired_at_, acquired + 1500ms);
}

TEST_F(WatchTest, FiresWhenTheRecordIsDeleted) {
  Won(Acquire("n", "h1"));
  WatchFromNow("n");
  ASSERT_TRUE(store_->Delete("n"));
  runtime_->RunUntilIdle();
  EXPECT_EQ(fired_, 1);
}

TEST_F(WatchTest, FiresWhenAForeignWriterTakesOver) {
  Won(Acquire("n", "h1"));
  WatchFromNow("n");
  store_->TakeOver("n", "intruder", 3s);
  runtime_->RunUntilIdle();
  EXPECT_EQ(fired_, 1);
}

TEST_F(WatchTest, FiresWhenExpiredNow) {
  Won(Acquire("n", "h1"));
  WatchFromNow("n");
  ASSERT_TRUE(store_->ExpireNow("n"));
  runtime_->RunUntilIdle();
  EXPECT_EQ(fired_, 1);
}

TEST_F(WatchTest, FiresForAChangeThatHappenedBeforeTheWatchWasSet) {
  FencingToken token = Won(Acquire("n", "h1"));
  auto record = Inspect("n");
  ASSERT_TRUE(record.ok());
  ASSERT_TRUE(Release("n", "h1", token).ok());
  Won(Acquire("n", "h2"));  // live again, but a later version
  store_->Watch("n", record->version, [this] { ++fired_; });
  runtime_->RunUntilIdle();
  EXPECT_EQ(fired_, 1) << "missed a change after the observed version";
}

TEST_F(WatchTest, FiresOnceOnly) {
  FencingToken token = Won(Acquire("n", "h1", 1s));
  WatchFromNow("n");
  ASSERT_TRUE(Release("n", "h1", token).ok());
  Won(Acquire("n", "h2", 1s));
  store_->TakeOver("n", "intruder", 1s);
  runtime_->RunFor(5s);
  EXPECT_EQ(fired_, 1);
}

TEST_F(WatchTest, ACancelledWatchNeverFires) {
  FencingToken token = Won(Acquire("n", "h1", 1s));
  WatchId id = WatchFromNow("n");
  store_->CancelWatch(id);
  store_->CancelWatch(id);     // idempotent
  store_->CancelWatch(12345);  // unknown ids are ignored
  ASSERT_TRUE(Release("n", "h1", token).ok());
  Won(Acquire("n", "h2", 1s));
  runtime_->RunFor(5s);  // expiry too
  EXPECT_EQ(fired_, 0);
}

// ---------------------------------------------------------------------------
// Stats.

TEST_F(MemoryStoreTest, StatsCountCallsAndRenewBatches) {
  FencingToken a = Won(Acquire("a", "h"));
  FencingToken b = Won(Acquire("b", "h"));
  FencingToken c = Won(Acquire("c", "h"));
  Renew({{"a", "h", a, 3s, Now() + 1s},
         {"b", "h", b, 3s, Now() + 1s},
         {"c", "h", c, 3s, Now() + 1s}});
  (void)RenewOne("a", "h", a);
  ASSERT_TRUE(Release("a", "h", a).ok());
  (void)Inspect("b");
  (void)Inspect("zzz");
  MemoryStoreStats stats = store_->stats();
  EXPECT_EQ(stats.acquire_calls, 3u);
  EXPECT_EQ(stats.renew_calls, 2u);
  EXPECT_EQ(stats.renewed_leases, 4u);
  EXPECT_EQ(stats.release_calls, 1u);
  EXPECT_EQ(stats.inspect_calls, 2u);

  // Failed operations are calls too.
  SetFaults([](MemoryFaults& f) { f.acquire.unavailable = true; });
  (void)Acquire("d", "h");
  EXPECT_EQ(store_->stats().acquire_calls, 4u);
}

}  // namespace
}  // namespace leasehold
