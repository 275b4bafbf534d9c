// Fault tests (CTest label `fault`) of the PostgreSQL store against real,
// throwaway PostgreSQL 15 servers -- each test's own, since it restarts,
// pauses, re-clocks or reconfigures it: a restart (fast and immediate),
// sessions terminated by the server (busy or idle), the server SIGSTOPped
// past the TTL, renewals held up by a row lock or cut by a statement
// timeout, a server wall clock that jumps, and fenced writes across a
// takeover.
//
// Throughout, a sampler checks that two holders never believe they hold the
// lease at once (CheckAlive() true on both). A holder that cannot renew must
// lose on time: its OnLost fires once, no later than its safe deadline plus
// the conformance suite's scheduling slack (250 ms; 500 ms under
// sanitizers). Expiry is client-judged (postgresql.h): a contender takes a
// silent holder's row over one window after it (or, sharing observations,
// the holder's own client) last saw it change, whatever the server's clock
// says.

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "leasehold/backends/postgresql.h"
#include "leasehold/backends/postgresql_fence.h"
#include "leasehold/lease.h"
#include "postgresql_fault_fixture.h"

namespace leasehold::pg_test {
namespace {

// --- a. restart -------------------------------------------------------------

class PostgresFaultRestartTest : public PostgresFaultTest,
                                 public ::testing::WithParamInterface<bool> {};

// A restart (fast: sessions ended and a checkpoint; immediate: SIGQUIT and
// crash recovery) shorter than a third of the TTL is ridden out: renewals
// fail while the server is away and are retried within the budget. A longer
// one may cost the tenure, but then on time. Either way no contender
// acquires while the holder believes it holds, and afterwards the store
// works.
TEST_P(PostgresFaultRestartTest, HolderRidesOutARestartOrLosesOnTimeAndTheStoreWorksAfter) {
  const bool immediate = GetParam();
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RecordingStore* hs = OpenStore("holder");
  RecordingStore* cs = OpenStore("contender");
  ASSERT_TRUE(hs && cs);
  Lease* h = NewLease(hs, "h", kRestartTtl);
  Lease* c = NewLease(cs, "c", kRestartTtl);
  ASSERT_TRUE(h && c);
  LossLog losses(runtime_->clock());
  auto sub = h->OnLost(losses.Handler());
  auto th = AcquireNow(*h);
  ASSERT_TRUE(th.has_value());
  Sample(*h);
  Sample(*c);
  StartSampler();
  Poller poller(*c, *h);
  std::this_thread::sleep_for(h->options().renew_interval + 100ms);  // mid-cycle

  const TimePoint began = Now();
  ASSERT_TRUE(server_->Restart(immediate).ok()) << server_->LogTail();
  const TimePoint back = Now();
  const Duration took = back - began;
  std::printf("[ restart ] %s restart took %s\n", immediate ? "immediate" : "fast",
              Ms(took).c_str());

  // Wait for a renewal sent after the restart, or the loss.
  const Duration lifetime = h->options().ttl - *h->options().drift_allowance;
  ASSERT_TRUE(Eventually(
      [&] {
        auto d = h->safe_deadline();
        return !d || *d >= back + lifetime;
      },
      kRestartTtl + kSlack * 2));
  const bool kept = h->CheckAlive();
  std::printf("[ restart ] the holder %s its lease; renewals: %zu (%d failed)\n",
              kept ? "kept" : "lost", hs->renewals().size(), hs->Errors(""));
  if (took <= kRestartTtl / 3) {
    EXPECT_TRUE(kept) << "a restart of " << Ms(took) << " cost the lease";
  }
  if (kept) {
    // Liveness never comes back within a tenure: same tenure, never dead.
    EXPECT_EQ(losses.size(), 0u);
    EXPECT_EQ(h->token(), th);
  } else {
    ASSERT_NO_FATAL_FAILURE(ExpectLostOnTime(*h, losses, LossReason::kExpired));
  }
  poller.Stop();
  EXPECT_FALSE(poller.won() && poller.holder_alive_when_won())
      << "the contender acquired while the holder believed it held the lease";
  EXPECT_FALSE(kept && poller.won()) << "the contender acquired a lease that was kept";

  // The store works after the restart: hand-off by release, or takeover.
  if (kept) {
    ASSERT_TRUE(h->Release().ok());
    auto tc = AcquireNow(*c);
    ASSERT_TRUE(tc.has_value());
    EXPECT_GT(tc->sequence, th->sequence);
  } else if (!poller.won()) {
    auto tc = c->AcquireWithToken({.wait = true, .timeout = kRestartTtl * 3});
    ASSERT_TRUE(tc.ok()) << tc.status().ToString();
    ASSERT_TRUE(tc->has_value());
    EXPECT_GT((*tc)->sequence, th->sequence);
  }
  EXPECT_TRUE(c->CheckAlive());
  EXPECT_EQ(Row().first, c->identity());
  ASSERT_TRUE(c->Release().ok());
  EXPECT_EQ(Row().first, "");
  StopSampler();
  EXPECT_EQ(overlaps(), 0) << overlap_report();
}

INSTANTIATE_TEST_SUITE_P(Restart, PostgresFaultRestartTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "Immediate" : "Fast");
                         });

// --- b. terminated sessions -------------------------------------------------

// pg_terminate_backend of the holder's statement connection and of the
// waiter's statement and listening connections: the holder reconnects at its
// next renewal and keeps the lease; the waiter's listener reconnects, so a
// release still wakes it within a round trip or two, far under the TTL.
TEST_F(PostgresFaultTest, TerminatedSessionsAreReconnectedAndWaitersAreStillWoken) {
  // Two seconds, not one: a reconnect is a new server process and a login,
  // which on a loaded machine can take most of a 1 s TTL's renewal budget.
  constexpr Duration ttl = 2s;
  Scene scene;
  ASSERT_NO_FATAL_FAILURE(OpenScene("waiter", scene, {}, ttl));
  auto [hs, ws, h, w, th] = scene;
  LossLog& losses = holder_losses_;
  auto waiting = w->StartAcquire({.wait = true, .timeout = 60s});
  // When the waiter's acquire completed (shared: it may outlive a failed test).
  auto got_at = std::make_shared<std::atomic<int64_t>>(0);
  waiting.Then([got_at, clock = &runtime_->clock()](const AcquireResult&) {
    *got_at = clock->Now().time_since_epoch().count();
  });
  auto listeners = [&] {
    auto r = server_->Query(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'waiter' AND query LIKE "
        "'LISTEN%'",
        "postgres");
    return r.ok() && r->size() == 1 ? std::stoi((*r)[0][0]) : -1;
  };
  ASSERT_TRUE(Eventually([&] { return listeners() == 1; }, 5s)) << "the waiter never listened";

  const TimePoint cut = Now();
  auto holder_cut = server_->TerminateBackends("holder");
  auto waiter_cut = server_->TerminateBackends("waiter");
  ASSERT_TRUE(holder_cut.ok()) << holder_cut.status().ToString();
  ASSERT_TRUE(waiter_cut.ok()) << waiter_cut.status().ToString();
  EXPECT_EQ(*holder_cut, 1);  // its statement connection (it never waited)
  EXPECT_EQ(*waiter_cut, 2);  // statement and listening connections
  std::printf("[ cut     ] terminated %d holder and %d waiter sessions\n", *holder_cut,
              *waiter_cut);

  // The holder renews again on a new connection: a renewal sent after the
  // cut succeeded, within the same tenure.
  const Duration lifetime = h->options().ttl - *h->options().drift_allowance;
  ASSERT_TRUE(Eventually(
      [&] {
        auto d = h->safe_deadline();
        return !d || *d >= cut + lifetime;
      },
      ttl + kSlack));
  EXPECT_TRUE(h->CheckAlive());
  EXPECT_EQ(h->token(), th);
  EXPECT_EQ(losses.size(), 0u);
  // An idle session is replaced before the next renewal is sent (no error);
  // a cut that lands mid-renewal costs one failed attempt, retried.
  std::printf("[ renew   ] %d failed renewal attempts after the cut\n", hs->Errors(""));
  // The waiter listens again.
  ASSERT_TRUE(Eventually([&] { return listeners() == 1; }, 5s))
      << "the waiter's listener did not reconnect";
  EXPECT_FALSE(waiting.ready());

  const TimePoint released = Now();
  ASSERT_TRUE(h->Release().ok());
  ASSERT_TRUE(waiting.WaitFor(ttl * 2));
  const AcquireResult& tw = waiting.Wait();
  ASSERT_TRUE(tw.ok()) << tw.status().ToString();
  ASSERT_TRUE(tw->has_value());
  EXPECT_GT((*tw)->sequence, th->sequence);
  // The continuation runs just after the Future completes.
  ASSERT_TRUE(Eventually([&] { return got_at->load() != 0; }, 5s));
  const Duration handoff = TimePoint(Duration(got_at->load())) - released;
  std::printf("[ handoff ] %s after the release (TTL %s)\n", Ms(handoff).c_str(), Ms(ttl).c_str());
  EXPECT_LT(handoff, ttl / 4);
  StopSampler();
  EXPECT_EQ(overlaps(), 0) << overlap_report();
}

// A session the server ended while it was idle (pg_terminate_backend here;
// equally a restart, idle_session_timeout, a pooler or a firewall dropping
// idle connections) is replaced before the store's next request: that
// request cannot have reached the server, so failing it would only turn a
// release into a lease left held for its TTL, and an acquire into an error.
TEST_F(PostgresFaultTest, FirstRequestsAfterTheServerEndedIdleSessionsSucceed) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  RecordingStore* hs = OpenStore("holder");
  RecordingStore* cs = OpenStore("contender");
  ASSERT_TRUE(hs && cs);
  // No renewal falls due during the test: the connection stays idle.
  Lease* h = NewLease(hs, "h", 60s);
  Lease* c = NewLease(cs, "c", 60s);
  ASSERT_TRUE(h && c);
  auto th = AcquireNow(*h);
  ASSERT_TRUE(th.has_value());
  ASSERT_TRUE(c->Acquire().ok());  // contended; its connection is now idle too
  auto cut = server_->TerminateBackends("holder");
  ASSERT_TRUE(cut.ok()) << cut.status().ToString();
  EXPECT_EQ(*cut, 1);
  Status released = h->Release();
  EXPECT_TRUE(released.ok()) << released.ToString();
  ASSERT_TRUE(server_->TerminateBackends("contender").ok());
  auto tc = c->AcquireWithToken();
  ASSERT_TRUE(tc.ok()) << tc.status().ToString();
  EXPECT_TRUE(tc->has_value()) << "still held after the holder's release";
}

// --- c. server paused -------------------------------------------------------

// The server SIGSTOPped past the TTL: nothing answers, yet the holder's OnLost
// fires once, on time. After SIGCONT a contender (waiting all along) acquires
// with a higher sequence; the old holder's Release() and a release with its
// old token do not free it, and its fenced writes are refused.
TEST_F(PostgresFaultTest, PausedServerLosesTheHolderOnTimeAndAContenderTakesOverAfter) {
  Scene scene;
  ASSERT_NO_FATAL_FAILURE(OpenScene("contender", scene));
  auto [hs, cs, h, c, th] = scene;
  LossLog& losses = holder_losses_;
  auto waiting = c->StartAcquire({.wait = true, .timeout = 60s});
  std::this_thread::sleep_for(h->options().renew_interval);

  server_->Pause();
  const TimePoint paused = Now();
  ASSERT_NO_FATAL_FAILURE(ExpectLostOnTime(*h, losses, LossReason::kExpired));
  EXPECT_FALSE(waiting.ready()) << "the contender acquired from a paused server";
  server_->Resume();
  std::printf("[ pause   ] paused for %s\n", Ms(Now() - paused).c_str());

  // Late renewals sent before the pause may land now and restart the
  // contender's observation: up to one more window.
  ASSERT_TRUE(waiting.WaitFor(kTtl * 4)) << "no takeover after the server came back";
  const AcquireResult& tc = waiting.Wait();
  ASSERT_TRUE(tc.ok()) << tc.status().ToString();
  ASSERT_TRUE(tc->has_value());
  EXPECT_GT((*tc)->sequence, th->sequence);
  EXPECT_TRUE(c->CheckAlive());

  // The old holder cannot free the new tenure, nor write through its token.
  EXPECT_TRUE(h->Release().ok());
  Promise<Status> released(runtime_);
  hs->Release({.name = h->name(), .holder = h->identity(), .token = *th, .deadline = Now() + 5s},
              [released](Status s) mutable { released.Set(std::move(s)); });
  EXPECT_TRUE(released.future().Wait().ok()) << released.future().Wait().ToString();
  EXPECT_EQ(Row(), std::make_pair(c->identity(), std::to_string((*tc)->sequence)));
  EXPECT_TRUE(c->CheckAlive());
  PgConn conn = Connect(SuperuserConninfo("fenced"));
  ASSERT_EQ(PQstatus(conn.get()), CONNECTION_OK);
  Status stale =
      RunFenced(conn.get(), kName, *th, [](PGconn*) { return Status::Ok(); }, {.table = table_});
  EXPECT_EQ(stale.code(), StatusCode::kFailedPrecondition) << stale.ToString();
  Status current =
      RunFenced(conn.get(), kName, **tc, [](PGconn*) { return Status::Ok(); }, {.table = table_});
  EXPECT_TRUE(current.ok()) << current.ToString();
  EXPECT_EQ(losses.size(), 1u);
  StopSampler();
  EXPECT_EQ(overlaps(), 0) << overlap_report();
}

}  // namespace
}  // namespace leasehold::pg_test
