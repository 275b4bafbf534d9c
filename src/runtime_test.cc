#include "leasehold/runtime.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace leasehold {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;

// Guard for waits on the threaded runtime: long enough never to be hit by a
// working runtime, short enough that a broken one fails instead of hanging.
constexpr auto kGuard = std::chrono::seconds(10);

// --- SimulatedRuntime ----------------------------------------------------------

class SimulatedRuntimeTest : public ::testing::Test {
 protected:
  // Returns a task that appends `what` to the log.
  Task Log(std::string what) {
    return [this, what = std::move(what)] { log_.push_back(what); };
  }
  std::shared_ptr<SimulatedRuntime> rt_ = SimulatedRuntime::Create();
  const TimePoint t0_ = rt_->clock().Now();
  std::vector<std::string> log_;
};

TEST_F(SimulatedRuntimeTest, ItsClockIsTheFakeClock) {
  EXPECT_EQ(&rt_->clock(), &rt_->fake_clock());
  rt_->fake_clock().Advance(seconds(1));
  EXPECT_EQ(rt_->clock().Now(), t0_ + seconds(1));
}

TEST_F(SimulatedRuntimeTest, NothingRunsUntilTheSimulationIsDriven) {
  rt_->Post(Log("posted"));
  rt_->RunAt(t0_, Log("timer"));
  EXPECT_TRUE(log_.empty());
  rt_->RunUntilIdle();
  EXPECT_THAT(log_, ElementsAre("timer", "posted"));
}

TEST_F(SimulatedRuntimeTest, RunForAdvancesTheClockByExactlyTheDuration) {
  rt_->RunFor(milliseconds(1234));
  EXPECT_EQ(rt_->clock().Now(), t0_ + milliseconds(1234));

  rt_->RunAt(t0_ + seconds(2), Log("t"));
  rt_->RunFor(seconds(5));
  EXPECT_EQ(rt_->clock().Now(), t0_ + milliseconds(6234));
  EXPECT_THAT(log_, ElementsAre("t"));
}

TEST_F(SimulatedRuntimeTest, RunForZeroRunsWhatIsDueWithoutMovingTheClock) {
  rt_->Post(Log("p"));
  rt_->RunAt(t0_ + milliseconds(1), Log("later"));
  rt_->RunFor(Duration::zero());
  EXPECT_EQ(rt_->clock().Now(), t0_);
  EXPECT_THAT(log_, ElementsAre("p"));
}

TEST_F(SimulatedRuntimeTest, TimersFireInTimeOrderEachAtItsOwnTime) {
  std::vector<Duration> fired_at;
  auto at = [&](Duration d, std::string name) {
    rt_->RunAt(t0_ + d, [&, name] {
      log_.push_back(name);
      fired_at.push_back(rt_->clock().Now() - t0_);
    });
  };
  at(seconds(3), "3s");
  at(seconds(1), "1s");
  at(milliseconds(2500), "2.5s");
  rt_->RunFor(seconds(10));
  EXPECT_THAT(log_, ElementsAre("1s", "2.5s", "3s"));
  EXPECT_THAT(fired_at, ElementsAre(seconds(1), milliseconds(2500), seconds(3)));
}

TEST_F(SimulatedRuntimeTest, TimersDueAtTheSameInstantFireInTheOrderTheyWereSet) {
  rt_->RunAt(t0_ + seconds(1), Log("a"));
  rt_->RunAt(t0_ + seconds(2), Log("late"));
  rt_->RunAt(t0_ + seconds(1), Log("b"));
  rt_->RunAt(t0_ + seconds(1), Log("c"));
  rt_->RunFor(seconds(2));
  EXPECT_THAT(log_, ElementsAre("a", "b", "c", "late"));
}

TEST_F(SimulatedRuntimeTest, ATimerDueExactlyAtTheEndOfRunForFiresAndALaterOneDoesNot) {
  rt_->RunAt(t0_ + seconds(1), Log("at end"));
  rt_->RunAt(t0_ + seconds(1) + std::chrono::nanoseconds(1), Log("after end"));
  rt_->RunFor(seconds(1));
  EXPECT_THAT(log_, ElementsAre("at end"));
  EXPECT_EQ(rt_->pending_timers(), 1u);
  rt_->RunFor(std::chrono::nanoseconds(1));
  EXPECT_THAT(log_, ElementsAre("at end", "after end"));
}

TEST_F(SimulatedRuntimeTest, ATimerInThePastFiresAtOnceWithoutMovingTheClock) {
  rt_->fake_clock().Advance(seconds(10));
  rt_->RunAt(t0_, Log("overdue"));
  rt_->RunUntilIdle();
  EXPECT_THAT(log_, ElementsAre("overdue"));
  EXPECT_EQ(rt_->clock().Now(), t0_ + seconds(10));
}

TEST_F(SimulatedRuntimeTest, TimersSetByATaskDuringRunForFireWithinIt) {
  rt_->RunAt(t0_ + seconds(1), [&] {
    log_.push_back("first");
    rt_->RunAt(rt_->clock().Now() + seconds(1), Log("second"));
  });
  rt_->RunFor(seconds(2));
  EXPECT_THAT(log_, ElementsAre("first", "second"));
  EXPECT_EQ(rt_->pending_timers(), 0u);
}

TEST_F(SimulatedRuntimeTest, RunUntilIdleRunsPostedTasksInOrderAndNeverMovesTheClock) {
  rt_->Post(Log("1"));
  rt_->Post([&] {
    log_.push_back("2");
    rt_->Post(Log("4"));
  });
  rt_->Post(Log("3"));
  rt_->RunAt(t0_ + milliseconds(1), Log("timer"));
  rt_->RunUntilIdle();
  EXPECT_THAT(log_, ElementsAre("1", "2", "3", "4"));
  EXPECT_EQ(rt_->clock().Now(), t0_);
  EXPECT_EQ(rt_->pending_timers(), 1u);
}

TEST_F(SimulatedRuntimeTest, CancelTimerPreventsTheTimerFromFiring) {
  TimerId cancelled = rt_->RunAt(t0_ + seconds(1), Log("cancelled"));
  rt_->RunAt(t0_ + seconds(1), Log("kept"));
  rt_->CancelTimer(cancelled);
  rt_->RunFor(seconds(5));
  EXPECT_THAT(log_, ElementsAre("kept"));
}

TEST_F(SimulatedRuntimeTest, ATimerCancelledByAnEarlierTimerAtTheSameInstantDoesNotFire) {
  TimerId second = 0;
  rt_->RunAt(t0_ + seconds(1), [&] {
    log_.push_back("first");
    rt_->CancelTimer(second);
  });
  second = rt_->RunAt(t0_ + seconds(1), Log("second"));
  rt_->RunFor(seconds(1));
  EXPECT_THAT(log_, ElementsAre("first"));
}

TEST_F(SimulatedRuntimeTest, CancellingAnUnknownOrFiredTimerIsIgnored) {
  TimerId fired = rt_->RunAt(t0_, Log("fired"));
  rt_->RunUntilIdle();
  rt_->RunAt(t0_ + seconds(1), Log("pending"));
  rt_->CancelTimer(fired);
  rt_->CancelTimer(fired);
  rt_->CancelTimer(987654321);
  EXPECT_EQ(rt_->pending_timers(), 1u);
  rt_->RunFor(seconds(1));
  EXPECT_THAT(log_, ElementsAre("fired", "pending"));
}

TEST_F(SimulatedRuntimeTest, CancellingATimerDestroysItsTask) {
  auto owned = std::make_shared<int>(1);
  std::weak_ptr<int> watch = owned;
  TimerId id = rt_->RunAt(t0_ + seconds(1), [owned = std::move(owned)] {});
  EXPECT_FALSE(watch.expired());
  rt_->CancelTimer(id);
  EXPECT_TRUE(watch.expired());
}

TEST_F(SimulatedRuntimeTest, PendingTimersCountsSetTimersUntilTheyFireOrAreCancelled) {
  EXPECT_EQ(rt_->pending_timers(), 0u);
  TimerId a = rt_->RunAt(t0_ + seconds(1), [] {});
  rt_->RunAt(t0_ + seconds(2), [] {});
  rt_->RunAt(t0_ + seconds(3), [] {});
  EXPECT_EQ(rt_->pending_timers(), 3u);
  rt_->CancelTimer(a);
  EXPECT_EQ(rt_->pending_timers(), 2u);
  rt_->RunFor(seconds(2));
  EXPECT_EQ(rt_->pending_timers(), 1u);
  rt_->RunFor(seconds(1));
  EXPECT_EQ(rt_->pending_timers(), 0u);
}

TEST_F(SimulatedRuntimeTest, TimersDueAtTheSameInstantAllFireBeforeTheTasksTheyPost) {
  // This ordering is what lets the renewal queue batch leases that fall due
  // together: every due timer enqueues, then one posted task flushes.
  for (std::string name : {"a", "b", "c"}) {
    rt_->RunAt(t0_ + seconds(1), [this, name] {
      log_.push_back("timer " + name);
      rt_->Post(Log("task " + name));
    });
  }
  rt_->RunFor(seconds(1));
  EXPECT_THAT(log_, ElementsAre("timer a", "timer b", "timer c", "task a", "task b", "task c"));
}

TEST_F(SimulatedRuntimeTest, ADueTimerRunsBeforeTasksAlreadyPosted) {
  rt_->Post(Log("task"));
  rt_->RunAt(t0_, Log("timer"));
  rt_->RunUntilIdle();
  EXPECT_THAT(log_, ElementsAre("timer", "task"));
}

TEST_F(SimulatedRuntimeTest, DriveUntilStopsAsSoonAsTheConditionHoldsWithoutMovingTheClock) {
  bool done = false;
  rt_->Post([&] { done = true; });
  rt_->Post(Log("after done"));
  rt_->RunAt(t0_ + seconds(5), Log("timer"));
  EXPECT_TRUE(rt_->DriveUntil([&] { return done; }));
  EXPECT_TRUE(done);
  EXPECT_TRUE(log_.empty());
  EXPECT_EQ(rt_->clock().Now(), t0_);
  EXPECT_EQ(rt_->pending_timers(), 1u);
}

TEST_F(SimulatedRuntimeTest, DriveUntilJumpsToTheNextTimerOnlyWhenNothingElseCanRun) {
  // A chain of posted tasks must all run at t0 before the clock may move.
  std::vector<Duration> task_times;
  std::function<void(int)> chain = [&](int left) {
    task_times.push_back(rt_->clock().Now() - t0_);
    if (left > 0) rt_->Post([&chain, left] { chain(left - 1); });
  };
  rt_->Post([&] { chain(3); });
  bool fired = false;
  rt_->RunAt(t0_ + seconds(2), [&] { fired = true; });
  rt_->RunAt(t0_ + seconds(7), Log("later timer"));

  EXPECT_TRUE(rt_->DriveUntil([&] { return fired; }));
  EXPECT_THAT(task_times,
              ElementsAre(Duration::zero(), Duration::zero(), Duration::zero(), Duration::zero()));
  EXPECT_EQ(rt_->clock().Now(), t0_ + seconds(2));
  EXPECT_TRUE(log_.empty());
  EXPECT_EQ(rt_->pending_timers(), 1u);
}

TEST_F(SimulatedRuntimeTest, DriveUntilReturnsTrueWhenTheSimulationRunsDry) {
  rt_->RunAt(t0_ + seconds(3), Log("timer"));
  EXPECT_TRUE(rt_->DriveUntil([] { return false; }));
  EXPECT_THAT(log_, ElementsAre("timer"));
  EXPECT_EQ(rt_->clock().Now(), t0_ + seconds(3));
}

TEST_F(SimulatedRuntimeTest, CallbacksAndBlockingTasksRunInlineOnTheDrivingThread) {
  const auto me = std::this_thread::get_id();
  std::vector<std::thread::id> threads;
  std::vector<bool> on_loop;
  rt_->PostCallback([&] {
    log_.push_back("callback");
    threads.push_back(std::this_thread::get_id());
    on_loop.push_back(rt_->OnLoopThread());
  });
  rt_->PostBlocking([&] {
    log_.push_back("blocking");
    threads.push_back(std::this_thread::get_id());
    on_loop.push_back(rt_->OnLoopThread());
  });
  rt_->Post(Log("loop"));
  EXPECT_TRUE(log_.empty());
  rt_->RunUntilIdle();
  EXPECT_THAT(log_, ElementsAre("callback", "blocking", "loop"));
  EXPECT_THAT(threads, ElementsAre(me, me));
  EXPECT_THAT(on_loop, ElementsAre(true, true));
  EXPECT_EQ(rt_->clock().Now(), t0_);
}

TEST_F(SimulatedRuntimeTest, AnExceptionThrownByATaskIsContainedAndLaterTasksStillRun) {
  rt_->Post([] { throw std::runtime_error("boom"); });
  rt_->Post([] { throw 42; });
  rt_->PostCallback([] { throw std::runtime_error("handler boom"); });
  rt_->RunAt(t0_ + seconds(1), [] { throw std::logic_error("timer boom"); });
  rt_->RunAt(t0_ + seconds(2), Log("later timer"));
  rt_->Post(Log("later task"));
  EXPECT_NO_THROW(rt_->RunFor(seconds(2)));
  EXPECT_THAT(log_, ElementsAre("later task", "later timer"));
}

TEST_F(SimulatedRuntimeTest, TasksPostedFromAnotherThreadRunWhenTheSimulationIsDriven) {
  std::thread other([&] {
    rt_->Post(Log("from other thread"));
    rt_->RunAt(t0_ + seconds(1), Log("timer from other thread"));
  });
  other.join();
  rt_->RunFor(seconds(1));
  EXPECT_THAT(log_, ElementsAre("from other thread", "timer from other thread"));
}

// --- Threaded runtime ----------------------------------------------------------
//
// In these tests the runtime is declared after everything its tasks touch, so
// that it is destroyed -- and its threads joined -- first.

// Waits (bounded) for a std::future and returns whether it became ready.
template <typename T>
bool Ready(std::future<T>& f) {
  return f.wait_for(kGuard) == std::future_status::ready;
}

// Blocks a runtime's loop thread until Release(): lets a test set up several
// timers that the loop will find due all at once.
class LoopHold {
 public:
  // Returns once the loop is blocked.
  void Hold(Runtime& rt) {
    rt.Post([this] {
      entered_.count_down();
      release_.wait();
    });
    entered_.wait();
  }
  void Release() { release_.count_down(); }

 private:
  std::latch entered_{1};
  std::latch release_{1};
};

TEST(ThreadedRuntimeTest, UsesTheRealClock) {
  auto rt = Runtime::Create();
  EXPECT_EQ(&rt->clock(), &RealClock());
}

TEST(ThreadedRuntimeTest, DefaultIsOneSharedInstance) {
  auto a = Runtime::Default();
  auto b = Runtime::Default();
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a, b);
}

TEST(ThreadedRuntimeTest, DriveUntilReturnsFalseAtOnce) {
  auto rt = Runtime::Create();
  EXPECT_FALSE(rt->DriveUntil([] { return false; }));
}

TEST(ThreadedRuntimeTest, PostRunsOnTheLoopThread) {
  std::promise<std::pair<bool, std::thread::id>> seen;
  auto f = seen.get_future();
  auto rt = Runtime::Create();
  EXPECT_FALSE(rt->OnLoopThread());
  rt->Post([&] { seen.set_value({rt->OnLoopThread(), std::this_thread::get_id()}); });
  ASSERT_TRUE(Ready(f));
  auto [on_loop, id] = f.get();
  EXPECT_TRUE(on_loop);
  EXPECT_NE(id, std::this_thread::get_id());
  EXPECT_FALSE(rt->OnLoopThread());
}

TEST(ThreadedRuntimeTest, OnLoopThreadIsFalseOnAnotherRuntimesLoop) {
  std::promise<bool> seen;
  auto f = seen.get_future();
  auto b = Runtime::Create();
  auto a = Runtime::Create();
  a->Post([&] { seen.set_value(b->OnLoopThread()); });
  ASSERT_TRUE(Ready(f));
  EXPECT_FALSE(f.get());
}

TEST(ThreadedRuntimeTest, PostedTasksRunInOrder) {
  std::vector<int> order;  // only touched on the loop thread
  std::promise<std::vector<int>> result;
  auto f = result.get_future();
  auto rt = Runtime::Create();
  for (int i = 0; i < 100; ++i) rt->Post([&order, i] { order.push_back(i); });
  rt->Post([&] { result.set_value(order); });
  ASSERT_TRUE(Ready(f));
  std::vector<int> got = f.get();
  ASSERT_EQ(got.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(got[i], i);
}

TEST(ThreadedRuntimeTest, RunAtFiresOnTheLoopThreadNotBeforeItsTime) {
  // The one real-time test: a timer a few milliseconds ahead.
  std::promise<std::pair<TimePoint, bool>> fired;
  auto f = fired.get_future();
  auto rt = Runtime::Create();
  const TimePoint when = rt->clock().Now() + milliseconds(5);
  rt->RunAt(when, [&] { fired.set_value({rt->clock().Now(), rt->OnLoopThread()}); });
  ASSERT_TRUE(Ready(f));
  auto [at, on_loop] = f.get();
  EXPECT_GE(at, when);
  EXPECT_TRUE(on_loop);
}

TEST(ThreadedRuntimeTest, AnEarlierTimerSetWhileTheLoopWaitsForALaterOneFiresFirst) {
  std::promise<std::string> first;
  auto f = first.get_future();
  std::atomic<bool> done{false};
  auto record = [&](const char* name) {
    return [&, name] {
      if (!done.exchange(true)) first.set_value(name);
    };
  };
  auto rt = Runtime::Create();
  const TimePoint now = rt->clock().Now();
  TimerId late = rt->RunAt(now + seconds(30), record("late"));
  rt->RunAt(now + milliseconds(2), record("early"));
  ASSERT_TRUE(Ready(f));
  EXPECT_EQ(f.get(), "early");
  rt->CancelTimer(late);
}

TEST(ThreadedRuntimeTest, CancelTimerPreventsTheTimerFromFiring) {
  LoopHold hold;
  std::atomic<bool> cancelled_fired{false};
  std::promise<bool> later;
  auto f = later.get_future();
  auto rt = Runtime::Create();
  // With the loop held, both timers are due when it next looks: had the
  // cancelled (earlier) one survived, it would fire before the later one.
  hold.Hold(*rt);
  const TimePoint now = rt->clock().Now();
  TimerId id = rt->RunAt(now, [&] { cancelled_fired = true; });
  rt->RunAt(now + std::chrono::nanoseconds(1), [&] { later.set_value(cancelled_fired.load()); });
  rt->CancelTimer(id);
  hold.Release();
  ASSERT_TRUE(Ready(f));
  EXPECT_FALSE(f.get()) << "a cancelled timer fired";
}

TEST(ThreadedRuntimeTest, TimersDueTogetherAllFireBeforeTheTasksTheyPost) {
  LoopHold hold;
  std::vector<std::string> log;  // only touched on the loop thread
  std::promise<std::vector<std::string>> result;
  auto f = result.get_future();
  auto rt = Runtime::Create();
  hold.Hold(*rt);
  const TimePoint now = rt->clock().Now();
  for (std::string name : {"a", "b", "c"}) {
    rt->RunAt(now, [&, name] {
      log.push_back("timer " + name);
      rt->Post([&, name] {
        log.push_back("task " + name);
        if (name == "c") result.set_value(log);
      });
    });
  }
  hold.Release();
  ASSERT_TRUE(Ready(f));
  EXPECT_THAT(f.get(), ElementsAre("timer a", "timer b", "timer c", "task a", "task b", "task c"));
}

TEST(ThreadedRuntimeTest, PostCallbackRunsInOrderOnAThreadOtherThanTheLoop) {
  std::promise<std::thread::id> loop_id;
  auto lf = loop_id.get_future();
  std::vector<int> order;  // only touched on the callback thread
  std::promise<std::tuple<std::thread::id, bool, std::vector<int>>> cb;
  auto cf = cb.get_future();
  auto rt = Runtime::Create();
  rt->Post([&] { loop_id.set_value(std::this_thread::get_id()); });
  for (int i = 0; i < 10; ++i) rt->PostCallback([&order, i] { order.push_back(i); });
  rt->PostCallback([&] { cb.set_value({std::this_thread::get_id(), rt->OnLoopThread(), order}); });
  ASSERT_TRUE(Ready(lf));
  ASSERT_TRUE(Ready(cf));
  auto [cb_id, on_loop, got] = cf.get();
  EXPECT_NE(cb_id, lf.get());
  EXPECT_NE(cb_id, std::this_thread::get_id());
  EXPECT_FALSE(on_loop);
  EXPECT_THAT(got, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9));
}

TEST(ThreadedRuntimeTest, ABlockedCallbackDoesNotDelayTheLoop) {
  std::latch release(1);
  std::promise<void> ran;
  auto f = ran.get_future();
  auto rt = Runtime::Create();
  rt->PostCallback([&] { release.wait(); });
  rt->Post([&] { ran.set_value(); });
  EXPECT_TRUE(Ready(f));
  release.count_down();
}

TEST(ThreadedRuntimeTest, PostBlockingRunsOffTheLoopAndOffTheCaller) {
  std::promise<std::pair<std::thread::id, bool>> seen;
  auto f = seen.get_future();
  auto rt = Runtime::Create();
  rt->PostBlocking([&] { seen.set_value({std::this_thread::get_id(), rt->OnLoopThread()}); });
  ASSERT_TRUE(Ready(f));
  auto [id, on_loop] = f.get();
  EXPECT_NE(id, std::this_thread::get_id());
  EXPECT_FALSE(on_loop);
}

TEST(ThreadedRuntimeTest, ZeroBlockingThreadsStillRunsBlockingTasks) {
  std::promise<void> ran;
  auto f = ran.get_future();
  auto rt = Runtime::Create({.blocking_threads = 0});
  ASSERT_NE(rt, nullptr);
  rt->PostBlocking([&] { ran.set_value(); });
  EXPECT_TRUE(Ready(f));
}

// Posts `tasks` blocking tasks that each hold their thread until all that
// can run at once have started; returns how many ran at once. Returns only
// after every task has finished: the tasks share the state with the caller
// through a shared_ptr, so a task still waking up never touches a dead frame.
int MostBlockingAtOnce(Runtime& rt, int tasks, int expected) {
  struct State {
    std::mutex mu;
    std::condition_variable changed;
    int running = 0, most = 0, finished = 0;
    bool open = false;
  };
  auto state = std::make_shared<State>();
  for (int i = 0; i < tasks; ++i) {
    rt.PostBlocking([state] {
      std::unique_lock lock(state->mu);
      state->most = std::max(state->most, ++state->running);
      state->changed.notify_all();
      state->changed.wait(lock, [&] { return state->open; });
      --state->running;
      ++state->finished;
      state->changed.notify_all();
    });
  }
  std::unique_lock lock(state->mu);
  EXPECT_TRUE(state->changed.wait_for(lock, std::chrono::seconds(10),
                                      [&] { return state->running == expected; }))
      << "only " << state->running << " of the tasks ran at once";
  // Time for a thread too many to start and take a task.
  lock.unlock();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  lock.lock();
  const int seen = state->most;
  state->open = true;
  state->changed.notify_all();
  EXPECT_TRUE(state->changed.wait_for(lock, std::chrono::seconds(10),
                                      [&] { return state->finished == tasks; }))
      << "only " << state->finished << " of " << tasks << " tasks finished";
  return seen;
}

// A thread is started whenever a blocking task would wait and none is idle,
// up to blocking_threads: tasks that each hold a thread for a round trip run
// side by side, not queued behind each other.
TEST(ThreadedRuntimeTest, TheBlockingLaneGrowsToTheTasksInFlightAndNoFurther) {
  auto rt = Runtime::Create({.blocking_threads = 6});
  // One at a time: one thread is enough, and only one is started.
  std::set<std::thread::id> ran_on;
  for (int i = 0; i < 5; ++i) {
    std::promise<std::thread::id> one;
    auto f = one.get_future();
    rt->PostBlocking([&] { one.set_value(std::this_thread::get_id()); });
    ASSERT_TRUE(Ready(f));
    ran_on.insert(f.get());
    // Time for the thread to go back to waiting (idle) after the task.
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(ran_on.size(), 1u) << "threads started before any task waited";
  EXPECT_EQ(MostBlockingAtOnce(*rt, 10, 6), 6) << "more threads than blocking_threads";
  EXPECT_TRUE(ShutDown(std::move(rt)));
}

// Stores' reservations raise the ceiling above blocking_threads while they
// last: eight single-connection stores get a thread each.
TEST(ThreadedRuntimeTest, ReservationsRaiseTheBlockingLaneCeilingWhileTheyLast) {
  auto rt = Runtime::Create({.blocking_threads = 2});
  for (int store = 0; store < 8; ++store) rt->ReserveBlocking(1);
  EXPECT_EQ(MostBlockingAtOnce(*rt, 12, 8), 8) << "the reservations were not honoured";
  EXPECT_TRUE(ShutDown(std::move(rt)));

  // Withdrawn before any task waited: back to blocking_threads.
  rt = Runtime::Create({.blocking_threads = 2});
  rt->ReserveBlocking(8);
  rt->ReserveBlocking(-8);
  EXPECT_EQ(MostBlockingAtOnce(*rt, 12, 2), 2) << "a withdrawn reservation still counted";
  EXPECT_TRUE(ShutDown(std::move(rt)));
}

TEST(ThreadedRuntimeTest, AThrowingTaskDoesNotKillAnyLane) {
  std::promise<void> loop, timer, callback, blocking;
  auto lf = loop.get_future(), tf = timer.get_future(), cf = callback.get_future(),
       bf = blocking.get_future();
  auto rt = Runtime::Create();
  rt->Post([] { throw std::runtime_error("loop boom"); });
  rt->Post([] { throw 42; });
  rt->RunAt(rt->clock().Now(), [] { throw std::runtime_error("timer boom"); });
  rt->PostCallback([] { throw std::runtime_error("callback boom"); });
  rt->PostBlocking([] { throw std::runtime_error("blocking boom"); });

  rt->Post([&] { loop.set_value(); });
  rt->RunAt(rt->clock().Now(), [&] { timer.set_value(); });
  rt->PostCallback([&] { callback.set_value(); });
  rt->PostBlocking([&] { blocking.set_value(); });
  EXPECT_TRUE(Ready(lf));
  EXPECT_TRUE(Ready(tf));
  EXPECT_TRUE(Ready(cf));
  EXPECT_TRUE(Ready(bf));
}

// Counts threads that have exited after arming `exit_marker`: a thread_local's
// destructor runs when its thread ends, before a join() of it returns.
std::atomic<int> g_exited_threads{0};
struct ExitMarker {
  bool armed = false;
  ~ExitMarker() {
    if (armed) g_exited_threads.fetch_add(1);
  }
};
thread_local ExitMarker exit_marker;

TEST(ThreadedRuntimeTest, DestroyingTheRuntimeJoinsItsThreads) {
  g_exited_threads = 0;
  std::promise<void> loop, callback, blocking;
  auto lf = loop.get_future(), cf = callback.get_future(), bf = blocking.get_future();
  auto rt = Runtime::Create({.blocking_threads = 1});
  rt->Post([&] {
    exit_marker.armed = true;
    loop.set_value();
  });
  rt->PostCallback([&] {
    exit_marker.armed = true;
    callback.set_value();
  });
  rt->PostBlocking([&] {
    exit_marker.armed = true;
    blocking.set_value();
  });
  ASSERT_TRUE(Ready(lf));
  ASSERT_TRUE(Ready(cf));
  ASSERT_TRUE(Ready(bf));
  EXPECT_EQ(g_exited_threads.load(), 0);
  rt.reset();
  // Joined, not detached: every thread has ended once the last reference is gone.
  EXPECT_EQ(g_exited_threads.load(), 3);
}

TEST(ThreadedRuntimeTest, DestroyingARuntimeWithPendingTimersAndTasksDoesNotHang) {
  auto rt = Runtime::Create();
  rt->RunAt(rt->clock().Now() + seconds(3600), [] {});
  for (int i = 0; i < 10; ++i) rt->Post([] {});
  rt->PostCallback([] {});
  rt->PostBlocking([] {});
  rt.reset();
  EXPECT_EQ(rt, nullptr);
}

TEST(ThreadedRuntimeTest, DroppingTheLastReferenceInsideALoopTaskDoesNotDeadlock) {
  auto go = std::make_shared<std::latch>(1);
  auto done = std::make_shared<std::promise<void>>();
  auto f = done->get_future();
  auto rt = Runtime::Create();
  std::weak_ptr<Runtime> watch = rt;
  auto box = std::make_shared<std::shared_ptr<Runtime>>(rt);
  rt->Post([box, go, done] {
    go->wait();
    box->reset();  // the last reference: the runtime is destroyed right here
    done->set_value();
  });
  rt.reset();
  go->count_down();
  ASSERT_TRUE(Ready(f)) << "destroying the runtime from its own loop thread hung";
  EXPECT_TRUE(watch.expired());
}

TEST(ThreadedRuntimeTest, ALoopTaskOwningTheLastReferenceIsDestroyedSafelyOnTheLoop) {
  auto go = std::make_shared<std::latch>(1);
  auto done = std::make_shared<std::promise<void>>();
  auto f = done->get_future();
  auto rt = Runtime::Create();
  std::weak_ptr<Runtime> watch = rt;
  // The task's captures hold the last reference: the runtime dies when the
  // loop destroys the task after running it.
  rt->Post([keep = rt, go, done] {
    go->wait();
    done->set_value();
  });
  rt.reset();
  go->count_down();
  ASSERT_TRUE(Ready(f));
  // The runtime goes away just after the task returns; wait for that without
  // sleeping, bounded.
  const auto give_up = std::chrono::steady_clock::now() + kGuard;
  while (!watch.expired() && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  EXPECT_TRUE(watch.expired());
}

TEST(ThreadedRuntimeTest, DroppingTheLastReferenceInsideACallbackDoesNotDeadlock) {
  auto go = std::make_shared<std::latch>(1);
  auto done = std::make_shared<std::promise<void>>();
  auto f = done->get_future();
  auto rt = Runtime::Create();
  std::weak_ptr<Runtime> watch = rt;
  auto box = std::make_shared<std::shared_ptr<Runtime>>(rt);
  rt->PostCallback([box, go, done] {
    go->wait();
    box->reset();
    done->set_value();
  });
  rt.reset();
  go->count_down();
  ASSERT_TRUE(Ready(f)) << "destroying the runtime from its callback thread hung";
  EXPECT_TRUE(watch.expired());
}

TEST(ThreadedRuntimeTest, ShutDownWaitsForATaskStillHoldingAReferenceThenJoinsHere) {
  g_exited_threads = 0;
  auto rt = Runtime::Create({.blocking_threads = 1});
  std::weak_ptr<Runtime> watch = rt;
  std::promise<void> told;
  auto tf = told.get_future();
  // Like a store task: it reports completion, then lets go of its captures.
  rt->PostBlocking([keep = rt, &told]() mutable {
    exit_marker.armed = true;
    told.set_value();
    std::this_thread::sleep_for(milliseconds(100));
    keep.reset();
  });
  ASSERT_TRUE(Ready(tf));
  EXPECT_TRUE(ShutDown(std::move(rt), kGuard));
  EXPECT_TRUE(watch.expired());
  // Destroyed on this thread, so joined: the blocking thread has ended.
  EXPECT_GE(g_exited_threads.load(), 1);
}

TEST(ThreadedRuntimeTest, ShutDownGivesUpOnAReferenceHeldElsewhereAndDropsOnlyItsOwn) {
  auto rt = Runtime::Create();
  std::shared_ptr<Runtime> elsewhere = rt;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(ShutDown(std::move(rt), milliseconds(50)));
  EXPECT_GE(std::chrono::steady_clock::now() - start, milliseconds(50));
  EXPECT_EQ(elsewhere.use_count(), 1);
  EXPECT_TRUE(ShutDown(std::move(elsewhere), milliseconds(50)));
}

// Writes to stderr when the thread it belongs to ends normally (its
// thread-local destructors run). A thread still running when the process
// exits never gets there.
struct EndAnnouncer {
  bool armed = false;
  ~EndAnnouncer() {
    if (armed) std::fputs("the runtime thread ended before the process did\n", stderr);
  }
};
thread_local EndAnnouncer end_announcer;

// The case the CLI hit under load: main drops its references and returns while
// a blocking task still holds the last one, so the runtime is destroyed on its
// own thread. That thread must be joined before exit() tears the process down
// (static destructors, OpenSSL's cleanup), not left running through it.
TEST(ThreadedRuntimeDeathTest, AThreadThatDestroyedItsOwnRuntimeIsJoinedBeforeTheProcessExits) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        auto rt = Runtime::Create({.blocking_threads = 1});
        auto dropped = std::make_shared<std::latch>(1);
        auto destroyed = std::make_shared<std::latch>(1);
        rt->PostBlocking([keep = rt, dropped, destroyed]() mutable {
          end_announcer.armed = true;
          dropped->wait();
          keep.reset();  // the last reference: destroyed on this very thread
          destroyed->count_down();
          // Still busy when main calls exit().
          std::this_thread::sleep_for(milliseconds(300));
        });
        rt.reset();
        dropped->count_down();
        destroyed->wait();
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "the runtime thread ended before the process did");
}

}  // namespace
}  // namespace leasehold
