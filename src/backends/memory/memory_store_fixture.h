// The fixture of the memory store's tests (memory_store_test.cc,
// memory_lease_test.cc): one MemoryStore on a SimulatedRuntime, with helpers
// for direct store calls, faults and leases.
#ifndef LEASEHOLD_SRC_BACKENDS_MEMORY_MEMORY_STORE_FIXTURE_H_
#define LEASEHOLD_SRC_BACKENDS_MEMORY_MEMORY_STORE_FIXTURE_H_

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "leasehold/backends/memory.h"
#include "leasehold/future.h"
#include "leasehold/lease.h"
#include "leasehold/runtime.h"
#include "leasehold/status.h"
#include "leasehold/store.h"

namespace leasehold::memory_test {

using namespace std::chrono_literals;

class MemoryStoreTest : public ::testing::Test {
 protected:
  // Lets operations still in flight (injected latency) land, so that no task
  // pending in the simulation keeps the runtime, store and leases alive.
  void TearDown() override {
    store_->SetFaults({});
    runtime_->RunFor(10s);
  }

  TimePoint Now() const { return runtime_->clock().Now(); }

  // Store operations that complete, driving the simulation.
  Result<AcquireOutcome> Acquire(const std::string& name, const std::string& holder,
                                 Duration ttl = 3s, Duration timeout = 1s) {
    Promise<Result<AcquireOutcome>> done(runtime_);
    store_->Acquire({name, holder, ttl, Now() + timeout},
                    [done](Result<AcquireOutcome> r) mutable { done.Set(std::move(r)); });
    return done.future().Wait();
  }

  // The token of a granted acquire; fails the test otherwise.
  FencingToken Won(const Result<AcquireOutcome>& r) {
    if (!r.ok()) {
      ADD_FAILURE() << "acquire failed: " << r.status().ToString();
      return {};
    }
    if (!std::holds_alternative<Acquired>(*r)) {
      ADD_FAILURE() << "acquire contended by \"" << std::get<Contended>(*r).holder << "\"";
      return {};
    }
    return std::get<Acquired>(*r).token;
  }

  std::vector<Result<RenewOutcome>> Renew(std::vector<RenewRequest> batch) {
    Promise<std::vector<Result<RenewOutcome>>> done(runtime_);
    store_->Renew(std::move(batch),
                  [done](std::vector<Result<RenewOutcome>> r) mutable { done.Set(std::move(r)); });
    return done.future().Wait();
  }

  Result<RenewOutcome> RenewOne(const std::string& name, const std::string& holder,
                                const FencingToken& token, Duration ttl = 3s) {
    auto results = Renew({{name, holder, token, ttl, Now() + 1s}});
    if (results.size() != 1) return InternalError("expected one result");
    return std::move(results[0]);
  }

  Status Release(const std::string& name, const std::string& holder, const FencingToken& token) {
    Promise<Status> done(runtime_);
    store_->Release({name, holder, token, Now() + 1s},
                    [done](Status s) mutable { done.Set(std::move(s)); });
    return done.future().Wait();
  }

  Result<LeaseRecord> Inspect(const std::string& name) {
    Promise<Result<LeaseRecord>> done(runtime_);
    store_->Inspect(name, Now() + 1s,
                    [done](Result<LeaseRecord> r) mutable { done.Set(std::move(r)); });
    return done.future().Wait();
  }

  // The holder the store names for `name`, or "" when free or absent.
  std::string HolderOf(const std::string& name) {
    auto record = Inspect(name);
    return record.ok() ? record->holder : "";
  }

  void SetFaults(const std::function<void(MemoryFaults&)>& edit) {
    MemoryFaults f = store_->faults();
    edit(f);
    store_->SetFaults(f);
  }

  std::unique_ptr<Lease> MakeLease(LeaseOptions options, std::shared_ptr<Store> store = nullptr) {
    if (options.ttl == Duration::zero()) options.ttl = 3s;
    auto lease = Lease::Create(store ? store : store_, options);
    if (!lease.ok()) {
      ADD_FAILURE() << lease.status().ToString();
      throw std::runtime_error(lease.status().ToString());
    }
    return std::move(lease).value();
  }

  std::shared_ptr<SimulatedRuntime> runtime_ = SimulatedRuntime::Create();
  std::shared_ptr<MemoryStore> store_ = MemoryStore::Create(runtime_);
};

}  // namespace leasehold::memory_test

#endif  // LEASEHOLD_SRC_BACKENDS_MEMORY_MEMORY_STORE_FIXTURE_H_
