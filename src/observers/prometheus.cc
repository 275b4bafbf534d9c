#include "leasehold/observers/prometheus.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <array>
#include <chrono>
#include <map>
#include <mutex>
#include <string>

namespace leasehold {
namespace {

using prometheus::Counter;
using prometheus::Gauge;
using prometheus::Histogram;

double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

constexpr std::array<LossReason, 5> kReasons = {LossReason::kExpired, LossReason::kTakenOver,
                                                LossReason::kDeleted, LossReason::kUnauthorized,
                                                LossReason::kBackendError};

// Label values are identifiers: "taken_over", not "taken over".
std::string ReasonLabel(LossReason reason) {
  std::string s(LossReasonName(reason));
  for (char& c : s) {
    if (c == ' ') c = '_';
  }
  return s;
}

}  // namespace

struct PrometheusObserver::Families {
  explicit Families(std::shared_ptr<prometheus::Registry> r)
      : registry(std::move(r)),
        attempts(prometheus::BuildCounter()
                     .Name("leasehold_acquire_attempts_total")
                     .Help("Acquire requests sent to the store")
                     .Register(*registry)),
        acquires(prometheus::BuildCounter()
                     .Name("leasehold_acquires_total")
                     .Help("Acquire operations by outcome (acquired, contended, failed)")
                     .Register(*registry)),
        acquire_duration(prometheus::BuildHistogram()
                             .Name("leasehold_acquire_duration_seconds")
                             .Help("From the start of an acquire operation to its outcome")
                             .Register(*registry)),
        renewals(prometheus::BuildCounter()
                     .Name("leasehold_renewals_total")
                     .Help("Renewals answered by outcome (ok, failed)")
                     .Register(*registry)),
        renewal_duration(prometheus::BuildHistogram()
                             .Name("leasehold_renewal_duration_seconds")
                             .Help("From sending a renewal to its answer")
                             .Register(*registry)),
        remaining(prometheus::BuildGauge()
                      .Name("leasehold_deadline_remaining_seconds")
                      .Help("Time left to the safe deadline at the last renewal answer")
                      .Register(*registry)),
        losses(prometheus::BuildCounter()
                   .Name("leasehold_losses_total")
                   .Help("Tenures lost, by reason")
                   .Register(*registry)),
        releases(prometheus::BuildCounter()
                     .Name("leasehold_releases_total")
                     .Help("Voluntary releases by outcome (confirmed, unconfirmed)")
                     .Register(*registry)),
        held(prometheus::BuildGauge()
                 .Name("leasehold_held")
                 .Help("Tenures of this process now held")
                 .Register(*registry)),
        master(prometheus::BuildGauge()
                   .Name("leader_election_master_status")
                   .Help("1 while this process holds the lease (client-go's name)")
                   .Register(*registry)) {}

  const std::shared_ptr<prometheus::Registry> registry;
  prometheus::Family<Counter>& attempts;
  prometheus::Family<Counter>& acquires;
  prometheus::Family<Histogram>& acquire_duration;
  prometheus::Family<Counter>& renewals;
  prometheus::Family<Histogram>& renewal_duration;
  prometheus::Family<Gauge>& remaining;
  prometheus::Family<Counter>& losses;
  prometheus::Family<Counter>& releases;
  prometheus::Family<Gauge>& held;
  prometheus::Family<Gauge>& master;

  std::mutex mu;
  std::map<std::string, std::shared_ptr<LeaseObserver>, std::less<>> by_lease;
};

namespace {

// One lease's metrics, looked up once.
class LeaseMetrics final : public LeaseObserver {
 public:
  LeaseMetrics(PrometheusObserver::Families& f_, std::string_view lease) : registry_(f_.registry) {
    const std::string name(lease);
    attempts_ = &f_.attempts.Add({{"lease", name}});
    acquires_ = {&f_.acquires.Add({{"lease", name}, {"outcome", "acquired"}}),
                 &f_.acquires.Add({{"lease", name}, {"outcome", "contended"}}),
                 &f_.acquires.Add({{"lease", name}, {"outcome", "failed"}})};
    acquire_duration_ = &f_.acquire_duration.Add(
        {{"lease", name}},
        Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300});
    renewed_ = &f_.renewals.Add({{"lease", name}, {"outcome", "ok"}});
    renewal_failed_ = &f_.renewals.Add({{"lease", name}, {"outcome", "failed"}});
    renewal_duration_ = &f_.renewal_duration.Add(
        {{"lease", name}}, Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                       0.05, 0.1, 0.25, 0.5, 1, 2.5, 5});
    remaining_ = &f_.remaining.Add({{"lease", name}});
    for (size_t i = 0; i < kReasons.size(); ++i) {
      losses_[i] = &f_.losses.Add({{"lease", name}, {"reason", ReasonLabel(kReasons[i])}});
    }
    confirmed_ = &f_.releases.Add({{"lease", name}, {"outcome", "confirmed"}});
    unconfirmed_ = &f_.releases.Add({{"lease", name}, {"outcome", "unconfirmed"}});
    held_ = &f_.held.Add({{"lease", name}});
    master_ = &f_.master.Add({{"name", name}});
  }

  void AcquireAttempted(std::string_view) override { attempts_->Increment(); }
  void AcquireFinished(std::string_view, AcquireOutcome outcome, Duration elapsed) override {
    acquires_[static_cast<size_t>(outcome)]->Increment();
    acquire_duration_->Observe(Seconds(elapsed));
  }
  void RenewalAnswered(std::string_view, bool ok, Duration latency, Duration time_left) override {
    (ok ? renewed_ : renewal_failed_)->Increment();
    renewal_duration_->Observe(Seconds(latency));
    remaining_->Set(Seconds(time_left));
  }
  void Lost(std::string_view, LossReason reason) override {
    for (size_t i = 0; i < kReasons.size(); ++i) {
      if (kReasons[i] == reason) losses_[i]->Increment();
    }
  }
  void Released(std::string_view, bool confirmed) override {
    (confirmed ? confirmed_ : unconfirmed_)->Increment();
  }
  void HeldChanged(std::string_view, bool held) override {
    // Leases of one name in one process add up (at most one holds).
    if (held) {
      held_->Increment();
      master_->Increment();
    } else {
      held_->Decrement();
      master_->Decrement();
    }
  }

 private:
  // Owns the metrics below (a Lease may outlive the PrometheusObserver).
  const std::shared_ptr<prometheus::Registry> registry_;
  Counter* attempts_;
  std::array<Counter*, 3> acquires_;  // by AcquireOutcome
  Histogram* acquire_duration_;
  Counter *renewed_, *renewal_failed_;
  Histogram* renewal_duration_;
  Gauge* remaining_;
  std::array<Counter*, kReasons.size()> losses_;
  Counter *confirmed_, *unconfirmed_;
  Gauge *held_, *master_;
};

}  // namespace

PrometheusObserver::PrometheusObserver(std::shared_ptr<prometheus::Registry> registry)
    : families_(std::make_shared<Families>(std::move(registry))) {}

PrometheusObserver::~PrometheusObserver() = default;

std::shared_ptr<LeaseObserver> PrometheusObserver::ForLease(std::string_view lease) {
  std::lock_guard lock(families_->mu);
  auto it = families_->by_lease.find(lease);
  if (it == families_->by_lease.end()) {
    it = families_->by_lease
             .emplace(std::string(lease), std::make_shared<LeaseMetrics>(*families_, lease))
             .first;
  }
  return it->second;
}

void PrometheusObserver::AcquireAttempted(std::string_view lease) {
  ForLease(lease)->AcquireAttempted(lease);
}
void PrometheusObserver::AcquireFinished(std::string_view lease, AcquireOutcome outcome,
                                         Duration elapsed) {
  ForLease(lease)->AcquireFinished(lease, outcome, elapsed);
}
void PrometheusObserver::RenewalAnswered(std::string_view lease, bool ok, Duration latency,
                                         Duration time_left) {
  ForLease(lease)->RenewalAnswered(lease, ok, latency, time_left);
}
void PrometheusObserver::Lost(std::string_view lease, LossReason reason) {
  ForLease(lease)->Lost(lease, reason);
}
void PrometheusObserver::Released(std::string_view lease, bool confirmed) {
  ForLease(lease)->Released(lease, confirmed);
}
void PrometheusObserver::HeldChanged(std::string_view lease, bool held) {
  ForLease(lease)->HeldChanged(lease, held);
}

}  // namespace leasehold
