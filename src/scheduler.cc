#include "scheduler.h"

#include <algorithm>
#include <string>
#include <unordered_map>

namespace leasehold::detail {
namespace {

// Underlying store -> its scheduler. An entry's store outlives the scheduler:
// every lease holding the scheduler holds a store that holds (or is) it.
struct Registry {
  std::mutex mu;
  std::unordered_map<const Store*, std::weak_ptr<Scheduler>> map;
};

Registry& TheRegistry() {
  static auto* registry = new Registry;  // never destroyed: leases may outlive main()
  return *registry;
}

}  // namespace

std::shared_ptr<Scheduler> Scheduler::For(const Store& store) {
  const Store& underlying = store.Underlying();
  Registry& registry = TheRegistry();
  std::lock_guard lock(registry.mu);
  std::weak_ptr<Scheduler>& slot = registry.map[&underlying];
  std::shared_ptr<Scheduler> scheduler = slot.lock();
  if (!scheduler) {
    scheduler.reset(new Scheduler(&underlying, underlying.runtime()));
    slot = scheduler;
  }
  return scheduler;
}

Scheduler::~Scheduler() {
  if (armed_id_) runtime_->CancelTimer(armed_id_);
  Registry& registry = TheRegistry();
  std::lock_guard lock(registry.mu);
  // A successor may already be registered for the same store: leave it.
  auto it = registry.map.find(key_);
  if (it != registry.map.end() && it->second.expired()) registry.map.erase(it);
}

void Scheduler::WakeAt(TimePoint when, std::weak_ptr<Sleeper> sleeper) {
  std::lock_guard lock(mu_);
  heap_.push_back({when, std::move(sleeper)});
  std::push_heap(heap_.begin(), heap_.end(), Later);
  if (when < armed_at_) ArmLocked(when);
}

void Scheduler::ArmLocked(TimePoint when) {
  // Lock order: scheduler, then runtime (the runtime never calls back into
  // us while holding its own lock).
  if (armed_id_) runtime_->CancelTimer(armed_id_);
  armed_at_ = when;
  armed_id_ = runtime_->RunAt(when, [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->Fire();
  });
}

void Scheduler::Fire() {
  std::vector<std::weak_ptr<Sleeper>> due;
  {
    std::lock_guard lock(mu_);
    armed_id_ = 0;
    armed_at_ = TimePoint::max();
    const TimePoint now = runtime_->clock().Now();
    while (!heap_.empty() && heap_.front().when <= now) {
      std::pop_heap(heap_.begin(), heap_.end(), Later);
      due.push_back(std::move(heap_.back().sleeper));
      heap_.pop_back();
    }
    if (!heap_.empty()) ArmLocked(heap_.front().when);
  }
  for (auto& weak : due) {
    if (auto sleeper = weak.lock()) sleeper->OnWake();
  }
}

void Scheduler::Enqueue(const std::shared_ptr<Store>& store, RenewRequest request, Done done,
                        std::weak_ptr<Sleeper> sleeper, TimePoint safe_deadline) {
  bool post = false;
  {
    std::lock_guard lock(renew_mu_);
    auto it = std::find_if(batches_.begin(), batches_.end(),
                           [&](const Batch& b) { return b.store == store; });
    if (it == batches_.end()) it = batches_.insert(batches_.end(), Batch{.store = store});
    it->requests.push_back(std::move(request));
    it->dones.push_back(std::move(done));
    it->guards.push_back({safe_deadline, std::move(sleeper)});
    post = !std::exchange(flush_posted_, true);
  }
  // The task owns the scheduler (and through the batches the stores) until it
  // has handed every batch over.
  if (post) runtime_->Post([self = shared_from_this()] { self->FlushAll(); });
}

// Wakes the leases of one batch at their deadlines while the store is silent.
struct Scheduler::Watchdog {
  std::mutex mu;
  std::vector<Wake> guards;  // sorted by deadline
  size_t next = 0;
  TimerId timer = 0;
  bool answered = false;

  static void Arm(const std::shared_ptr<Watchdog>& w, const std::shared_ptr<Runtime>& runtime) {
    // REQUIRES: w->mu held.
    if (w->answered || w->next == w->guards.size()) return;
    // The timer owns the watchdog: a store that never answers drops its
    // callback (and the callback's reference) but must not silence this.
    // It holds the runtime weakly: the runtime owns the timer.
    w->timer = runtime->RunAt(w->guards[w->next].when, [w, weak = std::weak_ptr<Runtime>(runtime)] {
      if (auto rt = weak.lock()) Fire(w, rt);
    });
  }
  static void Fire(const std::shared_ptr<Watchdog>& w, const std::shared_ptr<Runtime>& runtime) {
    std::vector<std::weak_ptr<Sleeper>> due;
    {
      std::lock_guard lock(w->mu);
      w->timer = 0;
      if (w->answered) return;
      const TimePoint now = runtime->clock().Now();
      while (w->next < w->guards.size() && w->guards[w->next].when <= now) {
        due.push_back(std::move(w->guards[w->next++].sleeper));
      }
      Arm(w, runtime);
    }
    for (auto& weak : due) {
      if (auto sleeper = weak.lock()) sleeper->OnWake();
    }
  }
};

void Scheduler::FlushAll() {
  std::vector<Batch> batches;
  {
    std::lock_guard lock(renew_mu_);
    batches.swap(batches_);
    flush_posted_ = false;
  }
  for (Batch& batch : batches) Flush(std::move(batch));
}

void Scheduler::Flush(Batch batch) {
  auto watchdog = std::make_shared<Watchdog>();
  watchdog->guards = std::move(batch.guards);
  std::vector<RenewRequest> requests = std::move(batch.requests);
  std::vector<Done> dones = std::move(batch.dones);
  const std::shared_ptr<Store>& store = batch.store;
  std::sort(watchdog->guards.begin(), watchdog->guards.end(),
            [](const Wake& a, const Wake& b) { return a.when < b.when; });
  {
    std::lock_guard lock(watchdog->mu);
    Watchdog::Arm(watchdog, runtime_);
  }
  const size_t n = requests.size();
  store->Renew(
      std::move(requests), [dones = std::move(dones), n, what = store->Describe(), watchdog,
                            runtime = runtime_](std::vector<Result<RenewOutcome>> results) {
        TimerId timer;
        {
          std::lock_guard lock(watchdog->mu);
          watchdog->answered = true;
          timer = std::exchange(watchdog->timer, 0);
        }
        if (timer) runtime->CancelTimer(timer);
        if (results.size() != n) {
          Status bad = InternalError(what + ": answered " + std::to_string(results.size()) +
                                     " results to a batch of " + std::to_string(n) + " renewals");
          for (const auto& done : dones) done(bad);
          return;
        }
        for (size_t i = 0; i < n; ++i) dones[i](std::move(results[i]));
      });
}

}  // namespace leasehold::detail
