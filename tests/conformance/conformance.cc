// The cross-backend conformance suite. Each TEST_P proves one behaviour of
// docs/conformance.md (the item numbers are in the comments) through the public Lease
// API only, against whatever store the instantiating backend's Harness provides.
//
// Timing assertions use the harness clock and Harness::Sleep(): under a
// SimulatedRuntime they are exact and nothing sleeps; against a real server they
// run in real time and the harness's slack values bound how late things may be.
#include "conformance/conformance.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "leasehold/clock.h"
#include "leasehold/fencing.h"
#include "leasehold/future.h"
#include "leasehold/lease.h"
#include "leasehold/runtime.h"
#include "leasehold/status.h"
#include "leasehold/store.h"
#include "testing/store_calls.h"

namespace leasehold::conformance {

Harness::~Harness() {
  if (simulated_runtime_) return;  // nothing of it runs in the background
  if (!ShutDown(std::move(runtime_), std::chrono::seconds(10))) {
    std::fprintf(stderr,
                 "conformance: the runtime was still referenced 10 s after the harness's stores "
                 "were dropped; its threads outlive the test\n");
  }
}

namespace {

using namespace std::chrono_literals;
using leasehold::testing::ListRecords;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// ---------------------------------------------------------------------------
// Helpers.

// Records every OnLost event with the harness-clock time it was delivered.
// Handlers may run on another thread (real runtimes), hence the mutex. Declare
// it before the Subscription that points at it.
class LossLog {
 public:
  explicit LossLog(const Clock& clock) : clock_(clock) {}

  std::function<void(const LostEvent&)> Handler() {
    return [this](const LostEvent& event) {
      std::lock_guard lock(mu_);
      events_.push_back({event, clock_.Now()});
    };
  }

  size_t count() const {
    std::lock_guard lock(mu_);
    return events_.size();
  }
  LostEvent event(size_t i) const {
    std::lock_guard lock(mu_);
    return events_.at(i).event;
  }
  TimePoint time(size_t i) const {
    std::lock_guard lock(mu_);
    return events_.at(i).at;
  }
  // Every event, when (relative to `start`) and why: what a failure prints.
  std::string Describe(TimePoint start) const {
    std::lock_guard lock(mu_);
    std::string out;
    for (const Entry& e : events_) {
      out += "\n  lost " + FormatDuration(e.at - start) + " in: " + e.event.message;
    }
    return out;
  }

 private:
  struct Entry {
    LostEvent event;
    TimePoint at;
  };
  const Clock& clock_;
  mutable std::mutex mu_;
  std::vector<Entry> events_;
};

::testing::AssertionResult Acquires(Lease& lease, const AcquireOptions& options = {}) {
  Result<bool> r = lease.Acquire(options);
  if (!r.ok()) {
    return ::testing::AssertionFailure()
           << lease.identity() << ": Acquire() failed: " << r.status().ToString();
  }
  if (!*r) {
    return ::testing::AssertionFailure()
           << lease.identity() << ": Acquire() returned false (contended)";
  }
  if (!lease.CheckAlive()) {
    return ::testing::AssertionFailure()
           << lease.identity() << ": Acquire() returned true but CheckAlive() is false";
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult IsContended(Lease& lease) {
  Result<bool> r = lease.Acquire();
  if (!r.ok()) {
    return ::testing::AssertionFailure()
           << lease.identity() << ": Acquire() failed: " << r.status().ToString();
  }
  if (*r) {
    return ::testing::AssertionFailure()
           << lease.identity() << ": Acquire() returned true, expected contention";
  }
  if (lease.CheckAlive()) {
    return ::testing::AssertionFailure()
           << lease.identity() << ": contended, yet CheckAlive() is true";
  }
  return ::testing::AssertionSuccess();
}

// Acquires with a token; fails the calling test (via the returned optional
// being empty plus ADD_FAILURE) on error or contention.
std::optional<FencingToken> AcquireToken(Lease& lease) {
  AcquireResult r = lease.AcquireWithToken();
  if (!r.ok()) {
    ADD_FAILURE() << lease.identity() << ": AcquireWithToken() failed: " << r.status().ToString();
    return std::nullopt;
  }
  if (!r->has_value()) {
    ADD_FAILURE() << lease.identity() << ": AcquireWithToken() was contended";
    return std::nullopt;
  }
  return **r;
}

// Reads the store's record for `name`, driving a simulated runtime if needed.
Result<LeaseRecord> InspectRecord(Store& store, const std::string& name, Duration timeout) {
  Promise<Result<LeaseRecord>> promise(store.runtime());
  store.Inspect(name, store.runtime()->clock().Now() + timeout,
                [promise](Result<LeaseRecord> r) mutable { promise.Set(std::move(r)); });
  return promise.future().Wait();
}

Duration Max(Duration a, Duration b) { return a > b ? a : b; }

// Timing checks whose failures read as durations rather than raw bytes.
::testing::AssertionResult NotAfter(TimePoint t, TimePoint limit) {
  if (t <= limit) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << FormatDuration(t - limit) << " too late";
}
::testing::AssertionResult NotBefore(TimePoint t, TimePoint limit) {
  if (t >= limit) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << FormatDuration(limit - t) << " too early";
}
::testing::AssertionResult AtMost(Duration d, Duration limit) {
  if (d <= limit) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "took " << FormatDuration(d) << ", more than " << FormatDuration(limit);
}
::testing::AssertionResult AtLeast(Duration d, Duration limit) {
  if (d >= limit) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "took " << FormatDuration(d) << ", less than " << FormatDuration(limit);
}

// "AFreeLeaseIsAcquired/Memory" -> "afreeleaseisacquired-memory": lowercase
// letters, digits and '-', which every backend accepts (Kubernetes object names
// are the strictest).
std::string PrefixForCurrentTest() {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string raw = info != nullptr ? info->name() : "test";
  std::string out;
  for (char c : raw) {
    unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) {
      out.push_back(static_cast<char>(std::tolower(u)));
    } else if (!out.empty() && out.back() != '-') {
      out.push_back('-');
    }
  }
  static std::atomic<int> counter{0};
  out += "-" + std::to_string(counter.fetch_add(1)) + "-";
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// Fixture.

void ConformanceTest::SetUp() {
  harness_ = GetParam().make();
  ASSERT_NE(harness_, nullptr) << "harness factory returned null";
  name_prefix_ = PrefixForCurrentTest();
}

void ConformanceTest::TearDown() {
  if (harness_ != nullptr) {
    // Leases of the test body are gone by now; let their parting releases and
    // any pending callbacks run against the harness before it is torn down.
    harness_->SetHang(false);
    harness_->SetUnavailable(false);
    harness_->Sleep(Duration::zero());
  }
  harness_.reset();
}

void Harness::Sleep(Duration d) {
  if (simulated_runtime_) {
    simulated_runtime_->RunFor(d);
  } else {
    std::this_thread::sleep_for(d);
  }
}

std::unique_ptr<Lease> ConformanceTest::MakeLease(LeaseOptions options,
                                                  std::shared_ptr<Store> store) {
  options.name = name_prefix_ + options.name;
  if (options.ttl == Duration::zero()) options.ttl = harness_->ttl();
  auto lease = Lease::Create(store ? std::move(store) : harness_->NewClient(), options);
  if (!lease.ok()) {
    ADD_FAILURE() << "Lease::Create(" << options.name << ", " << options.owner
                  << "): " << lease.status().ToString();
    // Stops the test body: it cannot go on without the lease.
    throw std::runtime_error("MakeLease failed: " + lease.status().ToString());
  }
  return std::move(lease).value();
}

std::unique_ptr<Lease> ConformanceTest::MakeLease(const std::string& name,
                                                  const std::string& owner) {
  return MakeLease(LeaseOptions{.name = name, .owner = owner});
}

// ---------------------------------------------------------------------------
// Options.

// The store, read through a fresh client, names `holder` for lease `name`.
void ExpectStoreHolder(Harness& harness, const std::string& name, const std::string& holder) {
  auto record = InspectRecord(*harness.NewClient(), name, harness.ttl());
  ASSERT_TRUE(record.ok()) << record.status().ToString();
  EXPECT_EQ(record->holder, holder);
}

// Item 1: name, owner and TTL are required; the error names the field.
TEST_P(ConformanceTest, MissingNameOwnerOrTtlIsRejectedNamingTheField) {
  auto store = harness().NewClient();
  const Duration ttl = harness().ttl();

  auto no_name = Lease::Create(store, {.name = "", .owner = "a", .ttl = ttl});
  ASSERT_FALSE(no_name.ok());
  EXPECT_EQ(no_name.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(no_name.status().message(), HasSubstr("name"));

  auto no_owner = Lease::Create(store, {.name = name_prefix_ + "x", .owner = "", .ttl = ttl});
  ASSERT_FALSE(no_owner.ok());
  EXPECT_EQ(no_owner.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(no_owner.status().message(), HasSubstr("owner"));

  auto no_ttl = Lease::Create(store, {.name = name_prefix_ + "x", .owner = "a"});
  ASSERT_FALSE(no_ttl.ok());
  EXPECT_EQ(no_ttl.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(no_ttl.status().message(), HasSubstr("ttl"));
}

// Item 2: each out-of-range option is rejected naming the field and the value.
TEST_P(ConformanceTest, OutOfRangeOptionsAreRejectedNamingTheFieldAndValue) {
  auto store = harness().NewClient();
  const std::string name = name_prefix_ + "x";
  const Duration ttl = harness().ttl();

  struct Case {
    LeaseOptions options;
    std::string field;
    std::string value;
  };
  std::vector<Case> cases = {
      {{.name = name, .owner = "a", .ttl = -1s}, "ttl", FormatDuration(-1s)},
      {{.name = name, .owner = "a", .ttl = ttl, .renew_interval = -1s},
       "renew_interval",
       FormatDuration(-1s)},
      {{.name = name, .owner = "a", .ttl = ttl, .renew_interval = ttl},
       "renew_interval",
       FormatDuration(ttl)},
      // More than half of (ttl - drift): no time left to retry a failed renewal.
      {{.name = name, .owner = "a", .ttl = ttl, .renew_interval = ttl * 2 / 3},
       "renew_interval",
       FormatDuration(ttl * 2 / 3)},
      {{.name = name, .owner = "a", .ttl = ttl, .acquire_attempts = 0}, "acquire_attempts", "0"},
      {{.name = name, .owner = "a", .ttl = ttl, .acquire_attempts = -3}, "acquire_attempts", "-3"},
      {{.name = name, .owner = "a", .ttl = ttl, .retry_delay = -5ms},
       "retry_delay",
       FormatDuration(-5ms)},
      {{.name = name, .owner = "a", .ttl = ttl, .drift_allowance = Duration(-1ms)},
       "drift_allowance",
       FormatDuration(-1ms)},
      {{.name = name, .owner = "a", .ttl = ttl, .drift_allowance = Duration(ttl / 2)},
       "drift_allowance",
       FormatDuration(ttl / 2)},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field + " = " + c.value);
    auto lease = Lease::Create(store, c.options);
    ASSERT_FALSE(lease.ok());
    EXPECT_EQ(lease.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(lease.status().message(), HasSubstr(c.field));
    EXPECT_THAT(lease.status().message(), HasSubstr(c.value));
  }
}

// Item 2: defaults are derived from the TTL (renew ttl/3, drift ttl/50, request
// timeout = renew interval) and a valid set of options is accepted.
TEST_P(ConformanceTest, DefaultsAreDerivedFromTheTtl) {
  auto lease = MakeLease("x", "a");
  const Duration ttl = harness().ttl();
  EXPECT_EQ(lease->options().ttl, ttl);
  EXPECT_EQ(lease->options().renew_interval, ttl / 3);
  ASSERT_TRUE(lease->options().drift_allowance.has_value());
  EXPECT_EQ(*lease->options().drift_allowance, ttl / 50);
  EXPECT_EQ(lease->options().request_timeout, ttl / 3);
  EXPECT_EQ(lease->name(), name_prefix_ + "x");
  EXPECT_FALSE(lease->CheckAlive());
  EXPECT_FALSE(lease->token().has_value());
  EXPECT_FALSE(lease->safe_deadline().has_value());
}

// Item 3: the same owner string in two Lease instances gives two identities,
// and only one of them can hold the lease.
TEST_P(ConformanceTest, SameOwnerInTwoInstancesGivesDistinctIdentitiesAndOneHolder) {
  auto first = MakeLease("x", "same-owner");
  auto second = MakeLease("x", "same-owner");
  EXPECT_NE(first->identity(), second->identity());
  EXPECT_THAT(first->identity(), StartsWith("same-owner"));
  EXPECT_THAT(second->identity(), StartsWith("same-owner"));

  ASSERT_TRUE(Acquires(*first));
  EXPECT_TRUE(IsContended(*second));
  EXPECT_TRUE(first->CheckAlive());
}

// Item 3: the suffix can be turned off for owners that are already unique.
TEST_P(ConformanceTest, UniqueIdentityOffWritesTheOwnerAsIs) {
  auto lease = MakeLease({.name = "x", .owner = "pod-1-uid-42", .unique_identity = false});
  EXPECT_EQ(lease->identity(), "pod-1-uid-42");
  ASSERT_TRUE(Acquires(*lease));
  ExpectStoreHolder(harness(), lease->name(), "pod-1-uid-42");
}

// ---------------------------------------------------------------------------
// Acquire.

// Item 4: a free lease is acquired, CheckAlive() is true and the store names us.
TEST_P(ConformanceTest, AFreeLeaseIsAcquiredAndTheStoreNamesUs) {
  auto lease = MakeLease("x", "a");
  const TimePoint before = Now();
  auto token = AcquireToken(*lease);
  ASSERT_TRUE(token.has_value());
  EXPECT_TRUE(lease->CheckAlive());
  EXPECT_EQ(lease->token(), token);
  ASSERT_TRUE(lease->safe_deadline().has_value());
  EXPECT_GT(*lease->safe_deadline(), Now());
  EXPECT_TRUE(NotAfter(*lease->safe_deadline(), before + harness().ttl()));

  auto record = InspectRecord(*harness().NewClient(), lease->name(), harness().ttl());
  ASSERT_TRUE(record.ok()) << record.status().ToString();
  EXPECT_EQ(record->name, lease->name());
  EXPECT_EQ(record->holder, lease->identity());
  EXPECT_EQ(record->token.sequence, token->sequence);
}

// Item 5: a lease held by a live holder is not acquired; every retry is made.
TEST_P(ConformanceTest, AHeldLeaseIsNotAcquiredAfterAllRetries) {
  auto holder = MakeLease("x", "a");
  ASSERT_TRUE(Acquires(*holder));

  constexpr int kAttempts = 4;
  const Duration delay = harness().ttl() / 10;
  auto contender =
      MakeLease({.name = "x", .owner = "b", .acquire_attempts = kAttempts, .retry_delay = delay});
  const TimePoint start = Now();
  AcquireResult r = contender->AcquireWithToken();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->has_value());
  EXPECT_TRUE(AtLeast(Now() - start, (kAttempts - 1) * delay));
  EXPECT_FALSE(contender->CheckAlive());
  EXPECT_FALSE(contender->token().has_value());
  EXPECT_TRUE(holder->CheckAlive());
}

// Item 6: after the holder releases, another contender acquires at once.
TEST_P(ConformanceTest, AReleasedLeaseIsAcquiredByAnotherAtOnce) {
  auto holder = MakeLease("x", "a");
  auto contender = MakeLease("x", "b");
  ASSERT_TRUE(Acquires(*holder));
  ASSERT_TRUE(IsContended(*contender));

  Status released = holder->Release();
  ASSERT_TRUE(released.ok()) << released.ToString();
  EXPECT_FALSE(holder->CheckAlive());
  EXPECT_TRUE(Acquires(*contender));
}

// Item 7: once the holder stops renewing and its TTL has passed, another
// contender acquires.
TEST_P(ConformanceTest, ALeaseWhoseHolderStopsRenewingIsAcquiredAfterItsTtl) {
  auto holder = MakeLease("x", "a");
  auto contender = MakeLease("x", "b");
  ASSERT_TRUE(Acquires(*holder));
  const TimePoint acquired = Now();
  if (!harness().FailNextRenewals(1 << 30)) {
    GTEST_SKIP() << GetParam().name << " cannot fail renewals";
  }
  harness().Sleep(harness().ttl() / 2);
  EXPECT_TRUE(holder->CheckAlive());
  EXPECT_TRUE(IsContended(*contender));

  harness().Sleep(acquired + harness().ttl() + harness().expiry_slack() - Now());
  EXPECT_FALSE(holder->CheckAlive());
  EXPECT_TRUE(Acquires(*contender));
  harness().FailNextRenewals(0);
}

// Item 8: two contenders racing for a free lease: exactly one wins, every time.
TEST_P(ConformanceTest, TwoRacingContendersNeverBothWin) {
  auto a = MakeLease("x", "a");
  auto b = MakeLease("x", "b");
  uint64_t last_sequence = 0;
  for (int round = 0; round < 50; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    Future<AcquireResult> fa = a->StartAcquire();
    Future<AcquireResult> fb = b->StartAcquire();
    const AcquireResult& ra = fa.Wait();
    const AcquireResult& rb = fb.Wait();
    ASSERT_TRUE(ra.ok()) << ra.status().ToString();
    ASSERT_TRUE(rb.ok()) << rb.status().ToString();
    ASSERT_NE(ra->has_value(), rb->has_value()) << "exactly one must win";
    EXPECT_NE(a->CheckAlive(), b->CheckAlive());
    Lease& winner = ra->has_value() ? *a : *b;
    const FencingToken token = ra->has_value() ? **ra : **rb;
    EXPECT_GT(token.sequence, last_sequence);
    last_sequence = token.sequence;
    Status released = winner.Release();
    ASSERT_TRUE(released.ok()) << released.ToString();
  }
}

// Item 9: acquiring what we already hold is idempotent: same tenure, same token.
TEST_P(ConformanceTest, AcquiringWhatWeHoldIsIdempotent) {
  auto lease = MakeLease("x", "a");
  auto first = AcquireToken(*lease);
  ASSERT_TRUE(first.has_value());
  auto again = AcquireToken(*lease);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, *first);
  EXPECT_TRUE(Acquires(*lease));
  EXPECT_EQ(lease->token(), first);

  // Renewals keep the tenure (and its token).
  harness().Sleep(harness().ttl());
  auto later = AcquireToken(*lease);
  ASSERT_TRUE(later.has_value());
  EXPECT_EQ(*later, *first);
}

// ---------------------------------------------------------------------------
// Fencing tokens.

// Items 11, 12: sequences strictly increase and token values never repeat,
// across owners, after release, after the same owner re-acquires and for a new
// instance of the same owner (a restarted process).
TEST_P(ConformanceTest, SequencesIncreaseAndTokensDifferAcrossTenures) {
  auto a = MakeLease("x", "a");
  auto b = MakeLease("x", "b");
  std::vector<FencingToken> tokens;
  auto take = [&](Lease& lease) {
    auto token = AcquireToken(lease);
    if (token) tokens.push_back(*token);
    return token.has_value();
  };
  auto release = [](Lease& lease) {
    Status s = lease.Release();
    EXPECT_TRUE(s.ok()) << s.ToString();
  };

  ASSERT_TRUE(take(*a));
  release(*a);
  ASSERT_TRUE(take(*a));  // same owner, same instance
  release(*a);
  ASSERT_TRUE(take(*b));  // another owner
  release(*b);
  auto a_restarted = MakeLease("x", "a");
  ASSERT_TRUE(take(*a_restarted));  // same owner, new incarnation
  release(*a_restarted);
  ASSERT_TRUE(take(*a));

  std::set<std::string> values;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i > 0) {
      EXPECT_GT(tokens[i].sequence, tokens[i - 1].sequence) << "tenure " << i;
    }
    EXPECT_FALSE(tokens[i].value.empty());
    EXPECT_TRUE(values.insert(tokens[i].value).second)
        << "token value repeated: " << tokens[i].value;
  }
}

// Item 11: the sequence also increases after a tenure expires.
TEST_P(ConformanceTest, SequencesIncreaseAfterExpiry) {
  auto a = MakeLease("x", "a");
  auto b = MakeLease("x", "b");
  auto first = AcquireToken(*a);
  ASSERT_TRUE(first.has_value());
  if (!harness().SetHang(true)) GTEST_SKIP() << GetParam().name << " cannot hang";
  harness().Sleep(harness().ttl() + harness().expiry_slack());
  harness().SetHang(false);
  EXPECT_FALSE(a->CheckAlive());

  auto second = AcquireToken(*b);
  ASSERT_TRUE(second.has_value());
  EXPECT_GT(second->sequence, first->sequence);
  EXPECT_NE(second->value, first->value);

  // b's tenure expires too; the same owner that lost first comes back.
  ASSERT_TRUE(harness().SetHang(true));
  harness().Sleep(harness().ttl() + harness().expiry_slack());
  harness().SetHang(false);
  EXPECT_FALSE(b->CheckAlive());
  auto third = AcquireToken(*a);
  ASSERT_TRUE(third.has_value());
  EXPECT_GT(third->sequence, second->sequence);
  EXPECT_NE(third->value, first->value);
}

// Item 13: a resource fencing on the sequence rejects the stale holder.
TEST_P(ConformanceTest, AFenceRejectsAStaleHoldersSequence) {
  auto a = MakeLease("x", "a");
  auto b = MakeLease("x", "b");
  Fence fence;
  auto stale = AcquireToken(*a);
  ASSERT_TRUE(stale.has_value());
  EXPECT_TRUE(fence.Admit(stale->sequence).ok());

  if (!harness().SetHang(true)) GTEST_SKIP() << GetParam().name << " cannot hang";
  harness().Sleep(harness().ttl() + harness().expiry_slack());
  harness().SetHang(false);
  EXPECT_FALSE(a->CheckAlive());

  auto fresh = AcquireToken(*b);
  ASSERT_TRUE(fresh.has_value());
  EXPECT_TRUE(fence.Admit(fresh->sequence).ok());
  Status late_write = fence.Admit(stale->sequence);
  EXPECT_EQ(late_write.code(), StatusCode::kFailedPrecondition) << late_write.ToString();
  EXPECT_TRUE(fence.Admit(fresh->sequence).ok());  // the live holder keeps writing
}

// Items 8, 11, 13, 15: a randomised schedule of acquires, releases, outages,
// pauses and the passage of time never yields two live holders, and the fence
// admits every write of the live holder and none of a stale one.
TEST_P(ConformanceTest, ARandomScheduleNeverYieldsTwoLiveHoldersOrAStaleWrite) {
  constexpr int kLeases = 3;
  std::vector<std::unique_ptr<Lease>> leases;
  for (int i = 0; i < kLeases; ++i) {
    leases.push_back(MakeLease("x", "owner-" + std::to_string(i)));
  }
  std::vector<std::optional<FencingToken>> tokens(kLeases);
  Fence fence;
  uint64_t highest_issued = 0;
  const bool can_hang = harness().SetHang(false);
  bool hung = false;
  std::mt19937 rng(20240611);
  const Duration ttl = harness().ttl();
  const int steps = harness().simulated() ? 300 : 40;

  for (int step = 0; step < steps; ++step) {
    SCOPED_TRACE("step " + std::to_string(step));
    const int i = static_cast<int>(rng() % kLeases);
    switch (rng() % 7) {
      case 0:
      case 1: {
        AcquireResult r = leases[i]->AcquireWithToken();
        if (r.ok() && r->has_value()) {
          tokens[i] = **r;
          highest_issued = std::max(highest_issued, (*r)->sequence);
        }
        break;
      }
      case 2: {
        Status s = leases[i]->Release();
        (void)s;  // may fail during an outage; the invariants below still hold
        break;
      }
      case 3:
      case 4:
        harness().Sleep(ttl * static_cast<int64_t>(rng() % 100) / 100);
        break;
      case 5:
        if (can_hang) {
          hung = !hung;
          harness().SetHang(hung);
        }
        break;
      case 6:
        if (harness().simulated()) {  // the whole process pauses, then resumes
          auto sim = std::static_pointer_cast<SimulatedRuntime>(harness().runtime());
          sim->fake_clock().Advance(ttl * static_cast<int64_t>(rng() % 150) / 100);
        }
        break;
    }

    int alive = 0;
    for (int j = 0; j < kLeases; ++j) {
      if (!leases[j]->CheckAlive()) continue;
      ++alive;
      ASSERT_TRUE(tokens[j].has_value());
      EXPECT_EQ(leases[j]->token(), tokens[j]);
      EXPECT_EQ(tokens[j]->sequence, highest_issued) << "a live holder must hold the latest tenure";
      Status write = fence.Admit(tokens[j]->sequence);
      EXPECT_TRUE(write.ok()) << "live holder " << j << " rejected: " << write.ToString();
    }
    ASSERT_LE(alive, 1) << "two live holders";
    for (int j = 0; j < kLeases; ++j) {
      if (leases[j]->CheckAlive() || !tokens[j] || tokens[j]->sequence >= fence.highest()) {
        continue;
      }
      EXPECT_FALSE(fence.Admit(tokens[j]->sequence).ok()) << "stale holder " << j << " admitted";
    }
  }
  harness().SetHang(false);
}

// ---------------------------------------------------------------------------
// Renewal, liveness, loss.

// Item 14: renewals keep the lease for many TTLs; no contender gets in.
TEST_P(ConformanceTest, AHeldLeaseIsKeptForManyTtls) {
  auto holder = MakeLease("x", "a");
  auto contender = MakeLease("x", "b");
  LossLog losses(harness().runtime()->clock());
  auto sub = holder->OnLost(losses.Handler());
  auto token = AcquireToken(*holder);
  ASSERT_TRUE(token.has_value());

  for (int i = 0; i < 20; ++i) {  // 10 TTLs
    harness().Sleep(harness().ttl() / 2);
    ASSERT_TRUE(holder->CheckAlive()) << "after " << (i + 1) << " half TTLs";
    EXPECT_EQ(holder->token(), token);
    if (i % 5 == 4) {
      EXPECT_TRUE(IsContended(*contender));
    }
  }
  EXPECT_EQ(losses.count(), 0u);
}

// Item 15: with renewals failing, CheckAlive() is true until the safe deadline
// (send time of the acquire + TTL - drift allowance) and false from it on.
TEST_P(ConformanceTest, CheckAliveTurnsFalseAtTheSafeDeadlineWhenRenewalsFail) {
  auto lease = MakeLease("x", "a");
  const TimePoint before = Now();
  ASSERT_TRUE(Acquires(*lease));
  const TimePoint after = Now();  // the engine sent the request in [before, after]
  if (!harness().FailNextRenewals(1 << 30)) {
    GTEST_SKIP() << GetParam().name << " cannot fail renewals";
  }
  ASSERT_TRUE(lease->safe_deadline().has_value());
  const TimePoint deadline = *lease->safe_deadline();
  const Duration lifetime = harness().ttl() - *lease->options().drift_allowance;
  EXPECT_TRUE(NotAfter(before + lifetime, deadline));
  EXPECT_TRUE(NotAfter(deadline, after + lifetime));

  if (harness().simulated()) {
    harness().Sleep(deadline - Now() - 1ms);
    EXPECT_TRUE(lease->CheckAlive()) << "1ms before the safe deadline";
    EXPECT_EQ(lease->safe_deadline(), deadline) << "a failed renewal moved the deadline";
  }
  harness().Sleep(Max(deadline - Now(), Duration::zero()));
  EXPECT_FALSE(lease->CheckAlive()) << "at the safe deadline";
  EXPECT_FALSE(lease->token().has_value());
  harness().FailNextRenewals(0);
}

// Item 15: the same while the store does not answer at all.
TEST_P(ConformanceTest, CheckAliveTurnsFalseAtTheSafeDeadlineWhenTheStoreHangs) {
  auto lease = MakeLease("x", "a");
  const TimePoint before = Now();
  ASSERT_TRUE(Acquires(*lease));
  const TimePoint after = Now();  // the engine sent the request in [before, after]
  if (!harness().SetHang(true)) GTEST_SKIP() << GetParam().name << " cannot hang";
  ASSERT_TRUE(lease->safe_deadline().has_value());
  const TimePoint deadline = *lease->safe_deadline();
  const Duration lifetime = harness().ttl() - *lease->options().drift_allowance;
  EXPECT_TRUE(NotAfter(before + lifetime, deadline));
  EXPECT_TRUE(NotAfter(deadline, after + lifetime));

  if (harness().simulated()) {
    harness().Sleep(deadline - Now() - 1ms);
    EXPECT_TRUE(lease->CheckAlive()) << "1ms before the safe deadline";
  }
  harness().Sleep(Max(deadline - Now(), Duration::zero()));
  EXPECT_FALSE(lease->CheckAlive()) << "at the safe deadline";
}

// Items 15, 52: a process paused past its deadline sees CheckAlive() false the
// moment it resumes, before any library code runs; then OnLost fires.
TEST_P(ConformanceTest, APausedProcessSeesCheckAliveFalseTheMomentItResumes) {
  if (!harness().simulated()) GTEST_SKIP() << "needs a simulated clock to pause";
  auto sim = std::static_pointer_cast<SimulatedRuntime>(harness().runtime());
  auto lease = MakeLease("x", "a");
  LossLog losses(harness().runtime()->clock());
  auto sub = lease->OnLost(losses.Handler());
  auto token = AcquireToken(*lease);
  ASSERT_TRUE(token.has_value());
  harness().Sleep(harness().ttl() / 2);  // a renewal or so
  ASSERT_TRUE(lease->CheckAlive());

  sim->fake_clock().Advance(harness().ttl());  // nothing runs meanwhile
  EXPECT_FALSE(lease->CheckAlive());
  EXPECT_FALSE(lease->token().has_value());

  harness().Sleep(harness().callback_slack());
  EXPECT_FALSE(lease->CheckAlive()) << "a late renewal resurrected the tenure";
  ASSERT_EQ(losses.count(), 1u);
  EXPECT_EQ(losses.event(0).reason, LossReason::kExpired);
  EXPECT_EQ(losses.event(0).token, *token);
  harness().Sleep(harness().ttl());
  EXPECT_EQ(losses.count(), 1u);
}

// Item 16: transient renewal failures are retried; the lease survives.
TEST_P(ConformanceTest, TransientRenewalFailuresAreRetriedAndTheLeaseSurvives) {
  auto lease = MakeLease("x", "a");
  auto contender = MakeLease("x", "b");
  LossLog losses(harness().runtime()->clock());
  auto sub = lease->OnLost(losses.Handler());
  auto token = AcquireToken(*lease);
  ASSERT_TRUE(token.has_value());
  if (!harness().FailNextRenewals(2)) {
    GTEST_SKIP() << GetParam().name << " cannot fail renewals";
  }
  harness().Sleep(harness().ttl() * 2);
  EXPECT_TRUE(lease->CheckAlive());
  EXPECT_EQ(lease->token(), token);
  EXPECT_EQ(losses.count(), 0u);
  EXPECT_TRUE(IsContended(*contender));
}

// Item 16: an outage shorter than the time left before the deadline is ridden
// out by retrying.
TEST_P(ConformanceTest, AnOutageShorterThanTheDeadlineIsRiddenOut) {
  auto lease = MakeLease("x", "a");
  LossLog losses(harness().runtime()->clock());
  auto sub = lease->OnLost(losses.Handler());
  const TimePoint start = Now();
  ASSERT_TRUE(Acquires(*lease));
  if (!harness().SetUnavailable(true)) {
    GTEST_SKIP() << GetParam().name << " cannot be made unavailable";
  }
  // The first renewal (at ttl/3) and its retries fail until ttl/2; ttl/2 -
  // drift is left to retry before the deadline.
  harness().Sleep(harness().ttl() / 2);
  harness().SetUnavailable(false);
  const Duration back_after = Now() - start;
  harness().Sleep(harness().ttl());
  EXPECT_TRUE(lease->CheckAlive());
  EXPECT_EQ(losses.count(), 0u) << "the store was back " << FormatDuration(back_after)
                                << " after the acquire began" << losses.Describe(start);
}

// Item 17: OnLost fires exactly once, as "expired", no later than the safe
// deadline plus slack, while the store does not answer at all.
TEST_P(ConformanceTest, OnLostFiresOnceAsExpiredOnTimeWhileTheStoreHangs) {
  auto lease = MakeLease("x", "a");
  LossLog losses(harness().runtime()->clock());
  auto sub = lease->OnLost(losses.Handler());
  auto token = AcquireToken(*lease);
  ASSERT_TRUE(token.has_value());
  if (!harness().SetHang(true)) GTEST_SKIP() << GetParam().name << " cannot hang";
  const TimePoint deadline = *lease->safe_deadline();

  harness().Sleep(deadline - Now() + harness().callback_slack());
  ASSERT_EQ(losses.count(), 1u);
  EXPECT_EQ(losses.event(0).reason, LossReason::kExpired);
  EXPECT_EQ(losses.event(0).token, *token);
  EXPECT_TRUE(NotBefore(losses.time(0), deadline))
      << "lost before the deadline without a definitive answer";
  EXPECT_TRUE(NotAfter(losses.time(0), deadline + harness().callback_slack()));
  EXPECT_FALSE(lease->CheckAlive());

  harness().Sleep(harness().ttl() * 2);
  EXPECT_EQ(losses.count(), 1u);
}

// Item 17: a foreign write (takeover, delete) ends the tenure at once, or at
// the latest by the safe deadline, with `reason`; exactly once. `write`
// returns false if the backend cannot perform it (the test is then skipped).
void ExpectOneLossAfterForeignWrite(ConformanceTest& test, Harness& harness,
                                    std::unique_ptr<Lease> lease,
                                    const std::function<bool(const std::string&)>& write,
                                    LossReason reason) {
  LossLog losses(harness.runtime()->clock());
  auto sub = lease->OnLost(losses.Handler());
  auto token = AcquireToken(*lease);
  ASSERT_TRUE(token.has_value());
  const TimePoint deadline = *lease->safe_deadline();
  if (!write(lease->name())) {
    GTEST_SKIP() << test.GetParam().name << " cannot perform a foreign " << LossReasonName(reason)
                 << " write";
  }

  harness.Sleep(deadline - harness.runtime()->clock().Now() + harness.callback_slack());
  ASSERT_EQ(losses.count(), 1u);
  EXPECT_EQ(losses.event(0).reason, reason);
  EXPECT_EQ(losses.event(0).token, *token);
  EXPECT_TRUE(NotAfter(losses.time(0), deadline + harness.callback_slack()));
  EXPECT_FALSE(lease->CheckAlive());

  harness.Sleep(harness.ttl() * 2);
  EXPECT_EQ(losses.count(), 1u);
}

// Item 17: a foreign takeover ends the tenure as "taken over", on time.
TEST_P(ConformanceTest, OnLostFiresOnceAsTakenOverWhenAForeignWriterTakesOver) {
  ExpectOneLossAfterForeignWrite(
      *this, harness(), MakeLease("x", "a"),
      [&](const std::string& name) { return harness().ForeignTakeOver(name, "intruder"); },
      LossReason::kTakenOver);
}

// Item 17: a deleted record ends the tenure as "deleted", on time.
TEST_P(ConformanceTest, OnLostFiresOnceAsDeletedWhenTheRecordIsDeleted) {
  ExpectOneLossAfterForeignWrite(
      *this, harness(), MakeLease("x", "a"),
      [&](const std::string& name) { return harness().ForeignDelete(name); }, LossReason::kDeleted);
}

// Item 18: OnLost never fires after a voluntary release.
TEST_P(ConformanceTest, OnLostNeverFiresAfterAVoluntaryRelease) {
  auto lease = MakeLease("x", "a");
  LossLog losses(harness().runtime()->clock());
  auto sub = lease->OnLost(losses.Handler());
  ASSERT_TRUE(Acquires(*lease));
  harness().Sleep(harness().ttl() / 2);
  Status released = lease->Release();
  ASSERT_TRUE(released.ok()) << released.ToString();
  harness().Sleep(harness().ttl() * 3);
  EXPECT_EQ(losses.count(), 0u);
}

// Item 18: an unregistered handler is never called; the others are.
TEST_P(ConformanceTest, AnUnsubscribedHandlerIsNeverCalled) {
  auto lease = MakeLease("x", "a");
  LossLog kept(harness().runtime()->clock());
  LossLog unsubscribed(harness().runtime()->clock());
  LossLog dropped(harness().runtime()->clock());
  auto keep = lease->OnLost(kept.Handler());
  auto gone = lease->OnLost(unsubscribed.Handler());
  { auto scoped = lease->OnLost(dropped.Handler()); }  // destroyed: unregistered
  gone.Unsubscribe();
  gone.Unsubscribe();  // idempotent

  ASSERT_TRUE(Acquires(*lease));
  if (!harness().SetHang(true)) GTEST_SKIP() << GetParam().name << " cannot hang";
  harness().Sleep(harness().ttl() + harness().callback_slack());
  harness().SetHang(false);
  EXPECT_EQ(kept.count(), 1u);
  EXPECT_EQ(unsubscribed.count(), 0u);
  EXPECT_EQ(dropped.count(), 0u);
}

// Item 19: a throwing handler stops neither the other handlers nor the library.
TEST_P(ConformanceTest, AThrowingHandlerDoesNotStopTheOthers) {
  auto lease = MakeLease("x", "a");
  LossLog losses(harness().runtime()->clock());
  auto thrower = lease->OnLost([](const LostEvent&) { throw std::runtime_error("boom"); });
  auto sub = lease->OnLost(losses.Handler());
  auto thrower2 = lease->OnLost([](const LostEvent&) { throw 42; });

  for (int tenure = 1; tenure <= 2; ++tenure) {
    SCOPED_TRACE("tenure " + std::to_string(tenure));
    ASSERT_TRUE(Acquires(*lease));
    if (!harness().SetHang(true)) GTEST_SKIP() << GetParam().name << " cannot hang";
    harness().Sleep(harness().ttl() + harness().callback_slack());
    harness().SetHang(false);
    EXPECT_FALSE(lease->CheckAlive());
    EXPECT_EQ(losses.count(), static_cast<size_t>(tenure));
    harness().Sleep(harness().expiry_slack());
  }
}

// ---------------------------------------------------------------------------
// Release.

// Item 21: CheckAlive() is false from the moment Release() starts, even while
// the store has not answered, and after it fails.
TEST_P(ConformanceTest, CheckAliveIsFalseFromTheMomentReleaseStarts) {
  auto lease = MakeLease("x", "a");
  ASSERT_TRUE(Acquires(*lease));
  if (!harness().SetHang(true)) GTEST_SKIP() << GetParam().name << " cannot hang";

  std::atomic<bool> probed{false};
  std::atomic<bool> alive_during_release{true};
  Lease* raw = lease.get();
  TimerId probe = harness().runtime()->RunAt(Now() + 1ms, [&, raw] {
    alive_during_release = raw->CheckAlive();
    probed = true;
  });
  Status released = lease->Release();  // the store never answers
  harness().runtime()->CancelTimer(probe);
  EXPECT_FALSE(released.ok()) << "a release the store never confirmed reported OK";
  EXPECT_FALSE(lease->CheckAlive());
  EXPECT_FALSE(lease->token().has_value());
  ASSERT_TRUE(probed.load()) << "Release() returned within 1ms while the store hangs";
  EXPECT_FALSE(alive_during_release.load());
}

// Items 21, 24: a release the store refuses is reported, and CheckAlive() is
// false anyway.
TEST_P(ConformanceTest, CheckAliveIsFalseAfterAFailedRelease) {
  auto lease = MakeLease("x", "a");
  ASSERT_TRUE(Acquires(*lease));
  if (!harness().SetUnavailable(true)) {
    GTEST_SKIP() << GetParam().name << " cannot be made unavailable";
  }
  Status released = lease->Release();
  EXPECT_FALSE(released.ok());
  EXPECT_FALSE(lease->CheckAlive());
  harness().SetUnavailable(false);
  harness().Sleep(harness().ttl() / 2);
  EXPECT_FALSE(lease->CheckAlive());
}

// Item 22: a holder whose tenure lapsed cannot free the new holder's lease.
TEST_P(ConformanceTest, ALapsedHoldersReleaseDoesNotFreeTheNewHoldersLease) {
  auto lapsed = MakeLease("x", "a");
  auto current = MakeLease("x", "b");
  auto third = MakeLease("x", "c");
  ASSERT_TRUE(Acquires(*lapsed));
  if (!harness().SetHang(true)) GTEST_SKIP() << GetParam().name << " cannot hang";
  harness().Sleep(harness().ttl() + harness().expiry_slack());
  harness().SetHang(false);
  ASSERT_TRUE(Acquires(*current));

  Status released = lapsed->Release();
  EXPECT_TRUE(released.ok()) << released.ToString();
  EXPECT_TRUE(current->CheckAlive());
  EXPECT_TRUE(IsContended(*third));
  ExpectStoreHolder(harness(), current->name(), current->identity());
}

// Item 22: a holder that has not yet noticed a takeover releases: the release is
// conditional on its tenure and leaves the foreign record alone.
TEST_P(ConformanceTest, AReleaseAfterAnUnnoticedTakeOverLeavesTheNewRecord) {
  auto lease = MakeLease("x", "a");
  auto contender = MakeLease("x", "b");
  ASSERT_TRUE(Acquires(*lease));
  if (!harness().ForeignTakeOver(lease->name(), "intruder")) {
    GTEST_SKIP() << GetParam().name << " cannot simulate a foreign takeover";
  }
  Status released = lease->Release();
  EXPECT_TRUE(released.ok()) << released.ToString();
  EXPECT_TRUE(IsContended(*contender));
  ExpectStoreHolder(harness(), lease->name(), "intruder");
}

// lease.h: destroying a held Lease starts a release (the lease is free well
// before its TTL) and calls no handler.
TEST_P(ConformanceTest, DestroyingAHeldLeaseReleasesIt) {
  auto holder = MakeLease("x", "a");
  auto contender = MakeLease("x", "b");
  LossLog losses(harness().runtime()->clock());
  auto sub = holder->OnLost(losses.Handler());  // outlives the Lease
  ASSERT_TRUE(Acquires(*holder));
  holder.reset();
  const TimePoint destroyed = Now();
  Future<AcquireResult> waiting =
      contender->StartAcquire({.wait = true, .timeout = harness().ttl() / 2});
  const AcquireResult& r = waiting.Wait();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->has_value());
  EXPECT_TRUE(AtMost(Now() - destroyed, harness().ttl() / 2 - 1ms));
  harness().Sleep(harness().ttl());
  EXPECT_EQ(losses.count(), 0u);
}

// Item 23: Release() when never held is OK (and does nothing).
TEST_P(ConformanceTest, ReleaseWhenNeverHeldIsOk) {
  auto lease = MakeLease("x", "a");
  auto holder = MakeLease("x", "b");
  Status never_held = lease->Release();
  EXPECT_TRUE(never_held.ok()) << never_held.ToString();
  EXPECT_FALSE(lease->CheckAlive());

  // Also while someone else holds it: that holder is unaffected.
  ASSERT_TRUE(Acquires(*holder));
  Status contended = lease->Release();
  EXPECT_TRUE(contended.ok()) << contended.ToString();
  EXPECT_TRUE(holder->CheckAlive());
  EXPECT_TRUE(IsContended(*lease));
  Status again = lease->Release();
  EXPECT_TRUE(again.ok()) << again.ToString();
  EXPECT_TRUE(holder->CheckAlive());

  // And a second Release() after a successful one.
  Status first = holder->Release();
  ASSERT_TRUE(first.ok()) << first.ToString();
  Status second = holder->Release();
  EXPECT_TRUE(second.ok()) << second.ToString();
}

// Item 24: a failed release is reported, renewal stays stopped and the record is
// left for expiry: another contender gets in only once the TTL has passed.
TEST_P(ConformanceTest, AFailedReleaseIsReportedAndTheRecordIsLeftForExpiry) {
  auto lease = MakeLease("x", "a");
  auto contender = MakeLease("x", "b");
  LossLog losses(harness().runtime()->clock());
  auto sub = lease->OnLost(losses.Handler());
  ASSERT_TRUE(Acquires(*lease));
  const TimePoint acquired = Now();
  if (!harness().SetUnavailable(true)) {
    GTEST_SKIP() << GetParam().name << " cannot be made unavailable";
  }
  Status released = lease->Release();
  EXPECT_FALSE(released.ok());
  harness().SetUnavailable(false);
  EXPECT_FALSE(lease->CheckAlive());

  EXPECT_TRUE(IsContended(*contender)) << "the record should be left until it expires";
  harness().Sleep(acquired + harness().ttl() + harness().expiry_slack() - Now());
  EXPECT_TRUE(Acquires(*contender)) << "the released holder kept renewing";
  EXPECT_EQ(losses.count(), 0u) << "OnLost fired after a voluntary release";
}

// ---------------------------------------------------------------------------
// Waiting and hand-off.

// Item 25: a waiting contender is woken when the holder releases, and holds
// within the backend's expiry slack (not after a polling period).
// `free_it` frees the lease held by `holder` (returns false if the backend
// cannot); a contender already waiting must hold it within the expiry slack.
void ExpectWaiterWokenWhenFreed(ConformanceTest& test, Harness& harness,
                                std::unique_ptr<Lease> holder, std::unique_ptr<Lease> waiter,
                                const std::function<bool(Lease&)>& free_it) {
  ASSERT_TRUE(Acquires(*holder));
  Future<AcquireResult> waiting =
      waiter->StartAcquire({.wait = true, .timeout = harness.ttl() * 10});
  harness.Sleep(harness.ttl() / 2);
  ASSERT_FALSE(waiting.ready());
  EXPECT_FALSE(waiter->CheckAlive());

  const TimePoint freed_at = harness.runtime()->clock().Now();
  if (!free_it(*holder)) GTEST_SKIP() << test.GetParam().name << " cannot free the lease that way";
  const AcquireResult& r = waiting.Wait();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->has_value());
  EXPECT_TRUE(AtMost(harness.runtime()->clock().Now() - freed_at, harness.expiry_slack()));
  EXPECT_TRUE(waiter->CheckAlive());
}

TEST_P(ConformanceTest, AWaitingContenderIsWokenWhenTheHolderReleases) {
  ExpectWaiterWokenWhenFreed(*this, harness(), MakeLease("x", "a"),
                             MakeLease({.name = "x", .owner = "b", .retry_delay = harness().ttl()}),
                             [](Lease& holder) {
                               Status released = holder.Release();
                               EXPECT_TRUE(released.ok()) << released.ToString();
                               return true;
                             });
}

// Item 25: ... and when the record disappears.
TEST_P(ConformanceTest, AWaitingContenderIsWokenWhenTheRecordIsDeleted) {
  ExpectWaiterWokenWhenFreed(*this, harness(), MakeLease("x", "a"),
                             MakeLease({.name = "x", .owner = "b", .retry_delay = harness().ttl()}),
                             [&](Lease& holder) { return harness().ForeignDelete(holder.name()); });
}

// Item 26: waiting honours its timeout (kDeadlineExceeded).
TEST_P(ConformanceTest, WaitingHonoursItsTimeout) {
  auto holder = MakeLease("x", "a");
  auto waiter = MakeLease("x", "b");
  ASSERT_TRUE(Acquires(*holder));
  const Duration timeout = harness().ttl() / 2;
  const TimePoint start = Now();
  Result<bool> r = waiter->Acquire({.wait = true, .timeout = timeout});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_TRUE(AtLeast(Now() - start, timeout));
  EXPECT_TRUE(
      AtMost(Now() - start, timeout + harness().callback_slack() + harness().expiry_slack()));
  EXPECT_FALSE(waiter->CheckAlive());
  EXPECT_TRUE(holder->CheckAlive());
}

// Item 26: waiting honours cancellation (kCancelled), promptly, and the
// cancelled waiter does not take the lease later.
TEST_P(ConformanceTest, WaitingHonoursCancellation) {
  auto holder = MakeLease("x", "a");
  auto waiter = MakeLease("x", "b");
  auto later = MakeLease("x", "c");
  ASSERT_TRUE(Acquires(*holder));
  std::stop_source stop;
  Future<AcquireResult> waiting = waiter->StartAcquire(
      {.wait = true, .timeout = harness().ttl() * 10, .stop = stop.get_token()});
  harness().Sleep(harness().ttl() / 2);
  ASSERT_FALSE(waiting.ready());

  const TimePoint cancelled_at = Now();
  stop.request_stop();
  const AcquireResult& r = waiting.Wait();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCancelled) << r.status().ToString();
  EXPECT_TRUE(AtMost(Now() - cancelled_at, harness().callback_slack()));
  EXPECT_FALSE(waiter->CheckAlive());

  Status released = holder->Release();
  ASSERT_TRUE(released.ok()) << released.ToString();
  harness().Sleep(harness().ttl() / 2);
  EXPECT_FALSE(waiter->CheckAlive());
  EXPECT_TRUE(Acquires(*later)) << "the cancelled waiter took the lease";
}

// ---------------------------------------------------------------------------
// Concurrency and scale.

// Item 27: concurrent StartAcquire() calls on one instance share one attempt.
TEST_P(ConformanceTest, ConcurrentStartAcquiresOnOneInstanceShareOneAttempt) {
  auto lease = MakeLease("x", "a");
  auto other = MakeLease("x", "b");
  std::vector<Future<AcquireResult>> futures;
  for (int i = 0; i < 5; ++i) futures.push_back(lease->StartAcquire());
  std::optional<FencingToken> token;
  for (auto& f : futures) {
    const AcquireResult& r = f.Wait();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(r->has_value());
    if (!token) token = **r;
    EXPECT_EQ(**r, *token) << "two attempts, two tenures";
  }
  EXPECT_EQ(lease->token(), token);
  EXPECT_TRUE(IsContended(*other));
}

// Item 28: many leases are held at once, and renewals keep them all. They
// share one client, as the leases of one process do: that is the scale a
// store's renewal batching is for (200 clients of one lease each measure the
// test machine's connection limits instead, and time out under ctest -j's
// load on two cores).
TEST_P(ConformanceTest, ManyLeasesAreHeldAtOnce) {
  const int count = harness().many_leases();
  const std::shared_ptr<Store> store = harness().NewClient();
  ASSERT_NE(store, nullptr);
  std::vector<std::unique_ptr<Lease>> leases;
  // Each loss with its reason and time, so that a failure says why.
  std::vector<std::unique_ptr<LossLog>> losses;
  std::vector<Subscription> subscriptions;
  const TimePoint start = Now();
  for (int i = 0; i < count; ++i) {
    leases.push_back(MakeLease({.name = "l" + std::to_string(i), .owner = "a"}, store));
    losses.push_back(std::make_unique<LossLog>(harness().runtime()->clock()));
    subscriptions.push_back(leases.back()->OnLost(losses.back()->Handler()));
    ASSERT_TRUE(Acquires(*leases.back())) << "lease " << i;
  }
  harness().Sleep(harness().ttl() * 3);
  for (int i = 0; i < count; ++i) {
    EXPECT_TRUE(leases[i]->CheckAlive()) << "lease " << i;
    EXPECT_EQ(losses[i]->count(), 0u)
        << "lease " << i << ", after the first acquire:" << losses[i]->Describe(start);
  }
  auto first = MakeLease("l0", "b");
  auto last = MakeLease("l" + std::to_string(count - 1), "b");
  EXPECT_TRUE(IsContended(*first));
  EXPECT_TRUE(IsContended(*last));
}

// ---------------------------------------------------------------------------
// Operators' tools.

// Store::List: the records under a prefix, sorted by name, each as Inspect
// reads it -- holder and sequence of the held ones, time left within the
// TTL; a released lease as Inspect sees it (free with its sequence, or gone
// where the store deletes it); nothing outside the prefix.
TEST_P(ConformanceTest, ListShowsTheLeasesUnderAPrefixAsInspectReadsThem) {
  auto b = MakeLease("ls-b", "owner-b");
  auto a = MakeLease("ls-a", "owner-a");
  auto c = MakeLease("ls-c", "owner-c");
  auto outside = MakeLease("other", "owner-o");
  for (Lease* l : {b.get(), a.get(), c.get(), outside.get()}) ASSERT_TRUE(Acquires(*l));
  const uint64_t c_sequence = c->token()->sequence;
  ASSERT_TRUE(c->Release().ok());

  auto store = harness().NewClient();
  const auto listed = ListRecords(*store, name_prefix_ + "ls-", harness().ttl());
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  const auto c_record = InspectRecord(*store, name_prefix_ + "ls-c", harness().ttl());
  const bool keeps_free = c_record.ok();
  if (!keeps_free) {
    EXPECT_EQ(c_record.status().code(), StatusCode::kNotFound);
  }
  ASSERT_EQ(listed->size(), keeps_free ? 3u : 2u);
  const LeaseRecord& ra = (*listed)[0];
  const LeaseRecord& rb = (*listed)[1];
  EXPECT_EQ(ra.name, name_prefix_ + "ls-a");
  EXPECT_THAT(ra.holder, ::testing::StartsWith("owner-a#")) << "holder: owner#tenure";
  EXPECT_EQ(ra.token.sequence, a->token()->sequence);
  EXPECT_EQ(ra.token, *a->token());
  EXPECT_EQ(rb.name, name_prefix_ + "ls-b");
  EXPECT_THAT(rb.holder, ::testing::StartsWith("owner-b#"));
  EXPECT_EQ(rb.token, *b->token());
  for (const LeaseRecord* r : {&ra, &rb}) {
    ASSERT_TRUE(r->remaining.has_value()) << r->name;
    EXPECT_GT(*r->remaining, Duration::zero()) << r->name;
    // Stores round TTLs up to what they grant (etcd: whole seconds, its minimum).
    EXPECT_LE(*r->remaining, Max(harness().ttl(), std::chrono::seconds(5))) << r->name;
  }
  if (keeps_free) {
    const LeaseRecord& rc = (*listed)[2];
    EXPECT_EQ(rc.name, name_prefix_ + "ls-c");
    EXPECT_EQ(rc.holder, "");
    EXPECT_EQ(rc.token.sequence, c_sequence);
    EXPECT_FALSE(rc.remaining.has_value());
    EXPECT_EQ(c_record->token.sequence, c_sequence);
  }

  // Everything: the prefix's leases and the one outside it, in name order.
  const auto all = ListRecords(*store, "", harness().ttl());
  ASSERT_TRUE(all.ok()) << all.status().ToString();
  const std::vector<std::string> names = testing::Names(*all);
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  EXPECT_THAT(names, ::testing::IsSupersetOf(
                         {name_prefix_ + "ls-a", name_prefix_ + "ls-b", name_prefix_ + "other"}));

  // A prefix nothing has.
  const auto none = ListRecords(*store, name_prefix_ + "zz-", harness().ttl());
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE(none->empty());
}

// ---------------------------------------------------------------------------
// Bad input.

// Item 29: names no store can hold are rejected by Lease::Create, before IO.
TEST_P(ConformanceTest, NamesTheStoreCannotHoldAreRejected) {
  auto store = harness().NewClient();
  const Duration ttl = harness().ttl();
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"empty", ""},
      {"embedded NUL", std::string("ab\0cd", 5)},
      {"254 bytes", std::string(254, 'a')},
  };
  for (const auto& [what, name] : bad) {
    SCOPED_TRACE(what);
    auto lease = Lease::Create(store, {.name = name, .owner = "a", .ttl = ttl});
    ASSERT_FALSE(lease.ok());
    EXPECT_EQ(lease.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(lease.status().message(), HasSubstr("name"));
  }
}

// ---------------------------------------------------------------------------
// Faults.

// Item 51 (and 7): the holder stops renewing; a waiting contender holds within
// TTL + the backend's expiry slack, and never before the old holder's deadline.
TEST_P(ConformanceTest, AWaitingContenderHoldsSoonAfterTheHolderStopsRenewing) {
  auto holder = MakeLease("x", "a");
  auto waiter = MakeLease("x", "b");
  LossLog losses(harness().runtime()->clock());
  auto sub = holder->OnLost(losses.Handler());
  ASSERT_TRUE(Acquires(*holder));
  const TimePoint acquired = Now();
  const TimePoint holder_deadline = *holder->safe_deadline();
  if (!harness().FailNextRenewals(1 << 30)) {
    GTEST_SKIP() << GetParam().name << " cannot fail renewals";
  }
  Future<AcquireResult> waiting =
      waiter->StartAcquire({.wait = true, .timeout = harness().ttl() * 3});
  const AcquireResult& r = waiting.Wait();
  const TimePoint took_over = Now();
  harness().FailNextRenewals(0);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->has_value());
  EXPECT_TRUE(NotAfter(took_over, acquired + harness().ttl() + harness().expiry_slack()));
  EXPECT_TRUE(NotBefore(took_over, holder_deadline)) << "two holders: the new one got in before "
                                                        "the old one's safe deadline";
  EXPECT_FALSE(holder->CheckAlive());
  harness().Sleep(harness().callback_slack());
  ASSERT_EQ(losses.count(), 1u);
  EXPECT_EQ(losses.event(0).reason, LossReason::kExpired);
}

// Item 53: the store is unreachable for longer than the TTL: every holder loses
// on time; once it is back, one contender acquires, with a higher sequence.
TEST_P(ConformanceTest, AnOutageLongerThanTheTtlLosesEveryHolderOnTime) {
  constexpr int kHolders = 3;
  std::vector<std::unique_ptr<Lease>> holders;
  std::vector<std::unique_ptr<LossLog>> logs;
  std::vector<Subscription> subs;
  std::vector<TimePoint> deadlines;
  uint64_t first_sequence = 0;
  for (int i = 0; i < kHolders; ++i) {
    holders.push_back(MakeLease("n" + std::to_string(i), "h" + std::to_string(i)));
    logs.push_back(std::make_unique<LossLog>(harness().runtime()->clock()));
    subs.push_back(holders.back()->OnLost(logs.back()->Handler()));
    auto token = AcquireToken(*holders.back());
    ASSERT_TRUE(token.has_value());
    if (i == 0) first_sequence = token->sequence;
    harness().Sleep(harness().ttl() / 10);  // spread the deadlines
  }
  if (!harness().SetUnavailable(true)) {
    GTEST_SKIP() << GetParam().name << " cannot be made unavailable";
  }
  // A renewal already on its way when the outage began may still land and
  // legitimately move its lease's deadline: read the deadlines once such
  // renewals have had time to come back.
  harness().Sleep(harness().callback_slack() / 2);
  for (auto& h : holders) deadlines.push_back(*h->safe_deadline());

  harness().Sleep(harness().ttl() * 3 / 2);
  for (int i = 0; i < kHolders; ++i) {
    SCOPED_TRACE("holder " + std::to_string(i));
    EXPECT_FALSE(holders[i]->CheckAlive());
    ASSERT_EQ(logs[i]->count(), 1u);
    EXPECT_EQ(logs[i]->event(0).reason, LossReason::kExpired);
    EXPECT_TRUE(NotAfter(logs[i]->time(0), deadlines[i] + harness().callback_slack()));
  }
  harness().SetUnavailable(false);
  harness().Sleep(harness().expiry_slack());

  auto b = MakeLease("n0", "b");
  auto c = MakeLease("n0", "c");
  Future<AcquireResult> fb = b->StartAcquire();
  Future<AcquireResult> fc = c->StartAcquire();
  const AcquireResult& rb = fb.Wait();
  const AcquireResult& rc = fc.Wait();
  ASSERT_TRUE(rb.ok()) << rb.status().ToString();
  ASSERT_TRUE(rc.ok()) << rc.status().ToString();
  ASSERT_NE(rb->has_value(), rc->has_value()) << "exactly one must win";
  const FencingToken& won = rb->has_value() ? **rb : **rc;
  EXPECT_GT(won.sequence, first_sequence);
  for (int i = 0; i < kHolders; ++i) EXPECT_EQ(logs[i]->count(), 1u);
}

}  // namespace leasehold::conformance
