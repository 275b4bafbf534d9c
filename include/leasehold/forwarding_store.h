// leasehold: a Store that forwards every operation to another Store.
//
// The base for decorators -- fault injection in tests, metrics, logging --
// which override only what they change (leveldb's EnvWrapper pattern).
// Everything else, including operations added to Store later, reaches the
// wrapped store unchanged.
//
// Thread-safety: as the wrapped store; the forwarding itself keeps no state.
#ifndef LEASEHOLD_FORWARDING_STORE_H_
#define LEASEHOLD_FORWARDING_STORE_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "leasehold/store.h"

namespace leasehold {

class ForwardingStore : public Store {
 public:
  // REQUIRES: inner != nullptr. Runs on the wrapped store's runtime.
  explicit ForwardingStore(std::shared_ptr<Store> inner)
      : Store(inner->runtime()), inner_(std::move(inner)) {}

  const std::shared_ptr<Store>& inner() const noexcept { return inner_; }

  std::string Describe() const override { return inner_->Describe(); }
  StoreCapabilities capabilities() const override { return inner_->capabilities(); }
  Status ValidateName(std::string_view name) const override { return inner_->ValidateName(name); }
  void Acquire(AcquireRequest request, AcquireCallback done) override {
    inner_->Acquire(std::move(request), std::move(done));
  }
  void Renew(std::vector<RenewRequest> batch, RenewCallback done) override {
    inner_->Renew(std::move(batch), std::move(done));
  }
  void Release(ReleaseRequest request, StatusCallback done) override {
    inner_->Release(std::move(request), std::move(done));
  }
  void Inspect(std::string name, TimePoint deadline, InspectCallback done) override {
    inner_->Inspect(std::move(name), deadline, std::move(done));
  }
  void Break(std::string name, TimePoint deadline, StatusCallback done) override {
    inner_->Break(std::move(name), deadline, std::move(done));
  }
  void List(std::string prefix, TimePoint deadline, ListCallback done) override {
    inner_->List(std::move(prefix), deadline, std::move(done));
  }
  WatchId Watch(const std::string& name, const std::string& version, Task on_change) override {
    return inner_->Watch(name, version, std::move(on_change));
  }
  void CancelWatch(WatchId id) noexcept override { inner_->CancelWatch(id); }
  const Store& Underlying() const noexcept override { return inner_->Underlying(); }

 private:
  const std::shared_ptr<Store> inner_;
};

}  // namespace leasehold

#endif  // LEASEHOLD_FORWARDING_STORE_H_
