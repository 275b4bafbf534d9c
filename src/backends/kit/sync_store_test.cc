#include "kit/sync_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

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
    std::lock_guard lock(mu);
    batch_sizes.push_back(batch.size());
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
  Duration rerun_every{};

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
  EXPECT_TRUE(ops->calls.empty()) << "nothing ran";
  ASSERT_EQ(statuses.size(), 6u);
  for (const Status& s : statuses)
    EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded) << s.ToString();
  EXPECT_THAT(statuses[0].message(),
              ::testing::HasSubstr("scripted:: acquire lease \"a\": deadline passed"));
  EXPECT_THAT(statuses[4].message(), ::testing::HasSubstr("renew 2 leases"))
      << "a batch answers by its earliest deadline";
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
