// Property: random equal partitions, heals, delays and store faults, driven
// through every member's LeaseMajority (both halves, one shared MemoryStore,
// one simulated runtime). Checked after every round of decisions:
//   * safety: within one partition, never does a member of one half decide
//     "down the other half" while a member of the other half decides the same
//     about the first (both halves surviving);
//   * a decision only ever downs exactly one whole side, or is empty;
//   * liveness: once faults stop and a view holds still, every member decides
//     within a bounded simulated time.
// 10,000 generated scenarios per run (LEASEHOLD_PROPERTY_CASES overrides;
// RC_PARAMS="seed=..." reproduces a run).
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <map>
#include <numeric>

#include "leasehold/backends/memory.h"
#include "leasehold/lease_majority.h"

namespace leasehold {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr Duration kStep = milliseconds(250);

enum class EventType { kSplit, kHeal, kWait, kFaults };

struct Event {
  EventType type = EventType::kWait;
  std::vector<int> keys{};  // split: the lower half of keys forms side 0
  int lagging_side = 0;     // split: this side sees it `lag` later
  Duration lag{};
  Duration wait{};        // wait: how long to keep deciding
  MemoryFaults faults{};  // faults: what the store does from now on
};

rc::Gen<Event> GenEvent(int n) {
  return rc::gen::exec([n] {
    Event e;
    e.type = static_cast<EventType>(*rc::gen::inRange(0, 4));
    switch (e.type) {
      case EventType::kSplit:
        e.keys = *rc::gen::container<std::vector<int>>(n, rc::gen::inRange(0, 1000));
        e.lagging_side = *rc::gen::inRange(0, 2);
        e.lag = milliseconds(*rc::gen::inRange(0, 9) * 250);
        break;
      case EventType::kHeal:
        break;
      case EventType::kWait:
        e.wait = milliseconds(*rc::gen::inRange(0, 13) * 250);
        break;
      case EventType::kFaults:
        // The store answers within acquire_timeout + TTL (its deadline or
        // late): the assumption lease_majority.h states.
        e.faults.acquire.latency = milliseconds(*rc::gen::inRange(0, 9) * 250);
        e.faults.acquire.answer_late = *rc::gen::arbitrary<bool>();
        e.faults.acquire.fail_next = *rc::gen::inRange(0, 3);
        e.faults.release.unavailable = *rc::gen::inRange(0, 4) == 0;
        e.faults.release.latency = milliseconds(*rc::gen::inRange(0, 3) * 300);
        break;
    }
    return e;
  });
}

struct Cluster {
  explicit Cluster(int n, LeaseMajorityOptions o) : names(n) {
    for (int i = 0; i < n; ++i) {
      names[i] = "m" + std::to_string(i);
      auto lease =
          Lease::Create(store, {.name = "split-brain", .owner = names[i], .ttl = seconds(3)});
      auto lm = LeaseMajority::Create(std::shared_ptr<Lease>(std::move(*lease)), o);
      members.push_back(std::move(*lm));
    }
  }
  ~Cluster() {
    members.clear();  // the leases release what they hold
    store->SetFaults({});
    rt->RunFor(std::chrono::minutes(2));
  }

  // side[i] in {0, 1}; `split` false: everybody reachable. The lagging side's
  // failure detector notices the split `lag` late: until then it sees nobody
  // unreachable.
  PartitionView ViewOf(int i) const {
    PartitionView v;
    v.self = names[i];
    const bool sees = split && !(side[i] == lagging_side && rt->clock().Now() < lag_until);
    for (size_t j = 0; j < names.size(); ++j) {
      v.members.push_back({.address = names[j], .status = MemberStatus::kUp, .roles = {}});
      if (sees && side[j] != side[i]) v.unreachable.insert(names[j]);
    }
    return v;
  }
  std::set<std::string> Side(int s) const {
    std::set<std::string> out;
    for (size_t j = 0; j < names.size(); ++j) {
      if (side[j] == s) out.insert(names[j]);
    }
    return out;
  }

  // One round: every member decides; the invariants are checked; time moves.
  void Round() {
    for (size_t i = 0; i < members.size(); ++i) {
      Decision d = members[i]->Decide(ViewOf(static_cast<int>(i)));
      if (!split) {
        RC_ASSERT(!d.decided());
        continue;
      }
      if (d.decided()) {
        const int mine = side[i];
        RC_ASSERT(d.down == Side(0) || d.down == Side(1));
        if (d.down == Side(1 - mine)) survives[mine] = true;
        decided[i] = true;
      }
    }
    // Two halves that both downed the other would both live on.
    RC_ASSERT(!(survives[0] && survives[1]));
    rt->RunFor(kStep);
  }

  void NewPartition(const std::vector<int>& keys, int lagging = 0, Duration lag = {}) {
    lagging_side = lagging;
    lag_until = rt->clock().Now() + lag;
    std::vector<int> order(names.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return keys[a] < keys[b]; });
    side.assign(names.size(), 1);
    for (size_t r = 0; r < names.size() / 2; ++r) side[order[r]] = 0;
    split = true;
    Reset();
  }
  void Heal() {
    split = false;
    Reset();
  }
  void Reset() {
    survives[0] = survives[1] = false;
    decided.assign(names.size(), false);
  }

  std::shared_ptr<SimulatedRuntime> rt = SimulatedRuntime::Create();
  std::shared_ptr<MemoryStore> store = MemoryStore::Create(rt);
  std::vector<std::string> names;
  std::vector<std::unique_ptr<LeaseMajority>> members;
  std::vector<int> side = std::vector<int>(names.size(), 0);
  bool split = false;
  int lagging_side = 0;
  TimePoint lag_until{};
  bool survives[2] = {false, false};
  std::vector<bool> decided;
};

void Scenario() {
  const int half = *rc::gen::inRange(1, 4);
  const int n = 2 * half;
  LeaseMajorityOptions o;
  o.stable_after = milliseconds(*rc::gen::element(0, 300, 1000));
  o.acquire_timeout = milliseconds(*rc::gen::element(300, 1000, 2000));
  o.retry_interval = milliseconds(200);
  o.release_after = seconds(*rc::gen::element(0, 5, 20));  // 0: the default
  const auto events = *rc::gen::resize(8, rc::gen::container<std::vector<Event>>(GenEvent(n)));

  Cluster c(n, o);
  c.side.assign(n, 0);
  c.Heal();
  for (const Event& e : events) {
    switch (e.type) {
      case EventType::kSplit:
        c.NewPartition(e.keys, e.lagging_side, e.lag);
        break;
      case EventType::kHeal:
        c.Heal();
        break;
      case EventType::kWait:
        break;
      case EventType::kFaults:
        c.store->SetFaults(e.faults);
        break;
    }
    c.Round();
    for (Duration waited{}; waited < e.wait; waited += kStep) c.Round();
  }
  // Faults stop; a heal, then a final split that holds still.
  c.store->SetFaults({});
  c.Heal();
  c.Round();
  c.NewPartition(*rc::gen::container<std::vector<int>>(n, rc::gen::inRange(0, 1000)));
  const TimePoint start = c.rt->clock().Now();
  while (std::find(c.decided.begin(), c.decided.end(), false) != c.decided.end()) {
    // Worst case (docs/lease-majority.md): stability, an abandoned attempt
    // settling, a lingering tenure, a previous winner's release_after hold,
    // and the adoption window.
    RC_ASSERT(c.rt->clock().Now() - start < seconds(60));
    c.Round();
  }
}

TEST(LeaseMajorityPropertyTest, TwoHalvesNeverBothSurviveAndAStableViewIsDecided) {
  int cases = 10000;
  if (const char* env = std::getenv("LEASEHOLD_PROPERTY_CASES")) cases = std::atoi(env);
  rc::detail::TestParams params = rc::detail::configuration().testParams;
  params.maxSuccess = cases;
  rc::detail::TestMetadata metadata;
  metadata.id = "LeaseMajorityPropertyTest/TwoHalvesNeverBothSurvive";
  metadata.description = metadata.id;
  const auto result = rc::detail::checkTestable(&Scenario, metadata, params);
  std::cout << "property: " << cases << " scenarios (seed " << params.seed << ")\n";
  if (!result.template is<rc::detail::SuccessResult>()) {
    std::ostringstream ss;
    rc::detail::printResultMessage(result, ss);
    FAIL() << ss.str();
  }
  EXPECT_EQ(result.template get<rc::detail::SuccessResult>().numSuccess, cases);
}

}  // namespace
}  // namespace leasehold
