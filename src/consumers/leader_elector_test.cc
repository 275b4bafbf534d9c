// LeaderElector on the simulated runtime and the memory store: hand-off,
// loss, re-campaign, health, shutdown ordering, options.
#include "leasehold/leader_elector.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "faulty_store.h"
#include "leasehold/backends/memory.h"

namespace leasehold {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kName[] = "leader";

struct Recorder {
  std::vector<std::string> events;
  std::vector<FencingToken> tokens;
  std::stop_token stop;
  LeaderCallbacks Callbacks(const std::string& who) {
    return {
        .on_started_leading =
            [this, who](const FencingToken& t, std::stop_token s) {
              events.push_back(who + " started");
              tokens.push_back(t);
              stop = s;
            },
        .on_stopped_leading = [this, who] { events.push_back(who + " stopped"); },
        .on_new_leader =
            [this, who](const std::string& id) {
              events.push_back(who + " sees " + id.substr(0, id.find('#')));
            },
    };
  }
};

class LeaderElectorTest : public ::testing::Test {
 protected:
  std::shared_ptr<Lease> MakeLease(const std::string& owner) {
    auto lease = Lease::Create(store_, {.name = kName, .owner = owner, .ttl = seconds(3)});
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    return std::shared_ptr<Lease>(std::move(*lease));
  }
  std::unique_ptr<LeaderElector> Make(std::shared_ptr<Lease> lease, LeaderCallbacks cb,
                                      bool recampaign = true) {
    auto e = LeaderElector::Create(std::move(lease), {.retry_period = milliseconds(500),
                                                      .recampaign = recampaign,
                                                      .health_tolerance = Duration::zero(),
                                                      .callbacks = std::move(cb)});
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return std::move(*e);
  }
  void TearDown() override {
    store_->SetFaults({});
    rt_->RunFor(std::chrono::minutes(1));
  }
  std::shared_ptr<SimulatedRuntime> rt_ = SimulatedRuntime::Create();
  std::shared_ptr<MemoryStore> store_ = MemoryStore::Create(rt_);
};

TEST_F(LeaderElectorTest, TheFirstCandidateLeadsAndTheOthersLearnWhoLeads) {
  Recorder ra, rb;
  auto la = MakeLease("a");
  auto a = Make(la, ra.Callbacks("a"));
  auto b = Make(MakeLease("b"), rb.Callbacks("b"));
  a->Start();
  rt_->RunFor(milliseconds(10));
  b->Start();
  rt_->RunFor(seconds(2));
  EXPECT_TRUE(a->IsLeader());
  EXPECT_FALSE(b->IsLeader());
  EXPECT_EQ(b->CurrentLeader(), la->identity());
  EXPECT_EQ(a->CurrentLeader(), la->identity());
  EXPECT_THAT(ra.events, ElementsAre("a sees a", "a started"));
  EXPECT_THAT(rb.events, ElementsAre("b sees a"));
  ASSERT_EQ(ra.tokens.size(), 1u);
  EXPECT_EQ(ra.tokens[0].sequence, 1u);
  EXPECT_FALSE(ra.stop.stop_requested());
}

TEST_F(LeaderElectorTest, ShutdownHandsLeadershipOverWithinOneRoundTrip) {
  Recorder ra, rb;
  auto a = Make(MakeLease("a"), ra.Callbacks("a"));
  auto b = Make(MakeLease("b"), rb.Callbacks("b"));
  a->Start();
  rt_->RunFor(milliseconds(10));
  b->Start();
  rt_->RunFor(seconds(2));
  ASSERT_TRUE(a->IsLeader());
  const TimePoint handoff = rt_->clock().Now();
  a->Shutdown();
  EXPECT_TRUE(ra.stop.stop_requested()) << "leadership ended but the stop token did not fire";
  EXPECT_FALSE(a->IsLeader());
  rt_->RunFor(milliseconds(50));  // the store's watch wakes b's waiting campaign
  EXPECT_TRUE(b->IsLeader());
  EXPECT_LE(rt_->clock().Now() - handoff, milliseconds(50));
  EXPECT_THAT(ra.events, ElementsAre("a sees a", "a started", "a stopped"));
  ASSERT_EQ(rb.tokens.size(), 1u);
  EXPECT_GT(rb.tokens[0].sequence, ra.tokens[0].sequence);
}

TEST_F(LeaderElectorTest, ShutdownFromTheLeadingCallbackReleasesOnlyAfterItReturned) {
  std::unique_ptr<LeaderElector> a;
  auto lease = MakeLease("a");
  std::string holder_in_callback;
  bool alive_in_callback = false;
  bool stopped_in_callback = false;
  a = Make(lease, {.on_started_leading =
                       [&](const FencingToken&, std::stop_token stop) {
                         a->Shutdown();  // returns at once: we are the leading callback
                         stopped_in_callback = stop.stop_requested();
                         alive_in_callback = lease->CheckAlive();
                         store_->Inspect(kName, rt_->clock().Now() + seconds(1),
                                         [&](Result<LeaseRecord> r) {
                                           if (r.ok()) holder_in_callback = r->holder;
                                         });
                       },
                   .on_stopped_leading = {},
                   .on_new_leader = {}});
  a->Start();
  rt_->RunFor(seconds(1));
  EXPECT_TRUE(stopped_in_callback);
  EXPECT_TRUE(alive_in_callback) << "released before the leading callback returned";
  EXPECT_EQ(holder_in_callback, lease->identity());
  std::string holder_after = "unset";
  store_->Inspect(kName, rt_->clock().Now() + seconds(1),
                  [&](Result<LeaseRecord> r) { holder_after = r.ok() ? r->holder : ""; });
  EXPECT_EQ(holder_after, "") << "not released after the leading callback returned";
}

TEST_F(LeaderElectorTest, ALostLeaseStopsLeadingAndTheElectorCampaignsAgain) {
  Recorder ra;
  auto a = Make(MakeLease("a"), ra.Callbacks("a"));
  a->Start();
  rt_->RunFor(seconds(1));
  ASSERT_TRUE(a->IsLeader());
  store_->TakeOver(kName, "intruder", seconds(4));
  rt_->RunFor(seconds(2));  // the next renewal learns it was taken over
  EXPECT_FALSE(a->IsLeader());
  EXPECT_TRUE(ra.stop.stop_requested());
  // The poll may see the intruder before the renewal learns of it.
  EXPECT_THAT(ra.events, ::testing::AnyOf(
                             ElementsAre("a sees a", "a started", "a stopped", "a sees intruder"),
                             ElementsAre("a sees a", "a started", "a sees intruder", "a stopped")));
  rt_->RunFor(seconds(5));  // the intruder's record expires: a leads again
  EXPECT_TRUE(a->IsLeader());
  ASSERT_EQ(ra.tokens.size(), 2u);
  EXPECT_GT(ra.tokens[1].sequence, ra.tokens[0].sequence);
  EXPECT_FALSE(ra.stop.stop_requested()) << "the new tenure's stop token";
}

TEST_F(LeaderElectorTest, WithoutRecampaignALostLeaseEndsTheCampaign) {
  Recorder ra;
  auto a = Make(MakeLease("a"), ra.Callbacks("a"), /*recampaign=*/false);
  a->Start();
  rt_->RunFor(seconds(1));
  ASSERT_TRUE(a->IsLeader());
  store_->Delete(kName);
  rt_->RunFor(seconds(10));
  EXPECT_FALSE(a->IsLeader());
  EXPECT_EQ(ra.tokens.size(), 1u);
}

TEST_F(LeaderElectorTest, AFollowerTakesOverWhenTheLeaderStopsRenewing) {
  Recorder ra, rb;
  // a does not campaign again: with only its renewals black-holed it would
  // otherwise win its own freed record back before b.
  auto a = Make(MakeLease("a"), ra.Callbacks("a"), /*recampaign=*/false);
  a->Start();
  rt_->RunFor(milliseconds(100));
  auto b = Make(MakeLease("b"), rb.Callbacks("b"));
  b->Start();
  rt_->RunFor(milliseconds(100));
  MemoryFaults f;
  f.renew.hang = true;  // a's renewals are black-holed
  store_->SetFaults(f);
  rt_->RunFor(seconds(4));
  EXPECT_FALSE(a->IsLeader());
  EXPECT_TRUE(b->IsLeader());
  EXPECT_TRUE(ra.stop.stop_requested());
  EXPECT_THAT(ra.events, ::testing::Contains("a stopped"));
  EXPECT_EQ(rb.events.back(), "b started");
}

TEST_F(LeaderElectorTest, TheHealthCheckFailsWhenRenewalStopsProgressing) {
  Recorder ra;
  auto a = Make(MakeLease("a"), ra.Callbacks("a"));
  EXPECT_TRUE(a->CheckHealth().ok()) << "not leading is healthy";
  a->Start();
  rt_->RunFor(seconds(5));
  EXPECT_TRUE(a->CheckHealth().ok()) << a->CheckHealth().ToString();
  MemoryFaults f;
  f.renew.unavailable = true;
  store_->SetFaults(f);
  // Renewals due every 1s, each allowed 1s: unhealthy once 2s have passed
  // since the last successful one -- still before the lease is lost (2.94s).
  Status health;
  TimePoint unhealthy_at{};
  for (int i = 0; i < 60 && health.ok(); ++i) {
    rt_->RunFor(milliseconds(50));
    health = a->CheckHealth();
    unhealthy_at = rt_->clock().Now();
  }
  EXPECT_FALSE(health.ok());
  EXPECT_THAT(health.message(), HasSubstr("renewals are failing"));
  EXPECT_TRUE(a->IsLeader()) << "unhealthy should be reported before the loss";
  (void)unhealthy_at;
  store_->SetFaults({});
  rt_->RunFor(milliseconds(600));
  EXPECT_TRUE(a->CheckHealth().ok()) << a->CheckHealth().ToString();
}

// Issue 18, schedule 1 (no fault at all): b's read is made while a holds,
// a releases, b wins, and only then does the read's answer arrive. It must
// not replace b's own win: CurrentLeader() is ours while leading, and
// on_new_leader runs once for b's term.
TEST_F(LeaderElectorTest, AReadMadeBeforeOurWinNeverOverwritesIt) {
  Recorder ra, rb;
  auto la = MakeLease("a");
  auto a = Make(la, ra.Callbacks("a"));
  a->Start();
  rt_->RunFor(milliseconds(100));
  ASSERT_TRUE(a->IsLeader());
  auto slow = std::make_shared<testing::FaultyStore>(store_, seconds(1), 1);
  slow->DelayReads(milliseconds(30));  // read now, answered 30 ms later
  auto lb = Lease::Create(slow, {.name = kName, .owner = "b", .ttl = seconds(3)});
  ASSERT_TRUE(lb.ok());
  auto b = Make(std::shared_ptr<Lease>(std::move(*lb)), rb.Callbacks("b"));
  b->Start();  // reads at once (sees a), answered at +30 ms
  rt_->RunFor(milliseconds(2));
  ASSERT_TRUE(la->Release().ok());  // b's watch wakes its campaign: b wins
  rt_->RunFor(milliseconds(10));
  ASSERT_TRUE(b->IsLeader());
  rt_->RunFor(milliseconds(100));  // the stale read's answer has arrived
  ASSERT_TRUE(b->CurrentLeader().has_value());
  EXPECT_EQ(b->CurrentLeader()->substr(0, 2), "b#") << *b->CurrentLeader();
  int b_announced = 0;
  for (size_t i = 0; i < rb.events.size(); ++i) {
    if (rb.events[i] == "b sees b") ++b_announced;
    if (rb.events[i] == "b sees a") {
      for (size_t j = 0; j < i; ++j) {
        EXPECT_NE(rb.events[j], "b started") << "a stale read announced a while b led";
      }
    }
  }
  EXPECT_EQ(b_announced, 1) << ::testing::PrintToString(rb.events);
  b->Shutdown();
  a->Shutdown();
}

// A standby whose reads fail does not go on reporting the holder it last
// saw: past retry_period + request_timeout it says it does not know.
TEST_F(LeaderElectorTest, AStandbyNeverReportsAHolderOlderThanItsBound) {
  Recorder ra, rb;
  auto a = Make(MakeLease("a"), ra.Callbacks("a"));
  a->Start();
  rt_->RunFor(milliseconds(100));
  auto failing = std::make_shared<testing::FaultyStore>(store_, seconds(1), 1);
  auto lb = Lease::Create(failing, {.name = kName, .owner = "b", .ttl = seconds(3)});
  ASSERT_TRUE(lb.ok());
  auto b = Make(std::shared_ptr<Lease>(std::move(*lb)), rb.Callbacks("b"));
  b->Start();
  rt_->RunFor(milliseconds(600));
  ASSERT_TRUE(b->CurrentLeader().has_value());
  EXPECT_EQ(b->CurrentLeader()->substr(0, 2), "a#");
  // From now on every read is answered only after its deadline (an error).
  failing->DelayReads(seconds(5));
  rt_->RunFor(milliseconds(1500));  // last answer: the read sent at 500 ms; bound 1.5 s
  EXPECT_FALSE(b->CurrentLeader().has_value()) << "reported a stale holder";
  failing->DelayReads(Duration::zero());
  b->Shutdown();
  a->Shutdown();
}

TEST_F(LeaderElectorTest, TimingOptionsAreValidatedNamingTheField) {
  auto bad = LeaderElector::Create(MakeLease("a"), {.retry_period = seconds(3)});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("retry_period"));
  auto zero = LeaderElector::Create(MakeLease("a"), {.retry_period = Duration::zero()});
  EXPECT_THAT(zero.status().message(), HasSubstr("retry_period"));
  auto tol = LeaderElector::Create(MakeLease("a"), {.health_tolerance = -seconds(1)});
  EXPECT_THAT(tol.status().message(), HasSubstr("health_tolerance"));
  EXPECT_FALSE(LeaderElector::Create(nullptr, {}).ok());
}

}  // namespace
}  // namespace leasehold
