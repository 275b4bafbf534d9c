// leasehold: the observer seam -- what a Lease tells metrics and logs.
//
// A LeaseObserver set in LeaseOptions::observer hears each lease's life:
// acquire attempts and their outcomes, renewals with their latency and the
// time left to the safe deadline, losses by reason, releases, and whether the
// lease is held. The core has no metrics dependency; adapters turn these calls
// into metrics (leasehold/observers/prometheus.h: leasehold::prometheus).
//
//   auto metrics = std::make_shared<leasehold::PrometheusObserver>(registry);
//   auto lease = leasehold::Lease::Create(store, {.name = "jobs", .owner = host,
//                                                 .ttl = 15s, .observer = metrics});
//
// What each call counts (scripted on the memory store in observer_test.cc):
//   * AcquireAttempted: each acquire request sent to the store -- one per
//     Acquire() that the store answers at once, more when it is retried
//     (contended attempts, errors, waiting acquires woken by a change).
//   * AcquireFinished: each acquire operation's outcome, once: acquired,
//     contended (a non-waiting acquire that found the lease held), or failed
//     (an error, a timeout, a cancellation). Concurrent Acquire() calls that
//     share one operation count once. Acquire() on a lease already held is
//     answered locally and counts as acquired, with no attempt.
//   * RenewalAnswered: each renewal the store answered (or the engine gave up
//     on): ok with the latency and the time left to the new safe deadline;
//     failed with the time left to the unchanged one (a transient failure is
//     retried while time remains; a definitive one also reports Lost).
//   * Lost: each lost tenure, once, with its reason (as OnLost handlers are).
//   * Released: each voluntary release of a held tenure: confirmed by the
//     store or not (the record is then left to expire).
//   * HeldChanged: true when a tenure begins, false when it ends (lost or
//     released). CheckAlive() is untouched: it turns false at the safe
//     deadline by itself, and HeldChanged(false) follows when the engine
//     notices (the deadline's wake-up, on time).
//
// Contract for implementations: the calls come from library threads (the
// caller's or the runtime's), possibly while the Lease's internal lock is
// held, and possibly at once from several threads. They must be cheap and
// thread-safe, must not block, throw, or call into any Lease (CheckAlive()
// excepted). Each call names the lease (LeaseOptions::name); the view is
// valid only during the call.
#ifndef LEASEHOLD_OBSERVER_H_
#define LEASEHOLD_OBSERVER_H_

#include <memory>
#include <string_view>

#include "leasehold/clock.h"
#include "leasehold/store.h"

namespace leasehold {

class LeaseObserver {
 public:
  enum class AcquireOutcome { kAcquired, kContended, kFailed };

  virtual ~LeaseObserver() = default;

  // Called once by Lease::Create: the observer of that lease's events, e.g.
  // one holding that lease's metrics so that no event looks them up. Null
  // (the default): this observer hears them itself.
  virtual std::shared_ptr<LeaseObserver> ForLease(std::string_view lease) {
    (void)lease;
    return nullptr;
  }

  virtual void AcquireAttempted(std::string_view lease) { (void)lease; }
  // `elapsed`: from the start of the operation to its outcome.
  virtual void AcquireFinished(std::string_view lease, AcquireOutcome outcome, Duration elapsed) {
    (void)lease, (void)outcome, (void)elapsed;
  }
  // `latency`: from sending the renewal to its answer. `time_left`: to the
  // safe deadline when the answer was taken (negative: past it).
  virtual void RenewalAnswered(std::string_view lease, bool ok, Duration latency,
                               Duration time_left) {
    (void)lease, (void)ok, (void)latency, (void)time_left;
  }
  virtual void Lost(std::string_view lease, LossReason reason) { (void)lease, (void)reason; }
  virtual void Released(std::string_view lease, bool confirmed) { (void)lease, (void)confirmed; }
  virtual void HeldChanged(std::string_view lease, bool held) { (void)lease, (void)held; }
};

// "acquired", "contended", "failed".
std::string_view AcquireOutcomeName(LeaseObserver::AcquireOutcome outcome) noexcept;

}  // namespace leasehold

#endif  // LEASEHOLD_OBSERVER_H_
