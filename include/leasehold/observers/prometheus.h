// leasehold::prometheus: a LeaseObserver (observer.h) that keeps Prometheus
// metrics, on prometheus-cpp (Debian's prometheus-cpp-dev 1.0). Link
// leasehold::prometheus; the core does not depend on it.
//
//   auto registry = std::make_shared<prometheus::Registry>();
//   auto metrics = std::make_shared<leasehold::PrometheusObserver>(registry);
//   auto lease = leasehold::Lease::Create(store, {..., .observer = metrics});
//   // serve registry->Collect() with prometheus::TextSerializer at /metrics
//
// The metrics (label `lease`: LeaseOptions::name):
//   leasehold_acquire_attempts_total{lease}           requests sent to the store
//   leasehold_acquires_total{lease,outcome}           acquire operations by outcome:
//                                                     acquired, contended, failed
//   leasehold_acquire_duration_seconds{lease}         histogram: operation start to outcome
//   leasehold_renewals_total{lease,outcome}           renewals answered: ok, failed
//   leasehold_renewal_duration_seconds{lease}         histogram: sent to answered
//   leasehold_deadline_remaining_seconds{lease}       time left to the safe deadline at
//                                                     the last renewal answer (alert when
//                                                     low: renewals are barely in time)
//   leasehold_losses_total{lease,reason}              lost tenures: expired, taken_over,
//                                                     deleted, unauthorized, backend_error
//   leasehold_releases_total{lease,outcome}           releases: confirmed, unconfirmed
//   leasehold_held{lease}                             tenures of this process now held
//                                                     (0 or 1)
//   leader_election_master_status{name}               the same, under client-go's name,
//                                                     so its dashboards and alerts work
// Base units (seconds), counters end in _total. Metrics of a lease exist
// from its Lease::Create on, at zero, so that rates and alerts see them.
//
// Thread-safety: as LeaseObserver requires; every event is a few atomic
// updates on metrics looked up once per lease (ForLease).
#ifndef LEASEHOLD_OBSERVERS_PROMETHEUS_H_
#define LEASEHOLD_OBSERVERS_PROMETHEUS_H_

#include <prometheus/registry.h>

#include <memory>
#include <string_view>

#include "leasehold/observer.h"

namespace leasehold {

class PrometheusObserver final : public LeaseObserver {
 public:
  // Registers the metric families in `registry` (kept alive by the observer).
  explicit PrometheusObserver(std::shared_ptr<prometheus::Registry> registry);
  ~PrometheusObserver() override;

  std::shared_ptr<LeaseObserver> ForLease(std::string_view lease) override;

  // Events of leases created without ForLease (none, when Lease::Create is
  // used): looked up by name each time.
  void AcquireAttempted(std::string_view lease) override;
  void AcquireFinished(std::string_view lease, AcquireOutcome outcome, Duration elapsed) override;
  void RenewalAnswered(std::string_view lease, bool ok, Duration latency,
                       Duration time_left) override;
  void Lost(std::string_view lease, LossReason reason) override;
  void Released(std::string_view lease, bool confirmed) override;
  void HeldChanged(std::string_view lease, bool held) override;

  struct Families;  // the metric families (prometheus.cc)

 private:
  std::shared_ptr<Families> families_;
};

}  // namespace leasehold

#endif  // LEASEHOLD_OBSERVERS_PROMETHEUS_H_
