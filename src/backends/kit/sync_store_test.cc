#include "kit/sync_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "leasehold/future.h"

namespace leasehold::kit {
namespace {

using namespace std::chrono_literals;

// Synchronous operations that record how they were called and answer what
// the test scripted.
class ScriptedOps final : public SyncOps {
 public:
  explicit ScriptedOps(std::shared_ptr<Runtime> runtime) : runtime_(std::move(runtime)) {}

  const std::string& describe() const noexcept override { return describe_; }

  Result<AcquireOutcome> Acquire(const AcquireRequest& request, SyncCall& call) override {
    Record(call);
    if (rerun_every != Duration::zero()) call.RerunAt(runtime_->clock().Now() + rerun_every);
    return AcquireOutcome(Acquired{FencingToken{request.name, 1}, request.ttl, std::nullopt});
  }
  std::vector<Result<RenewOutcome>> Renew(const std::vector<RenewRequest>& batch,
                                          SyncCall& call) override {
    Record(call);
    std::unique_lock lock(mu);
    ++at_gate;
    gate_changed.notify_all();
    gate_changed.wait(lock, [&] { return !gate_closed; });
    batch_sizes.push_back(batch.size());
    for (const RenewRequest& r : batch) renewed.push_back(r.name);
    std::vector<Result<RenewOutcome>> out;
    for (const RenewRequest& r : batch) {
      if (r.name == "gone") {
        out.emplace_back(RenewOutcome(Lost{LossReason::kDeleted, "gone"}));
      } else {
        out.emplace_back(RenewOutcome(Renewed{r.ttl, std::nullopt}));
      }
    }
    return out;
  }
  Status Release(const ReleaseRequest&, SyncCall& call) override {
    Record(call);
    return Status::Ok();
  }
  Result<LeaseRecord> Inspect(const std::string& name, SyncCall& call) override {
    Record(call);
    return NotFoundError(describe_ + ": " + name);
  }
  Status Break(const std::string&, SyncCall& call) override {
    Record(call);
    return Status::Ok();
  }

  struct Seen {
    std::string what;
    Duration left;  // what was left of the deadline when the call ran
    int attempt;
    bool on_loop;
    TimePoint at;
  };
  std::mutex mu;
  std::vector<Seen> calls;
  std::vector<size_t> batch_sizes;
  std::vector<std::string> renewed;  // names, in the order renewed
  Duration rerun_every{};
  // While closed, Renew calls wait (at_gate counts those that came).
  bool gate_closed = false;
  int at_gate = 0;
  std::condition_variable gate_changed;

 private:
  Duration Left(const SyncCall& call) const {
    const Result<Duration> left = call.Left(runtime_->clock(), describe_);
    return left.ok() ? *left : Duration::zero();
  }
  void Record(const SyncCall& call) {
    std::lock_guard lock(mu);
    calls.push_back(
        {call.what, Left(call), call.attempt, runtime_->OnLoopThread(), runtime_->clock().Now()});
  }
  const std::shared_ptr<Runtime> runtime_;
  const std::string describe_ = "scripted:";
};

class TestStore final : public SyncStore<> {
 public:
  TestStore(std::shared_ptr<Runtime> runtime, std::shared_ptr<SyncOps> ops, SyncPolicy policy)
      : SyncStore(std::move(runtime), std::move(ops), policy) {}
  std::string Describe() const override { return "scripted:"; }
  StoreCapabilities capabilities() const override { return {}; }
};

TEST(SyncStoreTest, AnOperationGetsWhatIsLeftOfItsDeadlineAndAnswersOnce) {
  auto sim = SimulatedRuntime::Create();
  auto ops = std::make_shared<ScriptedOps>(sim);
  TestStore store(sim, ops, {});
  int answers = 0;
  store.Acquire({"jobs", "me", 10s, sim->clock().Now() + 3s}, [&](Result<AcquireOutcome> r) {
    ++answers;
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(std::holds_alternative<Acquired>(*r));
  });
  sim->RunUntilIdle();
  EXPECT_EQ(answers, 1);
  ASSERT_EQ(ops->calls.size(), 1u);
  EXPECT_EQ(ops->calls[0].what, "acquire lease \"jobs\"");
  EXPECT_EQ(ops->calls[0].left, 3s);
  EXPECT_EQ(ops->calls[0].attempt, 0);
}

TEST(SyncStoreTest, ADeadlineAlreadyPassedAnswersWithoutRunningTheOperation) {
  auto sim = SimulatedRuntime::Create();
  auto ops = std::make_shared<ScriptedOps>(sim);
  TestStore store(sim, ops, {});
  const TimePoint past = sim->clock().Now();
  std::vector<Status> statuses;
  store.Acquire({"a", "me", 1s, past},
                [&](Result<AcquireOutcome> r) { statuses.push_back(r.status()); });
  store.Release({"b", "me", {}, past}, [&](Status s) { statuses.push_back(s); });
  store.Inspect("c", past, [&](Result<LeaseRecord> r) { statuses.push_back(r.status()); });
  store.Break("d", past, [&](Status s) { statuses.push_back(s); });
  store.Renew({{"e", "me", {}, 1s, past}, {"f", "me", {}, 1s, past + 1h}},
              [&](std::vector<Result<RenewOutcome>> r) {
                ASSERT_EQ(r.size(), 2u);
                for (auto& one : r) statuses.push_back(one.status());
              });
  sim->RunUntilIdle();
  ASSERT_EQ(statuses.size(), 6u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(statuses[i].code(), StatusCode::kDeadlineExceeded) << statuses[i].ToString();
  }
  EXPECT_THAT(statuses[0].message(),
              ::testing::HasSubstr("scripted:: acquire lease \"a\": deadline passed"));
  // A renewal whose deadline passed is answered alone; the rest of its
  // batch still goes.
  EXPECT_THAT(statuses[4].message(),
              ::testing::HasSubstr("scripted:: renew lease \"e\": deadline passed"));
  EXPECT_TRUE(statuses[5].ok()) << statuses[5].ToString();
  ASSERT_EQ(ops->calls.size(), 1u) << "only the renewal of \"f\" ran";
  EXPECT_EQ(ops->calls[0].what, "renew lease \"f\"");
}

TEST(SyncStoreTest, ARerunRunsAgainAtTheTimeAskedWithoutSleepingUntilTheDeadline) {
  auto sim = SimulatedRuntime::Create();
  auto ops = std::make_shared<ScriptedOps>(sim);
  ops->rerun_every = 400ms;
  TestStore store(sim, ops, {});
  const TimePoint start = sim->clock().Now();
  int answers = 0;
  store.Acquire({"jobs", "me", 10s, start + 1s}, [&](Result<AcquireOutcome> r) {
    ++answers;
    EXPECT_TRUE(r.ok());
  });
  sim->RunUntilIdle();
  EXPECT_EQ(answers, 0) << "waiting for the rerun, on a timer";
  EXPECT_EQ(sim->pending_timers(), 1u);
  sim->RunFor(2s);
  EXPECT_EQ(answers, 1);
  // Runs at 0, 400 ms and 800 ms; the next (1.2 s) would pass the deadline,
  // so the third answer stands.
  ASSERT_EQ(ops->calls.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ops->calls[i].attempt, i);
    EXPECT_EQ(ops->calls[i].at - start, i * 400ms);
    EXPECT_EQ(ops->calls[i].left, 1s - i * 400ms);
  }
}

TEST(SyncStoreTest, ABatchIsOneCallUnlessTheStoreRenewsOneByOne) {
  auto sim = SimulatedRuntime::Create();
  for (bool one_by_one : {false, true}) {
    auto ops = std::make_shared<ScriptedOps>(sim);
    TestStore store(sim, ops, {.renew_one_by_one = one_by_one});
    const TimePoint deadline = sim->clock().Now() + 5s;
    std::vector<Result<RenewOutcome>> got;
    int answers = 0;
    store.Renew({{"a", "me", {}, 1s, deadline},
                 {"gone", "me", {}, 1s, deadline},
                 {"c", "me", {}, 1s, deadline}},
                [&](std::vector<Result<RenewOutcome>> r) {
                  ++answers;
                  got = std::move(r);
                });
    sim->RunUntilIdle();
    EXPECT_EQ(answers, 1);
    ASSERT_EQ(got.size(), 3u);
    EXPECT_TRUE(std::holds_alternative<Renewed>(*got[0]));
    EXPECT_TRUE(std::holds_alternative<Lost>(*got[1])) << "answers stay in request order";
    EXPECT_TRUE(std::holds_alternative<Renewed>(*got[2]));
    if (one_by_one) {
      EXPECT_THAT(ops->batch_sizes, ::testing::ElementsAre(1u, 1u, 1u));
      EXPECT_EQ(ops->calls[1].what, "renew lease \"gone\"");
    } else {
      EXPECT_THAT(ops->batch_sizes, ::testing::ElementsAre(3u));
      EXPECT_EQ(ops->calls[0].what, "renew 3 leases");
    }
  }
}

// One by one, at most max_parallel calls of a batch are out at once; each
// answer starts the next, and the batch is answered whole, in order.
TEST(SyncStoreTest, OneByOneRenewalsKeepAtMostMaxParallelCallsOut) {
  auto runtime = Runtime::Create({.blocking_threads = 8});
  auto ops = std::make_shared<ScriptedOps>(runtime);
  auto store = std::make_shared<TestStore>(runtime, ops,
                                           SyncPolicy{.renew_one_by_one = true, .max_parallel = 3});
  const TimePoint deadline = runtime->clock().Now() + 30s;
  ops->gate_closed = true;
  std::vector<RenewRequest> batch;
  for (int i = 0; i < 10; ++i) batch.push_back({"l" + std::to_string(i), "me", {}, 1s, deadline});
  Promise<std::vector<Result<RenewOutcome>>> answered(runtime);
  store->Renew(std::move(batch),
               [answered](std::vector<Result<RenewOutcome>> r) mutable { answered.Set(r); });
  {
    std::unique_lock lock(ops->mu);
    ASSERT_TRUE(ops->gate_changed.wait_for(lock, 10s, [&] { return ops->at_gate == 3; }));
  }
  // Eight threads could take more: none does while the three are out.
  std::this_thread::sleep_for(100ms);
  {
    std::lock_guard lock(ops->mu);
    EXPECT_EQ(ops->at_gate, 3);
    ops->gate_closed = false;
  }
  ops->gate_changed.notify_all();
  const auto& got = answered.future().Wait();
  ASSERT_EQ(got.size(), 10u);
  for (const auto& r : got) EXPECT_TRUE(r.ok() && std::holds_alternative<Renewed>(*r));
  std::lock_guard lock(ops->mu);
  EXPECT_EQ(ops->at_gate, 10);
  EXPECT_THAT(ops->batch_sizes, ::testing::Each(1u));
}

// Batches that come while a renewal call is out go together in the next
// call: one call per round trip however many batches the engine sends, so a
// store with one connection never queues renewals past their deadlines.
TEST(SyncStoreTest, BatchesThatComeWhileARenewalIsOutGoTogetherInTheNextCall) {
  auto runtime = Runtime::Create({.blocking_threads = 2});
  auto ops = std::make_shared<ScriptedOps>(runtime);
  auto store = std::make_shared<TestStore>(runtime, ops, SyncPolicy{});
  const TimePoint deadline = runtime->clock().Now() + 30s;
  ops->gate_closed = true;

  std::vector<std::promise<std::vector<Result<RenewOutcome>>>> answers(4);
  auto answer = [&](int i) {
    return
        [&answers, i](std::vector<Result<RenewOutcome>> r) { answers[i].set_value(std::move(r)); };
  };
  runtime->Post([&] { store->Renew({{"a", "me", {}, 1s, deadline}}, answer(0)); });
  {
    std::unique_lock lock(ops->mu);
    ops->gate_changed.wait(lock, [&] { return ops->at_gate == 1; });
  }
  // While "a" is out: {b, c}, {d, late} (whose deadline passes while it
  // waits) and {b} again, which must wait for a call of its own.
  const TimePoint soon = runtime->clock().Now() + 50ms;
  std::promise<void> queued;
  runtime->Post([&] {
    store->Renew({{"b", "me", {}, 1s, deadline}, {"c", "me", {}, 1s, deadline}}, answer(1));
    store->Renew({{"d", "me", {}, 1s, deadline}, {"late", "me", {}, 1s, soon}}, answer(2));
    store->Renew({{"b", "me", {}, 1s, deadline}}, answer(3));
    queued.set_value();
  });
  queued.get_future().wait();
  std::this_thread::sleep_for(100ms);
  {
    std::lock_guard lock(ops->mu);
    EXPECT_EQ(ops->at_gate, 1) << "no second call while the first is out";
    ops->gate_closed = false;
  }
  ops->gate_changed.notify_all();

  std::vector<std::vector<Result<RenewOutcome>>> got;
  for (int i = 0; i < 4; ++i) got.push_back(answers[i].get_future().get());
  {
    std::lock_guard lock(ops->mu);
    EXPECT_THAT(ops->batch_sizes, ::testing::ElementsAre(1u, 3u, 1u));
    EXPECT_THAT(ops->renewed, ::testing::ElementsAre("a", "b", "c", "d", "b"));
  }
  ASSERT_EQ(got[1].size(), 2u);
  ASSERT_EQ(got[2].size(), 2u);
  ASSERT_EQ(got[3].size(), 1u);
  for (const auto* r : {&got[0][0], &got[1][0], &got[1][1], &got[2][0], &got[3][0]}) {
    ASSERT_TRUE(r->ok()) << r->status().ToString();
    EXPECT_TRUE(std::holds_alternative<Renewed>(**r));
  }
  EXPECT_EQ(got[2][1].status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_THAT(got[2][1].status().message(),
              ::testing::HasSubstr("renew lease \"late\": deadline passed before the request ran"));
  store.reset();
  ops.reset();
  EXPECT_TRUE(ShutDown(std::move(runtime)));
}

TEST(SyncStoreTest, ALoopThreadNeverRunsTheOperationAnyOtherThreadRunsItInline) {
  auto runtime = Runtime::Create({.blocking_threads = 1});
  auto ops = std::make_shared<ScriptedOps>(runtime);
  auto store = std::make_shared<TestStore>(runtime, ops, SyncPolicy{});
  const TimePoint deadline = runtime->clock().Now() + 10s;

  // From this (user) thread: run here, answered before Release returns.
  const std::thread::id here = std::this_thread::get_id();
  std::thread::id answered_on;
  store->Release({"a", "me", {}, deadline},
                 [&](Status) { answered_on = std::this_thread::get_id(); });
  EXPECT_EQ(answered_on, here);

  // From the loop: the blocking lane.
  std::promise<bool> ran_on_loop;
  runtime->Post([&] {
    store->Break("b", deadline, [&](Status) { ran_on_loop.set_value(runtime->OnLoopThread()); });
  });
  EXPECT_FALSE(ran_on_loop.get_future().get());
  {
    std::lock_guard lock(ops->mu);
    ASSERT_EQ(ops->calls.size(), 2u);
    EXPECT_FALSE(ops->calls[1].on_loop);
  }
  store.reset();
  ops.reset();
  EXPECT_TRUE(ShutDown(std::move(runtime)));
}

}  // namespace
}  // namespace leasehold::kit
