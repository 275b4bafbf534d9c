// LeaseOptions validation, FormatDuration, and what Lease::Create checks
// before it does any IO.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include "leasehold/backends/memory.h"
#include "leasehold/lease.h"
#include "leasehold/runtime.h"

namespace leasehold {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;

LeaseOptions Valid() { return {.name = "db", .owner = "host-a", .ttl = seconds(15)}; }

// The error of validating `o`; fails the test if it validated.
Status ErrorOf(const LeaseOptions& o) {
  auto r = ValidateLeaseOptions(o);
  EXPECT_FALSE(r.ok()) << "accepted";
  return r.ok() ? Status::Ok() : r.status();
}

// --- FormatDuration ---------------------------------------------------------------

TEST(FormatDurationTest, ZeroIsZeroSeconds) { EXPECT_EQ(FormatDuration(Duration::zero()), "0s"); }

TEST(FormatDurationTest, PicksTheLargestUnitThatKeepsTheNumberAtLeastOne) {
  EXPECT_EQ(FormatDuration(milliseconds(1500)), "1.5s");
  EXPECT_EQ(FormatDuration(seconds(15)), "15s");
  EXPECT_EQ(FormatDuration(milliseconds(250)), "250ms");
  EXPECT_EQ(FormatDuration(microseconds(40)), "40us");
  EXPECT_EQ(FormatDuration(nanoseconds(12)), "12ns");
  EXPECT_EQ(FormatDuration(nanoseconds(1)), "1ns");
  EXPECT_EQ(FormatDuration(seconds(1)), "1s");
  EXPECT_EQ(FormatDuration(milliseconds(1)), "1ms");
  EXPECT_EQ(FormatDuration(microseconds(1)), "1us");
}

TEST(FormatDurationTest, KeepsFractionsOfTheChosenUnit) {
  EXPECT_EQ(FormatDuration(microseconds(2500)), "2.5ms");
  EXPECT_EQ(FormatDuration(nanoseconds(1500)), "1.5us");
}

TEST(FormatDurationTest, LongDurationsStayInPlainNotation) {
  EXPECT_EQ(FormatDuration(seconds(12600)), "12600s");
  EXPECT_EQ(FormatDuration(milliseconds(1234567)), "1234.567s");
}

TEST(FormatDurationTest, TheMostNegativeDurationIsFormattedWithoutOverflow) {
  EXPECT_EQ(FormatDuration(Duration::min()), "-9223372036.854s");
}

TEST(FormatDurationTest, NegativeDurationsGetAMinusSign) {
  EXPECT_EQ(FormatDuration(seconds(-1)), "-1s");
  EXPECT_EQ(FormatDuration(milliseconds(-1500)), "-1.5s");
  EXPECT_EQ(FormatDuration(milliseconds(-250)), "-250ms");
  EXPECT_EQ(FormatDuration(nanoseconds(-12)), "-12ns");
}

// --- ValidateLeaseOptions ---------------------------------------------------------

TEST(ValidateLeaseOptionsTest, AcceptsTheMinimalOptions) {
  auto r = ValidateLeaseOptions(Valid());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->name, "db");
  EXPECT_EQ(r->owner, "host-a");
  EXPECT_EQ(r->ttl, seconds(15));
}

TEST(ValidateLeaseOptionsTest, FillsInTheDocumentedDefaults) {
  auto r = ValidateLeaseOptions(Valid());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->renew_interval, seconds(5));  // ttl / 3
  ASSERT_TRUE(r->drift_allowance.has_value());
  EXPECT_EQ(*r->drift_allowance, milliseconds(300));  // ttl / 50
  EXPECT_EQ(r->request_timeout, seconds(5));          // = renew_interval
  EXPECT_EQ(r->acquire_attempts, 1);
  EXPECT_EQ(r->retry_delay, milliseconds(100));
  EXPECT_TRUE(r->unique_identity);
}

TEST(ValidateLeaseOptionsTest, RequestTimeoutDefaultsToAnExplicitRenewInterval) {
  LeaseOptions o = Valid();
  o.renew_interval = seconds(2);
  auto r = ValidateLeaseOptions(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->request_timeout, seconds(2));
}

TEST(ValidateLeaseOptionsTest, KeepsExplicitValues) {
  LeaseOptions o = Valid();
  o.renew_interval = seconds(4);
  o.request_timeout = seconds(1);
  o.drift_allowance = Duration::zero();
  o.acquire_attempts = 3;
  o.retry_delay = Duration::zero();
  o.unique_identity = false;
  auto r = ValidateLeaseOptions(o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->renew_interval, seconds(4));
  EXPECT_EQ(r->request_timeout, seconds(1));
  EXPECT_EQ(r->drift_allowance, Duration::zero());
  EXPECT_EQ(r->acquire_attempts, 3);
  EXPECT_EQ(r->retry_delay, Duration::zero());
  EXPECT_FALSE(r->unique_identity);
}

TEST(ValidateLeaseOptionsTest, AnEmptyNameIsRejectedNamingTheField) {
  LeaseOptions o = Valid();
  o.name = "";
  Status s = ErrorOf(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("name"));
}

TEST(ValidateLeaseOptionsTest, AnEmptyOwnerIsRejectedNamingTheField) {
  LeaseOptions o = Valid();
  o.owner = "";
  Status s = ErrorOf(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("owner"));
}

TEST(ValidateLeaseOptionsTest, AMissingTtlIsRejectedNamingTheField) {
  LeaseOptions o = Valid();
  o.ttl = Duration::zero();
  Status s = ErrorOf(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("ttl"), HasSubstr("0s")));
}

TEST(ValidateLeaseOptionsTest, ANegativeTtlIsRejectedNamingTheFieldAndTheValue) {
  LeaseOptions o = Valid();
  o.ttl = seconds(-3);
  Status s = ErrorOf(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("ttl"), HasSubstr("-3s")));
}

TEST(ValidateLeaseOptionsTest, ANegativeDriftAllowanceIsRejectedNamingTheFieldAndTheValue) {
  LeaseOptions o = Valid();
  o.drift_allowance = milliseconds(-20);
  Status s = ErrorOf(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("drift_allowance"), HasSubstr("-20ms")));
}

TEST(ValidateLeaseOptionsTest, ADriftAllowanceOfHalfTheTtlOrMoreIsRejected) {
  LeaseOptions o = Valid();
  o.ttl = seconds(10);
  o.renew_interval = milliseconds(100);  // fine whatever the drift: only drift is wrong
  o.drift_allowance = seconds(5);
  Status s = ErrorOf(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("drift_allowance"), HasSubstr("5s")));

  o.drift_allowance = seconds(7);
  s = ErrorOf(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("drift_allowance"), HasSubstr("7s")));
}

TEST(ValidateLeaseOptionsTest, ADriftAllowanceJustUnderHalfTheTtlIsAccepted) {
  LeaseOptions o = Valid();
  o.ttl = seconds(10);
  o.drift_allowance = seconds(5) - nanoseconds(1);
  o.renew_interval = milliseconds(100);
  auto r = ValidateLeaseOptions(o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
}

TEST(ValidateLeaseOptionsTest, ARenewIntervalOverHalfTheLifetimeIsRejectedNamingTheValue) {
  LeaseOptions o = Valid();
  o.ttl = seconds(10);
  o.drift_allowance = seconds(2);  // lifetime 8s: renew_interval at most 4s
  o.renew_interval = milliseconds(4500);
  Status s = ErrorOf(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("renew_interval"), HasSubstr("4.5s")));
}

TEST(ValidateLeaseOptionsTest, ARenewIntervalOfExactlyHalfTheLifetimeIsAccepted) {
  LeaseOptions o = Valid();
  o.ttl = seconds(10);
  o.drift_allowance = seconds(2);
  o.renew_interval = seconds(4);
  auto r = ValidateLeaseOptions(o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();

  o.renew_interval = seconds(4) + nanoseconds(1);
  EXPECT_EQ(ErrorOf(o).code(), StatusCode::kInvalidArgument);
}

TEST(ValidateLeaseOptionsTest, ANegativeRenewIntervalIsRejectedNamingTheFieldAndTheValue) {
  LeaseOptions o = Valid();
  o.renew_interval = milliseconds(-5);
  Status s = ErrorOf(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("renew_interval"), HasSubstr("-5ms")));
}

TEST(ValidateLeaseOptionsTest, ANegativeRequestTimeoutIsRejectedNamingTheFieldAndTheValue) {
  LeaseOptions o = Valid();
  o.request_timeout = seconds(-1);
  Status s = ErrorOf(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("request_timeout"), HasSubstr("-1s")));
}

TEST(ValidateLeaseOptionsTest, FewerThanOneAcquireAttemptIsRejectedNamingTheFieldAndTheValue) {
  LeaseOptions o = Valid();
  o.acquire_attempts = 0;
  Status s = ErrorOf(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("acquire_attempts"), HasSubstr("0")));

  o.acquire_attempts = -7;
  s = ErrorOf(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("acquire_attempts"), HasSubstr("-7")));
}

TEST(ValidateLeaseOptionsTest, ANegativeRetryDelayIsRejectedNamingTheFieldAndTheValue) {
  LeaseOptions o = Valid();
  o.retry_delay = milliseconds(-250);
  Status s = ErrorOf(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), AllOf(HasSubstr("retry_delay"), HasSubstr("-250ms")));
}

// --- Lease::Create ------------------------------------------------------------------

class LeaseCreateTest : public ::testing::Test {
 protected:
  std::shared_ptr<SimulatedRuntime> rt_ = SimulatedRuntime::Create();
  std::shared_ptr<MemoryStore> store_ = MemoryStore::Create(rt_);
};

TEST_F(LeaseCreateTest, ANullStoreIsRejected) {
  auto r = Lease::Create(nullptr, Valid());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("store"));
}

TEST_F(LeaseCreateTest, InvalidOptionsAreRejectedWithTheValidationError) {
  LeaseOptions o = Valid();
  o.retry_delay = milliseconds(-1);
  auto r = Lease::Create(store_, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status(), ValidateLeaseOptions(o).status());
}

TEST_F(LeaseCreateTest, AnEmptyNameIsRejected) {
  LeaseOptions o = Valid();
  o.name = "";
  auto r = Lease::Create(store_, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("name"));
}

TEST_F(LeaseCreateTest, ANameLongerThan253BytesIsRejectedAndOneOf253IsAccepted) {
  LeaseOptions o = Valid();
  o.name = std::string(254, 'a');
  auto r = Lease::Create(store_, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), AllOf(HasSubstr("254"), HasSubstr("253")));

  o.name = std::string(253, 'a');
  auto ok = Lease::Create(store_, o);
  EXPECT_TRUE(ok.ok()) << ok.status().ToString();
}

TEST_F(LeaseCreateTest, ANameWithANulByteIsRejected) {
  LeaseOptions o = Valid();
  o.name = std::string("db\0x", 4);
  auto r = Lease::Create(store_, o);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("NUL"));
}

TEST_F(LeaseCreateTest, CreateDoesNoIo) {
  auto r = Lease::Create(store_, Valid());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  MemoryStoreStats stats = store_->stats();
  EXPECT_EQ(stats.acquire_calls, 0u);
  EXPECT_EQ(stats.renew_calls, 0u);
  EXPECT_EQ(stats.release_calls, 0u);
  EXPECT_EQ(stats.inspect_calls, 0u);
  EXPECT_FALSE((*r)->CheckAlive());
}

TEST_F(LeaseCreateTest, ExposesTheValidatedOptionsWithDefaultsFilledIn) {
  auto r = Lease::Create(store_, Valid());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const Lease& lease = **r;
  EXPECT_EQ(lease.name(), "db");
  EXPECT_EQ(lease.options().renew_interval, seconds(5));
  EXPECT_EQ(lease.options().drift_allowance, milliseconds(300));
  EXPECT_EQ(lease.options().request_timeout, seconds(5));
  EXPECT_EQ(lease.store(), store_);
}

TEST_F(LeaseCreateTest, AUniqueIdentityIsTheOwnerHashASuffixAndDiffersPerInstance) {
  auto a = Lease::Create(store_, Valid());
  auto b = Lease::Create(store_, Valid());
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_THAT((*a)->identity(), StartsWith("host-a#"));
  EXPECT_THAT((*b)->identity(), StartsWith("host-a#"));
  EXPECT_GT((*a)->identity().size(), std::string("host-a#").size()) << "empty suffix";
  EXPECT_THAT((*a)->identity(), MatchesRegex("host-a#[0-9a-zA-Z]+"));
  EXPECT_NE((*a)->identity(), (*b)->identity());
}

TEST_F(LeaseCreateTest, WithoutUniqueIdentityTheIdentityIsExactlyTheOwner) {
  LeaseOptions o = Valid();
  o.unique_identity = false;
  auto a = Lease::Create(store_, o);
  auto b = Lease::Create(store_, o);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ((*a)->identity(), "host-a");
  EXPECT_EQ((*b)->identity(), "host-a");
}

}  // namespace
}  // namespace leasehold
