#include "leasehold/clock.h"

#include <gtest/gtest.h>

#include <chrono>

namespace leasehold {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

TEST(FakeClockTest, EveryFakeClockStartsAtTheSameFixedPoint) {
  FakeClock a;
  FakeClock b;
  EXPECT_EQ(a.Now(), b.Now());
  EXPECT_EQ(a.WallNow(), b.WallNow());
  // Room below the start for "long ago" arithmetic without going negative.
  EXPECT_GE(a.Now().time_since_epoch(), hours(1));
}

TEST(FakeClockTest, FakeWallTimeStartsAtTheFirstOfJanuary2026) {
  FakeClock c;
  EXPECT_EQ(c.WallNow(), WallTime(seconds(1767225600)));
}

TEST(FakeClockTest, TimeDoesNotMoveUntilTold) {
  FakeClock c;
  const TimePoint t0 = c.Now();
  const WallTime w0 = c.WallNow();
  EXPECT_EQ(c.Now(), t0);
  EXPECT_EQ(c.WallNow(), w0);
}

TEST(FakeClockTest, AdvanceMovesForwardByExactlyTheGivenDuration) {
  FakeClock c;
  const TimePoint t0 = c.Now();
  c.Advance(milliseconds(1500));
  EXPECT_EQ(c.Now(), t0 + milliseconds(1500));
  c.Advance(nanoseconds(1));
  EXPECT_EQ(c.Now(), t0 + milliseconds(1500) + nanoseconds(1));
  c.Advance(Duration::zero());
  EXPECT_EQ(c.Now(), t0 + milliseconds(1500) + nanoseconds(1));
}

TEST(FakeClockTest, AdvanceToMovesToALaterPoint) {
  FakeClock c;
  const TimePoint target = c.Now() + seconds(7);
  c.AdvanceTo(target);
  EXPECT_EQ(c.Now(), target);
}

TEST(FakeClockTest, AdvanceToNeverMovesBackwards) {
  FakeClock c;
  c.Advance(seconds(10));
  const TimePoint t = c.Now();
  c.AdvanceTo(t - seconds(5));
  EXPECT_EQ(c.Now(), t);
  c.AdvanceTo(t);
  EXPECT_EQ(c.Now(), t);
}

TEST(FakeClockTest, WallTimeMovesInStepWithMonotonicTime) {
  FakeClock c;
  const TimePoint t0 = c.Now();
  const WallTime w0 = c.WallNow();
  c.Advance(milliseconds(2500));
  EXPECT_EQ(c.WallNow() - w0, milliseconds(2500));
  c.AdvanceTo(t0 + seconds(60));
  EXPECT_EQ(c.WallNow() - w0, seconds(60));
  EXPECT_EQ(c.Now() - t0, c.WallNow() - w0);
}

TEST(FakeClockTest, IsUsableThroughTheClockInterface) {
  FakeClock fake;
  const Clock& clock = fake;
  const TimePoint t0 = clock.Now();
  fake.Advance(seconds(3));
  EXPECT_EQ(clock.Now() - t0, seconds(3));
}

TEST(RealClockTest, IsMonotonicAcrossTwoReads) {
  const Clock& clock = RealClock();
  const TimePoint a = clock.Now();
  const TimePoint b = clock.Now();
  EXPECT_LE(a, b);
}

TEST(RealClockTest, IsOneProcessWideInstance) { EXPECT_EQ(&RealClock(), &RealClock()); }

TEST(RealClockTest, WallTimeIsTheCurrentDateNotTheFakeEpoch) {
  // A real clock is not accidentally a fake one: its wall time is "now", after
  // 2020-01-01, not the fixed fake start.
  EXPECT_GT(RealClock().WallNow(), WallTime(seconds(1577836800)));
  EXPECT_NE(RealClock().WallNow(), FakeClock().WallNow());
}

}  // namespace
}  // namespace leasehold
