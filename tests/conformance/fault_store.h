// A Store decorator that injects network faults in front of any backend, so
// that every backend's conformance run covers the behaviours that need a store
// which stops answering, refuses connections or fails renewals (CONFORMANCE
// items 7, 13, 15-17, 51).
//
// All decorators made from one Faults object share it: a fault applies to every
// client of the harness, as a network partition would. Faults are checked in
// the order they are declared below: a hung request is never answered, even
// while renewals are set to fail or the store is unavailable.
//
// Thread-safety: as the wrapped store; the faults are atomics, changed from
// any thread at any time.
#ifndef LEASEHOLD_TESTS_CONFORMANCE_FAULT_STORE_H_
#define LEASEHOLD_TESTS_CONFORMANCE_FAULT_STORE_H_

#include <atomic>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "leasehold/forwarding_store.h"

namespace leasehold::conformance {

class FaultStore final : public ForwardingStore {
 public:
  struct Faults {
    // Acquire, renew and release requests vanish: never answered, never
    // delivered (a black-holed network).
    std::atomic<bool> hang{false};
    // The next N renewal batches fail with kUnavailable without reaching the
    // store.
    std::atomic<int> fail_next_renewals{0};
    // Acquire, renew, release and inspect fail fast with kUnavailable without
    // reaching the store, as a refused connection would.
    std::atomic<bool> unavailable{false};
  };

  FaultStore(std::shared_ptr<Store> inner, std::shared_ptr<Faults> faults)
      : ForwardingStore(std::move(inner)), faults_(std::move(faults)) {}

  void Acquire(AcquireRequest request, AcquireCallback done) override {
    if (faults_->hang) return;
    if (faults_->unavailable) return done(Refused());
    ForwardingStore::Acquire(std::move(request), std::move(done));
  }
  void Renew(std::vector<RenewRequest> batch, RenewCallback done) override {
    if (faults_->hang) return;
    if (faults_->fail_next_renewals.load() > 0) {
      --faults_->fail_next_renewals;
      return done(All(batch, UnavailableError(Describe() + ": injected fault")));
    }
    if (faults_->unavailable) return done(All(batch, Refused()));
    ForwardingStore::Renew(std::move(batch), std::move(done));
  }
  void Release(ReleaseRequest request, StatusCallback done) override {
    if (faults_->hang) return;
    if (faults_->unavailable) return done(Refused());
    ForwardingStore::Release(std::move(request), std::move(done));
  }
  void Inspect(std::string name, TimePoint deadline, InspectCallback done) override {
    if (faults_->unavailable) return done(Refused());
    ForwardingStore::Inspect(std::move(name), deadline, std::move(done));
  }

 private:
  Status Refused() const {
    return UnavailableError(Describe() + ": connection refused (injected)");
  }
  static std::vector<Result<RenewOutcome>> All(const std::vector<RenewRequest>& batch,
                                               const Status& status) {
    return std::vector<Result<RenewOutcome>>(batch.size(), Result<RenewOutcome>(status));
  }

  const std::shared_ptr<Faults> faults_;
};

}  // namespace leasehold::conformance

#endif  // LEASEHOLD_TESTS_CONFORMANCE_FAULT_STORE_H_
