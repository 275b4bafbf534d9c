// Tests of the Kubernetes store's watches against the in-tree fake API
// server: a waiter woken by a change, by the end of its stream and by a 410,
// never after a cancel; a refused watch falls back to polling; a thousand
// waiters share one thread.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "fake_api_server.h"
#include "kubernetes_store_fixture.h"
#include "leasehold/backends/kubernetes.h"
#include "leasehold/future.h"
#include "leasehold/lease.h"
#include "testing/sanitizers.h"

namespace leasehold::kubernetes {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using store_test::KubernetesStoreTest;
using store_test::Won;
using testing::FakeApiServer;
using ::testing::HasSubstr;
using testing::Verb;

TEST_F(KubernetesStoreTest, AWatchFromACompactedVersionWakesTheWaiter) {
  for (bool as_status : {false, true}) {
    testing::FakeApiServerOptions options;
    options.gone_as_http_status = as_status;
    StartServer(options);
    auto store = Open();
    auto won = StoreAcquire(*store, "gone410", "a");
    ASSERT_TRUE(Won(won));
    const std::string version = server_->resource_version();
    auto renewed = StoreRenew(*store, "gone410", "a", Won(won)->token);
    ASSERT_TRUE(renewed.ok());
    server_->Compact();
    std::atomic<int> woken{0};
    WatchId id = store->Watch("gone410", version, [&] { ++woken; });
    ASSERT_NE(id, 0u);
    const TimePoint start = Now();
    while (woken == 0 && Now() - start < 3s) std::this_thread::sleep_for(5ms);
    EXPECT_EQ(woken.load(), 1) << (as_status ? "HTTP 410" : "ERROR event");
    store->CancelWatch(id);
  }
}

TEST_F(KubernetesStoreTest, AWatchIsWokenByAChangeAndByTheEndOfTheStreamButNotAfterCancel) {
  auto store = Open();
  auto won = StoreAcquire(*store, "w", "a");
  ASSERT_TRUE(Won(won));
  auto wait_for = [&](std::atomic<int>& n) {
    const TimePoint start = Now();
    while (n == 0 && Now() - start < 3s) std::this_thread::sleep_for(2ms);
    return n.load();
  };
  std::atomic<int> changed{0};
  WatchId a = store->Watch("w", server_->resource_version(), [&] { ++changed; });
  while (server_->active_watches() == 0) std::this_thread::sleep_for(2ms);
  ASSERT_TRUE(StoreRelease(*store, "w", "a", Won(won)->token).ok());
  EXPECT_EQ(wait_for(changed), 1);
  store->CancelWatch(a);
  while (server_->active_watches() != 0) std::this_thread::sleep_for(2ms);

  std::atomic<int> closed{0};
  WatchId b = store->Watch("w", server_->resource_version(), [&] { ++closed; });
  while (server_->active_watches() == 0) std::this_thread::sleep_for(2ms);
  server_->CloseWatches();
  EXPECT_EQ(wait_for(closed), 1);
  store->CancelWatch(b);

  std::atomic<int> cancelled{0};
  WatchId c = store->Watch("w", server_->resource_version(), [&] { ++cancelled; });
  store->CancelWatch(c);
  ASSERT_TRUE(server_->DeleteLease("default", "w"));
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(cancelled.load(), 0);
}

// A Role copied from client-go's leader election lacks `watch`: a waiter must
// not answer each refused watch with a read and a new watch at once.
TEST_F(KubernetesStoreTest, ARefusedWatchMakesTheWaiterPollInsteadOfSpinning) {
  auto holder = MakeLease(Open(), "nowatch", "a");
  auto waiter = MakeLease(Open(), "nowatch", "b");
  ASSERT_TRUE(*holder->Acquire());
  server_->Deny("system:serviceaccount:default:leasehold", Verb::kWatch);
  server_->ClearRequests();
  auto pending = waiter->StartAcquire({.wait = true, .timeout = 10s});
  std::this_thread::sleep_for(1500ms);
  EXPECT_FALSE(pending.ready());
  // One refused watch; then the waiter's fallback poll (not before a TTL)
  // instead of a read and a watch per round trip.
  EXPECT_LE(server_->CountRequests(Verb::kWatch), 2u);
  EXPECT_LE(server_->CountRequests(Verb::kGet), 3u);
  ASSERT_TRUE(holder->Release().ok());
  const AcquireResult& got = pending.Wait();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->has_value()) << "the poll found the released lease";
}

TEST_F(KubernetesStoreTest, AWaitingContenderHoldsWithinMillisecondsOfARelease) {
  auto holder = MakeLease(Open(), "handoff", "a");
  auto waiter = MakeLease(Open(), "handoff", "b");
  ASSERT_TRUE(*holder->Acquire());
  auto pending = waiter->StartAcquire({.wait = true, .timeout = 10s});
  while (server_->active_watches() == 0) std::this_thread::sleep_for(2ms);
  const TimePoint released = Now();
  ASSERT_TRUE(holder->Release().ok());
  const AcquireResult& got = pending.Wait();
  const Duration took = Now() - released;
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(got->has_value());
  EXPECT_LT(took, 200ms);
  EXPECT_EQ((*got)->sequence, 2u);
}

size_t ThreadsOfThisProcess() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    ++n;
  }
  return n;
}

// Waiting leases watch the record; every watch of a store shares one thread
// (stream_mux.h), so a thousand waiters cost one thread, not a thousand.
TEST_F(KubernetesStoreTest, AThousandWaitingLeasesShareOneWatchThread) {
  const int kWaiters = leasehold::testing::kSanitized ? 200 : 1000;
  // Each open watch occupies a server thread (the fake server is in this
  // process: its pool is counted in the baseline, started before it).
  StartServer({.threads = static_cast<size_t>(kWaiters) + 16});
  // The waiters' first reads go out together on the blocking lane, which
  // starts a thread per read in flight up to its ceiling (64 by default): on
  // a slow machine that is dozens. Cap it, so that what is counted is the
  // watches' cost.
  runtime_ = Runtime::Create({.blocking_threads = 4});
  auto store = Open();
  auto holder = MakeLease(store, "crowd", "holder", 30s);
  ASSERT_TRUE(*holder->Acquire());
  const size_t baseline = ThreadsOfThisProcess();
  std::vector<std::unique_ptr<Lease>> waiters;
  std::vector<Future<AcquireResult>> pending;
  for (int i = 0; i < kWaiters; ++i) {
    waiters.push_back(MakeLease(store, "crowd", "w" + std::to_string(i), 30s));
    pending.push_back(waiters.back()->StartAcquire({.wait = true, .timeout = 300s}));
  }
  // Not a timing test: the reads that precede the watches go four at a time,
  // and as the first test of a ctest -j4 run (beside three others starting
  // servers) they took over a minute once. Generous bounds, so that a failure
  // is a count.
  const TimePoint start = Now();
  while (server_->active_watches() < kWaiters && Now() - start < 180s) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(server_->active_watches(), kWaiters);
  const size_t added = ThreadsOfThisProcess() - baseline;
  // The watch thread, plus the runtime's blocking lane (4 threads, above) if
  // the reads started it after the baseline.
  std::printf("%d waiting leases added %zu threads\n", kWaiters, added);
  EXPECT_LE(added, 5u) << kWaiters << " waiting leases added " << added << " threads";
  // The release wakes them all; exactly one takes the lease.
  ASSERT_TRUE(holder->Release().ok());
  const auto holders = [&] {
    return std::count_if(waiters.begin(), waiters.end(),
                         [](const auto& w) { return w->CheckAlive(); });
  };
  const TimePoint released = Now();
  while (holders() == 0 && Now() - released < 100s) std::this_thread::sleep_for(10ms);
  const auto won = holders();
  EXPECT_EQ(won, 1);
}

}  // namespace
}  // namespace leasehold::kubernetes
