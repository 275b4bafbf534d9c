// Test-only: a store that reaches a shared store through per-member faults,
// for the consumers' tests (LeaseMajority's directed and property tests).
#ifndef LEASEHOLD_SRC_CONSUMERS_FAULTY_STORE_H_
#define LEASEHOLD_SRC_CONSUMERS_FAULTY_STORE_H_

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "leasehold/forwarding_store.h"

namespace leasehold::testing {

// Probabilities (0..1) of each fault, per request.
struct Faults {
  double land_late = 0;     // acquire/renew/release lands up to the settling bound late
  double lose_answer = 0;   // the caller hears kDeadlineExceeded at its deadline
  double answer_late = 0;   // the answer comes when the request lands, even past the deadline
  double swallow = 0;       // an acquire never lands and is never answered
  double release_fail = 0;  // a release fails without effect
  double read_late = 0;     // a read is answered late, within its deadline
};

// One member's view of the shared store, with that member's faults. Every
// delay stays within the engine's settling bound: a request lands no later
// than one request timeout after its deadline.
class FaultyStore final : public ForwardingStore {
 public:
  FaultyStore(std::shared_ptr<Store> inner, Duration request_timeout, uint32_t seed)
      : ForwardingStore(std::move(inner)), request_timeout_(request_timeout), rng_(seed) {}

  void SetFaults(const Faults& f) {
    std::lock_guard lock(mu_);
    faults_ = f;
  }

  // What the next acquire request does, ahead of the random faults: lands
  // `land` after it is sent; `lose`: its answer is lost (kDeadlineExceeded
  // at its deadline); `late`: answered when it lands, even past the deadline.
  struct Step {
    Duration land{};
    bool lose = false;
    bool late = false;
  };
  void ScriptAcquire(Step step) {
    std::lock_guard lock(mu_);
    script_.push_back(step);
  }
  // Every read is answered `delay` after it was made.
  void DelayReads(Duration delay) {
    std::lock_guard lock(mu_);
    read_delay_ = delay;
  }
  // Release requests fail (without effect) while true.
  void FailReleases(bool fail) {
    std::lock_guard lock(mu_);
    faults_.release_fail = fail ? 1.0 : 0.0;
  }

  void Acquire(AcquireRequest request, AcquireCallback done) override {
    Plan plan;
    {
      std::lock_guard lock(mu_);
      if (!script_.empty()) {
        const Step step = script_.front();
        script_.pop_front();
        plan.land = step.land;
        plan.lose = step.lose;
        plan.late = step.late;
      }
    }
    if (plan.land == Duration::zero() && !plan.lose && !plan.late) {
      plan = MakePlan(request.deadline, /*may_swallow=*/true, /*may_fail=*/false);
    }
    if (plan.swallow) return;
    auto answer = Once<Result<AcquireOutcome>>(std::move(done));
    Deliver(
        plan, request.deadline, [answer] { (*answer)(Timeout()); },
        [inner = inner(), request, answer, plan]() mutable {
          request.deadline = TimePoint::max();
          inner->Acquire(std::move(request), [answer, plan](Result<AcquireOutcome> r) {
            if (!plan.lose) (*answer)(std::move(r));
          });
        });
  }

  void Renew(std::vector<RenewRequest> batch, RenewCallback done) override {
    TimePoint deadline = TimePoint::max();
    for (const auto& r : batch) deadline = std::min(deadline, r.deadline);
    const Plan plan = MakePlan(deadline, false, false);
    auto answer = Once<std::vector<Result<RenewOutcome>>>(std::move(done));
    const size_t n = batch.size();
    Deliver(
        plan, deadline,
        [answer, n] {
          (*answer)(std::vector<Result<RenewOutcome>>(n, Result<RenewOutcome>(Timeout())));
        },
        [inner = inner(), batch, answer, plan]() mutable {
          for (auto& r : batch) r.deadline = TimePoint::max();
          inner->Renew(std::move(batch), [answer, plan](std::vector<Result<RenewOutcome>> r) {
            if (!plan.lose) (*answer)(std::move(r));
          });
        });
  }

  void Release(ReleaseRequest request, StatusCallback done) override {
    const Plan plan = MakePlan(request.deadline, false, true);
    auto answer = Once<Status>(std::move(done));
    if (plan.fail) {
      runtime()->RunAt(runtime()->clock().Now() + plan.land, [answer] {
        (*answer)(UnavailableError("faulty store: injected release failure"));
      });
      return;
    }
    Deliver(
        plan, request.deadline, [answer] { (*answer)(Timeout()); },
        [inner = inner(), request, answer, plan]() mutable {
          request.deadline = TimePoint::max();
          inner->Release(std::move(request), [answer, plan](Status s) {
            if (!plan.lose) (*answer)(std::move(s));
          });
        });
  }

  void Inspect(std::string name, TimePoint deadline, InspectCallback done) override {
    Duration delay{};
    const TimePoint now = runtime()->clock().Now();
    {
      std::lock_guard lock(mu_);
      if (Roll(faults_.read_late) && deadline > now) delay = Uniform(deadline - now);
      if (read_delay_ > Duration::zero()) delay = read_delay_;
    }
    // Read now, answered `delay` later (still within the deadline).
    inner()->Inspect(std::move(name), deadline,
                     [rt = runtime(), delay, done = std::move(done)](Result<LeaseRecord> r) {
                       if (delay == Duration::zero()) return done(std::move(r));
                       rt->RunAt(rt->clock().Now() + delay,
                                 [done, r = std::move(r)]() mutable { done(std::move(r)); });
                     });
  }

 private:
  struct Plan {
    Duration land{};    // after the call
    bool lose = false;  // no answer from the store: kDeadlineExceeded at the deadline
    bool late = false;  // answer when it lands, even past the deadline
    bool swallow = false;
    bool fail = false;
  };

  // A callback that runs at most once, shared by the paths that may answer.
  template <typename T>
  struct OnceFn {
    std::function<void(T)> fn;
    std::atomic<bool> used{false};
    void operator()(T v) {
      if (!used.exchange(true)) fn(std::move(v));
    }
  };
  template <typename T>
  static std::shared_ptr<OnceFn<T>> Once(std::function<void(T)> fn) {
    auto once = std::make_shared<OnceFn<T>>();
    once->fn = std::move(fn);
    return once;
  }
  static Status Timeout() {
    return DeadlineExceededError("faulty store: no answer by the deadline");
  }

  // Answers `on_timeout` at the deadline unless the answer comes late by
  // plan, and applies the request when it lands.
  void Deliver(const Plan& plan, TimePoint deadline, Task on_timeout, Task apply) {
    const TimePoint now = runtime()->clock().Now();
    if (!plan.late && deadline != TimePoint::max())
      runtime()->RunAt(deadline, std::move(on_timeout));
    if (plan.land == Duration::zero()) {
      apply();
    } else {
      runtime()->RunAt(now + plan.land, std::move(apply));
    }
  }

  Plan MakePlan(TimePoint deadline, bool may_swallow, bool may_fail) {
    std::lock_guard lock(mu_);
    Plan p;
    const TimePoint now = runtime()->clock().Now();
    const Duration bound = std::max(Duration::zero(), deadline - now) + request_timeout_;
    if (may_swallow && Roll(faults_.swallow)) {
      p.swallow = true;
      return p;
    }
    if (may_fail && Roll(faults_.release_fail)) {
      p.fail = true;
      p.land = Uniform(std::max(Duration::zero(), deadline - now));
      return p;
    }
    if (Roll(faults_.land_late)) p.land = Uniform(bound);
    if (Roll(faults_.lose_answer)) {
      p.lose = true;
    } else if (Roll(faults_.answer_late)) {
      p.late = true;
    }
    return p;
  }
  bool Roll(double p) { return p > 0 && std::uniform_real_distribution<double>(0, 1)(rng_) < p; }
  Duration Uniform(Duration max) {
    if (max <= Duration::zero()) return Duration::zero();
    return Duration(std::uniform_int_distribution<int64_t>(0, max.count())(rng_));
  }

  const Duration request_timeout_;
  std::mutex mu_;
  std::mt19937 rng_;
  Faults faults_;
  std::deque<Step> script_;
  Duration read_delay_{};
};

}  // namespace leasehold::testing

#endif  // LEASEHOLD_SRC_CONSUMERS_FAULTY_STORE_H_
