// DecoratedHarness: a conformance Harness whose clients reach the backend
// through one shared FaultStore (fault_store.h), so that the fault hooks every
// backend needs the same way are written once:
//   SetHang           requests vanish on the way (black hole);
//   FailNextRenewals  the next renewal batches fail on the way;
//   SetUnavailable    requests are refused fast on the way. A backend that
//                     can make itself unavailable for real (a locked
//                     database, a suspended server) overrides it.
// A backend's harness passes every client it makes through Decorate() and
// keeps only what is its own: how to connect, its timings, and the foreign
// writer (ForeignTakeOver, ForeignDelete).
//
// Thread-safety: the hooks may be called from the test's thread while the
// clients run on the runtime's threads (the faults are atomics).
#ifndef LEASEHOLD_TESTS_CONFORMANCE_DECORATED_HARNESS_H_
#define LEASEHOLD_TESTS_CONFORMANCE_DECORATED_HARNESS_H_

#include <memory>
#include <utility>

#include "conformance/conformance.h"
#include "conformance/fault_store.h"
#include "leasehold/store.h"

namespace leasehold::conformance {

class DecoratedHarness : public Harness {
 public:
  bool SetUnavailable(bool on) override {
    faults_->unavailable = on;
    return true;
  }
  bool SetHang(bool on) final {
    faults_->hang = on;
    return true;
  }
  bool FailNextRenewals(int n) final {
    faults_->fail_next_renewals = n;
    return true;
  }

 protected:
  using Harness::Harness;

  // `client` behind the harness's faults, as NewClient() should return it.
  std::shared_ptr<Store> Decorate(std::shared_ptr<Store> client) const {
    return std::make_shared<FaultStore>(std::move(client), faults_);
  }

 private:
  const std::shared_ptr<FaultStore::Faults> faults_ = std::make_shared<FaultStore::Faults>();
};

}  // namespace leasehold::conformance

#endif  // LEASEHOLD_TESTS_CONFORMANCE_DECORATED_HARNESS_H_
