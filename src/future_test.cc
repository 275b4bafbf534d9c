#include "leasehold/future.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "leasehold/runtime.h"

namespace leasehold {
namespace {

using std::chrono::seconds;
using ::testing::ElementsAre;

TEST(FutureTest, ADefaultFutureIsInvalid) {
  Future<int> f;
  EXPECT_FALSE(f.valid());
}

TEST(FutureTest, AFutureIsNotReadyUntilItsPromiseIsSet) {
  Promise<int> p(nullptr);
  Future<int> f = p.future();
  EXPECT_TRUE(f.valid());
  EXPECT_FALSE(f.ready());
  EXPECT_FALSE(p.is_set());
  EXPECT_TRUE(p.Set(7));
  EXPECT_TRUE(f.ready());
  EXPECT_TRUE(p.is_set());
  EXPECT_EQ(f.Wait(), 7);
}

TEST(FutureTest, TheFirstSetWinsAndLaterOnesAreDropped) {
  Promise<std::string> p(nullptr);
  Promise<std::string> copy = p;
  EXPECT_TRUE(p.Set("first"));
  EXPECT_FALSE(p.Set("second"));
  EXPECT_FALSE(copy.Set("third"));
  EXPECT_EQ(p.future().Wait(), "first");
}

TEST(FutureTest, CopiesOfAFutureShareOneResult) {
  Promise<int> p(nullptr);
  Future<int> a = p.future();
  Future<int> b = a;
  Future<int> c = p.future();
  p.Set(3);
  EXPECT_TRUE(a.ready());
  EXPECT_TRUE(b.ready());
  EXPECT_TRUE(c.ready());
  EXPECT_EQ(&a.Wait(), &c.Wait());
}

TEST(FutureTest, ThenRegisteredBeforeCompletionRunsOnSetOnTheSettingThreadInOrder) {
  Promise<int> p(nullptr);
  Future<int> f = p.future();
  std::vector<std::string> log;
  std::thread::id ran_on;
  f.Then([&](const int& v) { log.push_back("a" + std::to_string(v)); });
  f.Then([&](const int& v) {
    log.push_back("b" + std::to_string(v));
    ran_on = std::this_thread::get_id();
  });
  EXPECT_TRUE(log.empty());
  std::thread setter([&] { p.Set(5); });
  const std::thread::id setter_id = setter.get_id();
  setter.join();
  EXPECT_THAT(log, ElementsAre("a5", "b5"));
  EXPECT_EQ(ran_on, setter_id);
}

TEST(FutureTest, ThenRegisteredAfterCompletionRunsAtOnceOnTheCallingThread) {
  Promise<int> p(nullptr);
  p.Set(9);
  int seen = 0;
  std::thread::id ran_on;
  p.future().Then([&](const int& v) {
    seen = v;
    ran_on = std::this_thread::get_id();
  });
  EXPECT_EQ(seen, 9);
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST(FutureTest, ContinuationsRunOnlyOnceEvenIfSetIsCalledAgain) {
  Promise<int> p(nullptr);
  int calls = 0;
  p.future().Then([&](const int&) { ++calls; });
  p.Set(1);
  p.Set(2);
  EXPECT_EQ(calls, 1);
}

TEST(FutureTest, AContinuationMayRegisterAnotherContinuationWithoutDeadlock) {
  Promise<int> p(nullptr);
  Future<int> f = p.future();
  std::vector<int> log;
  f.Then([&](const int& v) {
    log.push_back(v);
    f.Then([&](const int& w) { log.push_back(w + 100); });
  });
  p.Set(1);
  EXPECT_THAT(log, ElementsAre(1, 101));
}

TEST(FutureTest, HoldsMoveOnlyValues) {
  Promise<std::unique_ptr<int>> p(nullptr);
  p.Set(std::make_unique<int>(4));
  const std::unique_ptr<int>& v = p.future().Wait();
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(*v, 4);
}

TEST(FutureTest, WaitWithoutARuntimeBlocksUntilAnotherThreadSetsTheValue) {
  Promise<int> p(nullptr);
  Future<int> f = p.future();
  std::thread setter([p]() mutable { p.Set(11); });
  EXPECT_EQ(f.Wait(), 11);
  setter.join();
}

TEST(FutureTest, WaitOnAThreadedRuntimeBlocksUntilAnotherThreadSetsTheValue) {
  Promise<int> p(Runtime::Create());
  Future<int> f = p.future();
  std::thread setter([p]() mutable { p.Set(12); });
  EXPECT_EQ(f.Wait(), 12);
  setter.join();
}

TEST(FutureTest, WaitOnAThreadedRuntimeReturnsAValueSetOnItsLoop) {
  auto rt = Runtime::Create();
  Promise<int> p(rt);
  rt->Post([p]() mutable { p.Set(13); });
  EXPECT_EQ(p.future().Wait(), 13);
}

TEST(FutureTest, ConcurrentThenAndSetRunEveryContinuationExactlyOnce) {
  for (int round = 0; round < 50; ++round) {
    Promise<int> p(nullptr);
    Future<int> f = p.future();
    std::atomic<int> calls{0};
    std::thread a([&] {
      for (int i = 0; i < 20; ++i) f.Then([&](const int&) { calls.fetch_add(1); });
    });
    std::thread b([&] {
      for (int i = 0; i < 20; ++i) f.Then([&](const int&) { calls.fetch_add(1); });
    });
    std::thread setter([&] { p.Set(round); });
    a.join();
    b.join();
    setter.join();
    ASSERT_EQ(calls.load(), 40) << "round " << round;
  }
}

TEST(FutureTest, WaitUnderASimulatedRuntimeDrivesTheSimulationUntilATimerSetsTheValue) {
  auto rt = SimulatedRuntime::Create();
  const TimePoint t0 = rt->clock().Now();
  Promise<std::string> p(rt);
  rt->RunAt(t0 + seconds(5), [p]() mutable { p.Set("done"); });
  rt->RunAt(t0 + seconds(9), [] {});
  EXPECT_EQ(p.future().Wait(), "done");
  // The simulation stopped as soon as the value was set.
  EXPECT_EQ(rt->clock().Now(), t0 + seconds(5));
  EXPECT_EQ(rt->pending_timers(), 1u);
}

TEST(FutureTest, WaitUnderASimulatedRuntimeRunsTasksThatTimersPost) {
  auto rt = SimulatedRuntime::Create();
  const TimePoint t0 = rt->clock().Now();
  Promise<int> p(rt);
  rt->RunAt(t0 + seconds(1), [rt, p] { rt->PostCallback([p]() mutable { p.Set(21); }); });
  EXPECT_EQ(p.future().Wait(), 21);
  EXPECT_EQ(rt->clock().Now(), t0 + seconds(1));
}

TEST(FutureTest, WaitOnAReadyFutureUnderASimulatedRuntimeDoesNotMoveTheClock) {
  auto rt = SimulatedRuntime::Create();
  const TimePoint t0 = rt->clock().Now();
  bool timer_fired = false;
  rt->RunAt(t0 + seconds(1), [&] { timer_fired = true; });
  Promise<int> p(rt);
  p.Set(1);
  EXPECT_EQ(p.future().Wait(), 1);
  EXPECT_EQ(rt->clock().Now(), t0);
  EXPECT_FALSE(timer_fired);
}

TEST(FutureTest, WaitForReturnsTrueOnceSetAndFalseAfterItsPatience) {
  Promise<int> late(nullptr);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(late.future().WaitFor(std::chrono::milliseconds(50)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));

  Promise<int> p(Runtime::Create());
  std::thread setter([p]() mutable { p.Set(5); });
  EXPECT_TRUE(p.future().WaitFor(seconds(30)));
  setter.join();
}

TEST(FutureTest, WaitForUnderASimulatedRuntimeStopsAtItsPatienceOrTheValue) {
  auto rt = SimulatedRuntime::Create();
  const TimePoint t0 = rt->clock().Now();
  Promise<int> p(rt);
  rt->RunAt(t0 + seconds(1), [] {});
  rt->RunAt(t0 + seconds(8), [p]() mutable { p.Set(3); });
  EXPECT_FALSE(p.future().WaitFor(seconds(2)));
  EXPECT_FALSE(p.is_set()) << "stopped before running the value's timer";
  EXPECT_TRUE(p.future().WaitFor(seconds(60)));
  EXPECT_EQ(rt->clock().Now(), t0 + seconds(8));
  Promise<int> never(rt);
  EXPECT_FALSE(never.future().WaitFor(seconds(1))) << "a dry simulation is not ready";
}

TEST(FutureTest, WaitThrowsLogicErrorWhenTheSimulationRunsDry) {
  auto rt = SimulatedRuntime::Create();
  Promise<int> p(rt);
  EXPECT_THROW((void)p.future().Wait(), std::logic_error);
}

TEST(FutureTest, WaitThrowsLogicErrorWhenTheLastTimerFiresWithoutSettingTheValue) {
  auto rt = SimulatedRuntime::Create();
  const TimePoint t0 = rt->clock().Now();
  Promise<int> p(rt);
  rt->RunAt(t0 + seconds(2), [] {});
  EXPECT_THROW((void)p.future().Wait(), std::logic_error);
  EXPECT_EQ(rt->clock().Now(), t0 + seconds(2));
}

}  // namespace
}  // namespace leasehold
