// LeaseMajority: docs/conformance.md items 42-50, each as a named test, plus the
// stability window, the minority delay and option validation. Every test runs
// on the simulated runtime with the memory store's fault injection.
#include "leasehold/lease_majority.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>

#include "faulty_store.h"
#include "leasehold/backends/memory.h"
#include "test_util.h"

namespace leasehold {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;
using testing::Set;
using testing::Split;

constexpr char kName[] = "split-brain";

// A store without fencing tokens, forwarding to a MemoryStore.
class NoFencingStore final : public Store {
 public:
  explicit NoFencingStore(std::shared_ptr<MemoryStore> inner)
      : Store(inner->runtime()), inner_(std::move(inner)) {}
  std::string Describe() const override { return "no-fencing:" + inner_->Describe(); }
  StoreCapabilities capabilities() const override {
    StoreCapabilities c = inner_->capabilities();
    c.fencing = false;
    return c;
  }
  void Acquire(AcquireRequest r, AcquireCallback done) override {
    inner_->Acquire(std::move(r), [done](Result<AcquireOutcome> o) {
      if (o.ok()) {
        if (auto* a = std::get_if<Acquired>(&*o)) a->token.sequence = 0;
      }
      done(std::move(o));
    });
  }
  void Renew(std::vector<RenewRequest> b, RenewCallback done) override {
    inner_->Renew(std::move(b), std::move(done));
  }
  void Release(ReleaseRequest r, StatusCallback done) override {
    inner_->Release(std::move(r), std::move(done));
  }
  void Inspect(std::string n, TimePoint d, InspectCallback done) override {
    inner_->Inspect(std::move(n), d, std::move(done));
  }

 private:
  std::shared_ptr<MemoryStore> inner_;
};

class LeaseMajorityTest : public ::testing::Test {
 protected:
  std::shared_ptr<Lease> MakeLease(const std::string& owner,
                                   std::shared_ptr<Store> store = nullptr) {
    auto lease =
        Lease::Create(store ? store : store_, {.name = kName, .owner = owner, .ttl = seconds(3)});
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    return std::shared_ptr<Lease>(std::move(*lease));
  }
  std::unique_ptr<LeaseMajority> Make(const std::string& owner, LeaseMajorityOptions o = {},
                                      std::shared_ptr<Store> store = nullptr) {
    auto lm = LeaseMajority::Create(MakeLease(owner, std::move(store)), o);
    EXPECT_TRUE(lm.ok()) << lm.status().ToString();
    return std::move(*lm);
  }
  // Asks every `step` until a decision or `limit`.
  Decision DecideWithin(LeaseMajority& lm, const PartitionView& v, Duration limit,
                        Duration step = milliseconds(50)) {
    const TimePoint end = rt_->clock().Now() + limit;
    for (;;) {
      Decision d = lm.Decide(v);
      if (d.decided() || rt_->clock().Now() >= end) return d;
      rt_->RunFor(step);
    }
  }
  std::string HolderOf(const std::string& name = kName) {
    std::string holder;
    store_->Inspect(name, rt_->clock().Now() + seconds(1), [&](Result<LeaseRecord> r) {
      if (r.ok()) holder = r->holder;
    });
    return holder;
  }
  void TearDown() override {
    store_->SetFaults({});
    rt_->RunFor(std::chrono::minutes(2));
  }

  std::shared_ptr<SimulatedRuntime> rt_ = SimulatedRuntime::Create();
  std::shared_ptr<MemoryStore> store_ = MemoryStore::Create(rt_);
};

// --- 42, 43 --------------------------------------------------------------------

TEST_F(LeaseMajorityTest, StrictMajorityDownsTheUnreachableSideWithoutCallingTheLease) {
  auto lm = Make("a");
  Decision d = lm->Decide(Split("a", {"a", "b", "c"}, {"d", "e"}));
  EXPECT_EQ(d.kind, DecisionKind::kDownUnreachable);
  EXPECT_EQ(d.down, Set({"d", "e"}));
  rt_->RunFor(seconds(5));
  EXPECT_EQ(store_->stats().acquire_calls, 0u);
  EXPECT_EQ(store_->stats().inspect_calls, 0u);
}

TEST_F(LeaseMajorityTest, StrictMinorityDownsOurOwnSideWithoutCallingTheLease) {
  auto lm = Make("d");
  Decision d = lm->Decide(Split("d", {"d", "e"}, {"a", "b", "c"}));
  EXPECT_EQ(d.kind, DecisionKind::kDownOwnSide);
  EXPECT_EQ(d.down, Set({"d", "e"}));
  rt_->RunFor(seconds(5));
  EXPECT_EQ(store_->stats().acquire_calls, 0u);
  EXPECT_EQ(store_->stats().inspect_calls, 0u);
}

// --- 44 -------------------------------------------------------------------------

TEST_F(LeaseMajorityTest, EqualSplitStartsOneAcquireOffBandAndAWinDownsTheOtherSide) {
  MemoryFaults f;
  f.acquire.latency = milliseconds(800);  // a slow acquire
  store_->SetFaults(f);
  auto lm = Make("a");
  const auto view = Split("a", {"a", "b"}, {"c", "d"});
  const TimePoint start = rt_->clock().Now();
  for (int i = 0; i < 10; ++i) {
    Decision d = lm->Decide(view);
    EXPECT_FALSE(d.decided()) << d.explanation;
    EXPECT_EQ(d.kind, DecisionKind::kNoDecision);
    rt_->RunFor(milliseconds(70));
  }
  EXPECT_EQ(store_->stats().acquire_calls, 1u) << "repeated decisions started a second acquire";
  rt_->RunFor(milliseconds(200));
  Decision d = lm->Decide(view);
  EXPECT_EQ(d.kind, DecisionKind::kDownUnreachable) << d.explanation;
  EXPECT_EQ(d.down, Set({"c", "d"}));
  EXPECT_GE(rt_->clock().Now() - start, milliseconds(800));
  EXPECT_EQ(store_->stats().acquire_calls, 1u);
  EXPECT_THAT(HolderOf(), HasSubstr("a#"));
}

TEST_F(LeaseMajorityTest, EqualSplitLossDownsOurOwnSide) {
  store_->TakeOver(kName, "c#other", seconds(30));
  auto lm = Make("a");
  const auto view = Split("a", {"a", "b"}, {"c", "d"});
  Decision d = DecideWithin(*lm, view, seconds(5));
  EXPECT_EQ(d.kind, DecisionKind::kDownOwnSide) << d.explanation;
  EXPECT_EQ(d.down, Set({"a", "b"}));
  EXPECT_EQ(store_->stats().acquire_calls, 1u);
}

// --- 45 -------------------------------------------------------------------------

TEST_F(LeaseMajorityTest, AcquireFailureStaysUndecidedAndALaterDecisionRetries) {
  MemoryFaults f;
  f.acquire.unavailable = true;
  store_->SetFaults(f);
  auto lm = Make("a", {.retry_interval = milliseconds(500)});
  const auto view = Split("a", {"a", "b"}, {"c", "d"});
  // A failed request may have landed unseen (up to the settling bound after
  // its answer): the next attempt waits until such a tenure has expired, 2 x
  // request_timeout + TTL + drift = 5.06 s, so that it can never extend it.
  Decision d = DecideWithin(*lm, view, seconds(12));
  EXPECT_FALSE(d.decided());
  EXPECT_THAT(d.explanation, HasSubstr("UNAVAILABLE")) << "the error is not reported";
  const uint64_t failed = store_->stats().acquire_calls;
  EXPECT_GE(failed, 2u) << "a later decision did not retry";
  EXPECT_LE(failed, 3u) << "retries must wait out what a failed attempt may have written";
  store_->SetFaults({});
  d = DecideWithin(*lm, view, seconds(6));
  EXPECT_EQ(d.kind, DecisionKind::kDownUnreachable) << d.explanation;
}

// --- 46 -------------------------------------------------------------------------

TEST_F(LeaseMajorityTest, PrefersAcquireWithTokenWhenTheLeaseHasFencing) {
  auto lease = MakeLease("a");
  auto created = LeaseMajority::Create(lease, {});
  ASSERT_TRUE(created.ok());
  auto& lm = *created;
  Decision d = DecideWithin(*lm, Split("a", {"a", "b"}, {"c", "d"}), seconds(2));
  ASSERT_TRUE(d.decided()) << d.explanation;
  ASSERT_TRUE(d.token.has_value());
  EXPECT_GT(d.token->sequence, 0u);
  EXPECT_EQ(d.token, lease->token());
}

TEST_F(LeaseMajorityTest, FallsBackToAPlainAcquireWhenTheLeaseHasNoFencing) {
  auto store = std::make_shared<NoFencingStore>(store_);
  auto lm = Make("a", {}, store);
  Decision d = DecideWithin(*lm, Split("a", {"a", "b"}, {"c", "d"}), seconds(2));
  EXPECT_EQ(d.kind, DecisionKind::kDownUnreachable) << d.explanation;
  EXPECT_FALSE(d.token.has_value());
}

// --- 47 -------------------------------------------------------------------------

TEST_F(LeaseMajorityTest, AnAttemptAbandonedByItsTimeoutThatWinsLaterIsReleasedBeforeANewOne) {
  MemoryFaults f;
  f.acquire.latency = milliseconds(1500);
  f.acquire.answer_late = true;  // times out client-side, succeeds on the store
  store_->SetFaults(f);
  auto lm = Make("a", {.acquire_timeout = milliseconds(500), .retry_interval = milliseconds(100)});
  const auto view = Split("a", {"a", "b"}, {"c", "d"});
  for (int i = 0; i < 14; ++i) {  // to 1.4s: abandoned at 0.5s, not yet answered
    EXPECT_FALSE(lm->Decide(view).decided());
    rt_->RunFor(milliseconds(100));
  }
  EXPECT_EQ(lm->stats().abandoned, 1u);
  EXPECT_EQ(store_->stats().acquire_calls, 1u) << "a new attempt started before the old settled";
  store_->SetFaults({});
  rt_->RunFor(milliseconds(200));  // lands at 1.5s: a win nobody decides on
  EXPECT_EQ(lm->stats().released, 1u);
  EXPECT_EQ(HolderOf(), "") << "the late win was not given back";
  EXPECT_EQ(store_->stats().release_calls, 1u);
  Decision d = DecideWithin(*lm, view, seconds(2));  // a fresh attempt decides
  EXPECT_EQ(d.kind, DecisionKind::kDownUnreachable) << d.explanation;
  EXPECT_EQ(store_->stats().acquire_calls, 2u);
}

TEST_F(LeaseMajorityTest, ALateWinOfAnAttemptAbandonedByAViewChangeNeverWritesADecision) {
  MemoryFaults f;
  f.acquire.latency = seconds(1);
  f.acquire.answer_late = true;
  store_->SetFaults(f);
  auto lm = Make("a", {.acquire_timeout = seconds(2)});
  const auto first = Split("a", {"a", "b"}, {"c", "d"});
  const auto second = Split("a", {"a", "c"}, {"b", "d"});
  EXPECT_FALSE(lm->Decide(first).decided());
  rt_->RunFor(milliseconds(100));
  EXPECT_FALSE(lm->Decide(second).decided());  // abandons the first attempt
  store_->SetFaults({});
  std::vector<Decision> seen;
  for (int i = 0; i < 60; ++i) {
    seen.push_back(lm->Decide(second));
    rt_->RunFor(milliseconds(50));
  }
  for (const Decision& d : seen) {
    EXPECT_NE(d.down, Set({"c", "d"})) << "the first view's late result decided";
  }
  EXPECT_EQ(seen.back().down, Set({"b", "d"})) << seen.back().explanation;
  EXPECT_EQ(lm->stats().abandoned, 1u);
  EXPECT_EQ(lm->stats().released, 1u);
  EXPECT_EQ(store_->stats().acquire_calls, 2u);
}

TEST_F(LeaseMajorityTest, ALateWinAfterAHealIsReleasedAndDecidesNothing) {
  MemoryFaults f;
  f.acquire.latency = seconds(1);
  f.acquire.answer_late = true;
  store_->SetFaults(f);
  auto lm = Make("a");
  EXPECT_FALSE(lm->Decide(Split("a", {"a", "b"}, {"c", "d"})).decided());
  rt_->RunFor(milliseconds(100));
  const auto healed = Split("a", {"a", "b", "c", "d"}, {});
  EXPECT_EQ(lm->Decide(healed).kind, DecisionKind::kNothingToDecide);
  store_->SetFaults({});
  rt_->RunFor(seconds(2));
  EXPECT_EQ(lm->Decide(healed).kind, DecisionKind::kNothingToDecide);
  EXPECT_EQ(lm->stats().released, 1u);
  EXPECT_EQ(HolderOf(), "");
}

TEST_F(LeaseMajorityTest, AFailedReleaseOfALateWinRefusesToDecideForThatViewUntilItChanges) {
  MemoryFaults f;
  f.acquire.latency = seconds(1);
  f.acquire.answer_late = true;
  f.release.unavailable = true;
  store_->SetFaults(f);
  auto lm = Make("a", {.acquire_timeout = milliseconds(500), .retry_interval = milliseconds(100)});
  const auto view = Split("a", {"a", "b"}, {"c", "d"});
  EXPECT_FALSE(lm->Decide(view).decided());
  rt_->RunFor(milliseconds(1500));  // timed out at 0.5s, won at 1s, release failed
  EXPECT_EQ(lm->stats().failed_releases, 1u);
  store_->SetFaults({});
  for (int i = 0; i < 100; ++i) {  // 20 s, well past the lingering tenure's expiry
    Decision d = lm->Decide(view);
    ASSERT_FALSE(d.decided()) << "decided after a failed release: " << d.explanation;
    EXPECT_THAT(d.explanation, HasSubstr("fail-safe"));
    rt_->RunFor(milliseconds(200));
  }
  EXPECT_EQ(store_->stats().acquire_calls, 1u);
  // The view changes (b leaves the cluster's view as Leaving): decisions resume.
  auto changed = view;
  changed.members[1].status = MemberStatus::kLeaving;
  Decision d = DecideWithin(*lm, changed, seconds(5));
  EXPECT_EQ(d.kind, DecisionKind::kDownUnreachable) << d.explanation;
}

TEST_F(LeaseMajorityTest, NoNewAttemptStartsWhileATenureWhoseReleaseFailedMayLive) {
  MemoryFaults f;
  f.acquire.latency = seconds(1);
  f.acquire.answer_late = true;
  f.release.unavailable = true;
  store_->SetFaults(f);
  auto lm = Make("a", {.acquire_timeout = milliseconds(500), .retry_interval = milliseconds(100)});
  EXPECT_FALSE(lm->Decide(Split("a", {"a", "b"}, {"c", "d"})).decided());
  rt_->RunFor(milliseconds(1100));  // won at 1s, release failed at once
  store_->SetFaults({});
  const TimePoint failed_at = rt_->clock().Now();
  const auto other = Split("a", {"a", "c"}, {"b", "d"});
  Decision d = DecideWithin(*lm, other, seconds(10));
  EXPECT_EQ(d.kind, DecisionKind::kDownUnreachable) << d.explanation;
  // Not before the lingering tenure (TTL 3s from its write at 1s) had expired.
  EXPECT_GE(rt_->clock().Now() - failed_at, milliseconds(2900));
  EXPECT_EQ(store_->stats().acquire_calls, 2u);
}

// --- 47: the three schedules that ended in split brain (issue 17) --------------

// A cluster of four on one MemoryStore, each member reaching it through its
// own FaultyStore; c and d (the side {c,d}) notice the split `lag` late.
class SplitBrainScheduleTest : public LeaseMajorityTest {
 protected:
  struct Member {
    std::shared_ptr<testing::FaultyStore> store;
    std::shared_ptr<Lease> lease;
    std::unique_ptr<LeaseMajority> lm;
    bool stopped = false;
  };
  void Add(const std::string& name, LeaseOptions lo, LeaseMajorityOptions o) {
    Member m;
    m.store = std::make_shared<testing::FaultyStore>(store_, seconds(1), 1);
    lo.name = kName;
    lo.owner = name;
    if (lo.ttl == Duration::zero()) lo.ttl = seconds(3);
    auto lease = Lease::Create(m.store, lo);
    ASSERT_TRUE(lease.ok()) << lease.status().ToString();
    m.lease = std::shared_ptr<Lease>(std::move(*lease));
    auto lm = LeaseMajority::Create(m.lease, o);
    ASSERT_TRUE(lm.ok()) << lm.status().ToString();
    m.lm = std::move(*lm);
    members_[name] = std::move(m);
  }
  PartitionView ViewOf(const std::string& m, Duration lag) {
    const bool ab = m == "a" || m == "b";
    if (!ab && rt_->clock().Now() < start_ + lag) return Split(m, {"a", "b", "c", "d"}, {});
    return ab ? Split(m, {"a", "b"}, {"c", "d"}) : Split(m, {"c", "d"}, {"a", "b"});
  }
  // Everybody decides every 50 ms for `total`; a member that downs its own
  // side stops. Fails if both sides ever decide to down the other.
  void Run(Duration total, Duration lag) {
    bool survives_ab = false, survives_cd = false;
    for (Duration t{}; t < total; t += milliseconds(50)) {
      for (auto& [name, m] : members_) {
        if (m.stopped) continue;
        Decision d = m.lm->Decide(ViewOf(name, lag));
        if (!d.decided() || d.kind == DecisionKind::kNothingToDecide) continue;
        decisions_[name] = d;
        const bool ab = name == "a" || name == "b";
        if (d.down.count(name)) {
          m.stopped = true;
        } else {
          (ab ? survives_ab : survives_cd) = true;
        }
      }
      ASSERT_FALSE(survives_ab && survives_cd)
          << "split brain at " << FormatDuration(rt_->clock().Now() - start_) << ": " << Explain();
      rt_->RunFor(milliseconds(50));
    }
  }
  std::string Explain() {
    std::string out;
    for (auto& [name, d] : decisions_) out += name + ": " + d.explanation + "; ";
    return out;
  }
  void TearDown() override {
    members_.clear();
    LeaseMajorityTest::TearDown();
  }

  TimePoint start_ = rt_->clock().Now();
  std::map<std::string, Member> members_;
  std::map<std::string, Decision> decisions_;
};

// Door 1: a1's acquire lands 0.9 s after its deadline answer; its next
// attempt, with the same identity, would renew that unseen tenure and lose
// its answer; b reads a record being renewed and adopts; c, noticing the
// split late, wins once it lapses. Each attempt now waits until whatever an
// earlier failed attempt may have written has expired.
TEST_F(SplitBrainScheduleTest, ARequestLandingAfterItsTimeoutAnswerIsNeverRenewedUnseen) {
  Add("a", {}, {});
  Add("b", {}, {});
  Add("c", {}, {});
  Add("d", {}, {});
  members_["a"].store->ScriptAcquire({.land = milliseconds(1900)});  // answered DE at 1 s
  members_["a"].store->ScriptAcquire({.lose = true});                // lands, answer lost
  members_["a"].store->ScriptAcquire({.lose = true});
  Run(seconds(25), /*lag=*/milliseconds(7300));
  EXPECT_FALSE(decisions_.empty()) << "nobody decided";
}

// Door 2: a late win (after the decider's own timeout, after renew_interval)
// was renewed at once by the engine before the decider's release went out;
// the release failed, the renewal landed late, b adopted the renewed tenure.
// The engine now runs the acquire Future's continuations before any renewal,
// and LeaseMajority releases a late win from inside its continuation.
TEST_F(SplitBrainScheduleTest, ALateWinIsReleasedBeforeTheEngineCanRenewIt) {
  Add("a", {}, {.acquire_timeout = milliseconds(500)});
  Add("b", {}, {.poll_interval = milliseconds(200)});
  Add("c", {}, {});
  Add("d", {}, {});
  // Won at 1.5 s (past renew_interval): the record lives to 4.5 s unless renewed.
  members_["a"].store->ScriptAcquire({.land = milliseconds(1500), .late = true});
  members_["a"].store->FailReleases(true);
  MemoryFaults f;
  f.renew.latency = milliseconds(1900);  // a renewal sent at 1.5 s would land at 3.4 s
  store_->SetFaults(f);
  Run(seconds(20), /*lag=*/milliseconds(6600));
  EXPECT_EQ(members_["a"].lm->stats().failed_releases, 1u) << "the schedule did not happen";
}

// Door 3: acquire_attempts = 2 and acquire_timeout below retry_delay, no
// fault at all: every contended attempt of the losing side was abandoned
// before its "contended" answer, so that side never decided, and won once
// the winner released. Attempts are now one request each.
TEST_F(SplitBrainScheduleTest, AShortAcquireTimeoutWithSeveralAttemptsStillDecidesTheLoss) {
  for (const char* m : {"a", "b", "c", "d"}) {
    Add(m, {.acquire_attempts = 2, .retry_delay = milliseconds(100)},
        {.acquire_timeout = milliseconds(50), .release_after = seconds(2)});
  }
  Run(seconds(10), /*lag=*/milliseconds(500));
  ASSERT_TRUE(decisions_.count("c")) << Explain();
  EXPECT_EQ(decisions_["c"].down, Set({"c", "d"})) << Explain();
}

// --- 48 -------------------------------------------------------------------------

TEST_F(LeaseMajorityTest, ACachedDecisionIsDroppedWhenTheViewChanges) {
  auto lm = Make("a");
  EXPECT_EQ(lm->Decide(Split("a", {"a", "b", "c"}, {"d"})).down, Set({"d"}));
  EXPECT_EQ(lm->Decide(Split("a", {"a", "b", "c"}, {"d"})).down, Set({"d"}));
  EXPECT_EQ(lm->Decide(Split("a", {"a"}, {"b", "c", "d"})).down, Set({"a"}));
  EXPECT_EQ(lm->Decide(Split("a", {"a", "b", "c", "d"}, {})).kind, DecisionKind::kNothingToDecide);
}

TEST_F(LeaseMajorityTest, AHealResetsEverythingButTheTrackingOfAnAbandonedAttempt) {
  MemoryFaults f;
  f.acquire.latency = seconds(2);
  f.acquire.answer_late = true;
  store_->SetFaults(f);
  auto lm = Make("a", {.acquire_timeout = seconds(3)});
  const auto view = Split("a", {"a", "b"}, {"c", "d"});
  EXPECT_FALSE(lm->Decide(view).decided());
  rt_->RunFor(milliseconds(100));
  EXPECT_EQ(lm->Decide(Split("a", {"a", "b", "c", "d"}, {})).kind,
            DecisionKind::kNothingToDecide);  // heal
  store_->SetFaults({});
  // Split again at once: the abandoned attempt is still out, so nothing new
  // starts until it has answered (2s) and its win was released.
  for (int i = 0; i < 18; ++i) {
    EXPECT_FALSE(lm->Decide(view).decided());
    EXPECT_EQ(store_->stats().acquire_calls, 1u);
    rt_->RunFor(milliseconds(100));
  }
  Decision d = DecideWithin(*lm, view, seconds(3));
  EXPECT_EQ(d.kind, DecisionKind::kDownUnreachable) << d.explanation;
  EXPECT_EQ(store_->stats().acquire_calls, 2u);
  EXPECT_EQ(lm->stats().released, 1u);
}

// --- 49 -------------------------------------------------------------------------

TEST_F(LeaseMajorityTest, ARoleFilterRestrictsWhoCounts) {
  auto lm = Make("a", {.role = "db"});
  // 3 members here, 2 there -- but only 1 "db" here against 2 there.
  Decision d = lm->Decide(Split("a", {"a", "b", "c"}, {"d", "e"}, {"c", "d", "e"}, "db"));
  EXPECT_EQ(d.kind, DecisionKind::kDownOwnSide) << d.explanation;
  EXPECT_EQ(d.down, Set({"a", "b", "c"})) << "members without the role go down with their side";
  EXPECT_EQ(store_->stats().acquire_calls, 0u);
}

TEST_F(LeaseMajorityTest, OnlyTheLowestAddressedMemberWithTheRoleDecidesAnEqualSplit) {
  // "a" has no role: "b" is the decider of this side, "a" reads the record.
  auto a = Make("a", {.role = "db"});
  const auto view = Split("a", {"a", "b"}, {"c", "d"}, {"b", "d"}, "db");
  for (int i = 0; i < 5; ++i) {
    EXPECT_FALSE(a->Decide(view).decided());
    rt_->RunFor(milliseconds(100));
  }
  EXPECT_EQ(store_->stats().acquire_calls, 0u);
  EXPECT_GE(store_->stats().inspect_calls, 1u);
}

// --- 50 -------------------------------------------------------------------------

TEST_F(LeaseMajorityTest, ASideThatWinsTheLeaseSurvivesWholeAndTheOtherDownsItselfWhole) {
  std::map<std::string, std::unique_ptr<LeaseMajority>> members;
  for (const char* m : {"a", "b", "c", "d"}) members[m] = Make(m);
  std::map<std::string, PartitionView> views = {
      {"a", Split("a", {"a", "b"}, {"c", "d"})},
      {"b", Split("b", {"a", "b"}, {"c", "d"})},
      {"c", Split("c", {"c", "d"}, {"a", "b"})},
      {"d", Split("d", {"c", "d"}, {"a", "b"})},
  };
  std::map<std::string, Decision> decided;
  for (int i = 0; i < 400 && decided.size() < 4; ++i) {
    for (auto& [m, lm] : members) {
      if (decided.count(m)) continue;
      Decision d = lm->Decide(views[m]);
      if (d.decided()) decided[m] = d;
    }
    rt_->RunFor(milliseconds(50));
  }
  ASSERT_EQ(decided.size(), 4u);
  EXPECT_EQ(decided["a"].down, Set({"c", "d"}));
  EXPECT_EQ(decided["b"].down, Set({"c", "d"})) << decided["b"].explanation;
  EXPECT_EQ(decided["c"].down, Set({"c", "d"}));
  EXPECT_EQ(decided["d"].down, Set({"c", "d"})) << decided["d"].explanation;
  EXPECT_EQ(store_->stats().acquire_calls, 2u) << "only one decider per side may acquire";
}

TEST_F(LeaseMajorityTest, ANonDeciderNeverAdoptsTheLingeringTenureOfAnAbandonedAttempt) {
  // a's attempt times out, wins late, and its release fails: the record names
  // a for one more TTL, unrenewed. b reads it all along and must not take it
  // for a win (the other side may acquire once it expires).
  MemoryFaults f;
  f.acquire.latency = seconds(1);
  f.acquire.answer_late = true;
  f.release.unavailable = true;
  store_->SetFaults(f);
  auto a = Make("a", {.acquire_timeout = milliseconds(500)});
  auto b = Make("b", {.poll_interval = milliseconds(200)});
  const auto view_a = Split("a", {"a", "b"}, {"c", "d"});
  const auto view_b = Split("b", {"a", "b"}, {"c", "d"});
  bool saw_a_hold = false;
  for (int i = 0; i < 100; ++i) {  // 10 s
    EXPECT_FALSE(a->Decide(view_a).decided());
    Decision d = b->Decide(view_b);
    ASSERT_FALSE(d.decided()) << "adopted an unrenewed tenure: " << d.explanation;
    saw_a_hold = saw_a_hold || HolderOf().rfind("a#", 0) == 0;
    rt_->RunFor(milliseconds(100));
  }
  EXPECT_TRUE(saw_a_hold) << "the scenario never produced the lingering tenure";
  EXPECT_GE(b->stats().record_reads, 10u);
}

TEST_F(LeaseMajorityTest, TheWinnerReleasesTheLeaseOnceTheOtherSideIsGoneAndReleaseAfterPassed) {
  auto lm = Make("a", {.release_after = seconds(10)});
  const TimePoint start = rt_->clock().Now();
  Decision d = DecideWithin(*lm, Split("a", {"a", "b"}, {"c", "d"}), seconds(2));
  ASSERT_EQ(d.kind, DecisionKind::kDownUnreachable);
  // The other side is downed and removed from the view.
  const auto gone = Split("a", {"a", "b"}, {});
  EXPECT_EQ(lm->Decide(gone).kind, DecisionKind::kNothingToDecide);
  rt_->RunFor(seconds(10) - (rt_->clock().Now() - start) - milliseconds(100));
  EXPECT_THAT(HolderOf(), HasSubstr("a#")) << "released before release_after";
  rt_->RunFor(milliseconds(200));
  EXPECT_EQ(HolderOf(), "") << "not released once the other side was gone";
  EXPECT_EQ(lm->stats().released, 1u);
}

TEST_F(LeaseMajorityTest, TheWinnerKeepsTheLeaseWhileTheOtherSideIsStillUnreachable) {
  auto lm = Make("a", {.release_after = seconds(1)});
  const auto view = Split("a", {"a", "b"}, {"c", "d"});
  ASSERT_TRUE(DecideWithin(*lm, view, seconds(2)).decided());
  for (int i = 0; i < 30; ++i) {
    (void)lm->Decide(view);
    rt_->RunFor(seconds(1));
  }
  EXPECT_THAT(HolderOf(), HasSubstr("a#"));
}

// --- stability, minority delay, options ---------------------------------------------

TEST_F(LeaseMajorityTest, NoDecisionBeforeTheViewWasStableForStableAfter) {
  auto lm = Make("a", {.stable_after = seconds(2)});
  const auto view = Split("a", {"a", "b", "c"}, {"d"});
  EXPECT_FALSE(lm->Decide(view).decided());
  rt_->RunFor(milliseconds(1900));
  EXPECT_FALSE(lm->Decide(view).decided());
  // A change restarts the window.
  const auto other = Split("a", {"a", "b", "c"}, {"e"});
  EXPECT_FALSE(lm->Decide(other).decided());
  rt_->RunFor(milliseconds(1900));
  EXPECT_FALSE(lm->Decide(other).decided());
  rt_->RunFor(milliseconds(100));
  EXPECT_EQ(lm->Decide(other).down, Set({"e"}));
}

TEST_F(LeaseMajorityTest, TheSideWithFewerMembersWaitsMinorityDelayBeforeTryingTheLease) {
  auto lm = Make("a", {.role = "db", .minority_delay = seconds(3)});
  // One "db" member a side, but 2 members here against 3 there.
  const auto view = Split("a", {"a", "b"}, {"c", "d", "e"}, {"a", "c"}, "db");
  for (int i = 0; i < 29; ++i) {
    EXPECT_FALSE(lm->Decide(view).decided());
    rt_->RunFor(milliseconds(100));
  }
  EXPECT_EQ(store_->stats().acquire_calls, 0u);
  Decision d = DecideWithin(*lm, view, seconds(1));
  EXPECT_EQ(d.kind, DecisionKind::kDownUnreachable) << d.explanation;
  EXPECT_EQ(store_->stats().acquire_calls, 1u);
}

TEST_F(LeaseMajorityTest, AViewWhoseSelfIsNotTheLeaseOwnerIsInvalid) {
  auto lm = Make("a");
  Decision d = lm->Decide(Split("b", {"a", "b"}, {"c"}));
  EXPECT_EQ(d.kind, DecisionKind::kInvalidView);
  EXPECT_THAT(d.explanation, HasSubstr("owner"));
}

TEST_F(LeaseMajorityTest, OptionsAreValidatedNamingTheField) {
  auto bad = LeaseMajority::Create(MakeLease("a"), {.stable_after = -seconds(1)});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("stable_after"));
  auto null = LeaseMajority::Create(nullptr, {});
  EXPECT_FALSE(null.ok());
  auto good = LeaseMajority::Create(MakeLease("a"), {});
  ASSERT_TRUE(good.ok());
  EXPECT_EQ((*good)->options().acquire_timeout, seconds(2));  // 2 x request_timeout (ttl/3)
}

}  // namespace
}  // namespace leasehold
