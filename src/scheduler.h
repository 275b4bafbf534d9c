// The engine's per-store scheduler: wake-ups and renewal batching, with no
// thread and no runtime timer per lease. There is one per underlying store
// (Store::Underlying()), shared by every Lease of that store whatever
// decorators it is reached through; the store itself knows nothing of it.
//
// Wake-ups: a min-heap of (time, weak lease) entries -- 32 bytes each, no
// allocation per entry -- and one runtime timer armed at the earliest. A
// lease asks to be woken at its next due moment (renewal, or its deadline while
// a renewal is out); when woken it re-evaluates its own state, so an entry made
// stale by later events costs one harmless evaluation, never a wrong action.
//
// Batching: renewal times are rounded down onto a grid (lease.cc), so leases
// whose renewals fall due together are woken in one pass; each enqueues its
// request here and the flush -- posted after the whole pass -- hands each
// store object's batch to its Store::Renew() at once (requests that came
// through different decorators go to their own decorator). A store that can renew many leases in
// one request (etcd's session keepalive, one SQL transaction) turns N renewals into one round trip.
//
// Deadlines while a renewal is out: each batch has one watchdog timer at the
// earliest safe deadline among its leases, cancelled when the store answers.
// If the store is silent, the watchdog wakes every lease of the batch at its
// own deadline, in order -- so loss is on time without a wake-up per lease
// per renewal in the healthy case.
#ifndef LEASEHOLD_SRC_SCHEDULER_H_
#define LEASEHOLD_SRC_SCHEDULER_H_

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "leasehold/store.h"

namespace leasehold::detail {

// What the scheduler wakes: a lease, which re-evaluates its own state.
class Sleeper {
 public:
  // Called on the runtime loop once a wake-up asked for is due; may be called
  // more often than asked (an entry made stale by later events).
  virtual void OnWake() = 0;

 protected:
  ~Sleeper() = default;
};

class Scheduler : public std::enable_shared_from_this<Scheduler> {
 public:
  using Done = std::function<void(Result<RenewOutcome>)>;

  // The scheduler of the store `store` ultimately stores in, created on first
  // use; it lives as long as some lease holds it. Thread-safe.
  static std::shared_ptr<Scheduler> For(const Store& store);

  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Calls sleeper->OnWake() on the runtime loop once the clock reaches
  // `when` (unless the sleeper is gone by then).
  void WakeAt(TimePoint when, std::weak_ptr<Sleeper> sleeper);

  // Queues one renewal through `store` (a decorator of this scheduler's
  // store, or that store itself); `done` is called exactly once with its
  // result. Until then, `sleeper` is woken at `safe_deadline` if the store
  // has not answered by then.
  void Enqueue(const std::shared_ptr<Store>& store, RenewRequest request, Done done,
               std::weak_ptr<Sleeper> sleeper, TimePoint safe_deadline);

 private:
  struct Wake {
    TimePoint when;
    std::weak_ptr<Sleeper> sleeper;
  };
  // The renewals queued for one store object since the last flush.
  struct Batch {
    std::shared_ptr<Store> store{};
    std::vector<RenewRequest> requests{};
    std::vector<Done> dones{};
    std::vector<Wake> guards{};  // (safe deadline, lease) per request
  };
  struct Watchdog;

  Scheduler(const Store* key, std::shared_ptr<Runtime> runtime)
      : key_(key), runtime_(std::move(runtime)) {}
  static bool Later(const Wake& a, const Wake& b) { return a.when > b.when; }
  void ArmLocked(TimePoint when);
  void Fire();
  void FlushAll();
  void Flush(Batch batch);

  const Store* const key_;  // the underlying store, for the registry only
  const std::shared_ptr<Runtime> runtime_;

  std::mutex mu_;
  std::vector<Wake> heap_;  // min-heap on `when`
  TimerId armed_id_ = 0;
  TimePoint armed_at_ = TimePoint::max();

  std::mutex renew_mu_;
  std::vector<Batch> batches_;  // usually one: leases rarely use decorators
  bool flush_posted_ = false;
};

}  // namespace leasehold::detail

#endif  // LEASEHOLD_SRC_SCHEDULER_H_
