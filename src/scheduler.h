// The per-store scheduler every Lease of that store shares: wake-ups and
// renewal batching, with no thread and no runtime timer per lease.
//
// Wake-ups: a min-heap of (time, weak lease) entries -- 32 bytes each, no
// allocation per entry -- and one runtime timer armed at the earliest. A
// lease asks to be woken at its next due moment (renewal, or its deadline while
// a renewal is out); when woken it re-evaluates its own state, so an entry made
// stale by later events costs one harmless evaluation, never a wrong action.
//
// Batching: renewal times are rounded down onto a grid (lease.cc), so leases
// whose renewals fall due together are woken in one pass; each enqueues its
// request here and the flush -- posted after the whole pass -- hands the batch
// to Store::Renew() at once. A store that can renew many leases in one request
// (etcd's session keepalive, one SQL transaction) turns N renewals into one
// round trip.
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

class LeaseCore;

class Scheduler : public std::enable_shared_from_this<Scheduler> {
 public:
  using Done = std::function<void(Result<RenewOutcome>)>;

  explicit Scheduler(std::shared_ptr<Runtime> runtime) : runtime_(std::move(runtime)) {}
  ~Scheduler();

  // Calls core->OnWake() on the runtime loop once the clock reaches `when`
  // (unless the core is gone by then).
  void WakeAt(TimePoint when, std::weak_ptr<LeaseCore> core);

  // Queues one renewal of `store` (whose scheduler this is); `done` is called
  // exactly once with its result. Until then, `core` is woken at
  // `safe_deadline` if the store has not answered by then.
  void Enqueue(const std::shared_ptr<Store>& store, RenewRequest request, Done done,
               std::weak_ptr<LeaseCore> core, TimePoint safe_deadline);

 private:
  struct Wake {
    TimePoint when;
    std::weak_ptr<LeaseCore> core;
  };
  static bool Later(const Wake& a, const Wake& b) { return a.when > b.when; }
  void ArmLocked(TimePoint when);
  void Fire();
  void Flush(const std::shared_ptr<Store>& store);
  struct Watchdog;

  const std::shared_ptr<Runtime> runtime_;

  std::mutex mu_;
  std::vector<Wake> heap_;  // min-heap on `when`
  TimerId armed_id_ = 0;
  TimePoint armed_at_ = TimePoint::max();

  std::mutex renew_mu_;
  std::vector<RenewRequest> requests_;
  std::vector<Done> dones_;
  std::vector<Wake> guards_;  // (safe deadline, lease) per queued request
  bool flush_posted_ = false;
};

}  // namespace leasehold::detail

#endif  // LEASEHOLD_SRC_SCHEDULER_H_
