// The conformance suite (tests/conformance/) instantiated for the memory store
// on a SimulatedRuntime: every timing assertion is exact and nothing sleeps.
#include <chrono>
#include <memory>
#include <string>

#include "conformance/conformance.h"
#include "leasehold/backends/memory.h"
#include "leasehold/runtime.h"

namespace leasehold::conformance {
namespace {

using namespace std::chrono_literals;

class MemoryHarness final : public Harness {
 public:
  MemoryHarness()
      : Harness(/*simulated=*/true),
        runtime_(SimulatedRuntime::Create()),
        store_(MemoryStore::Create(runtime_)) {}

  std::shared_ptr<Runtime> runtime() override { return runtime_; }

  // The memory store is process-local: every "client" is the same store.
  std::shared_ptr<Store> NewClient() override { return store_; }

  void Sleep(Duration d) override { runtime_->RunFor(d); }

  Duration ttl() const override { return 3s; }
  // Expiry is exact on the simulated clock and watchers are told at once.
  Duration expiry_slack() const override { return 1ms; }
  Duration callback_slack() const override { return 1ms; }

  bool SetUnavailable(bool on) override {
    MemoryFaults faults = store_->faults();
    faults.acquire.unavailable = on;
    faults.renew.unavailable = on;
    faults.release.unavailable = on;
    store_->SetFaults(faults);
    return true;
  }

  bool SetHang(bool on) override {
    MemoryFaults faults = store_->faults();
    faults.acquire.hang = on;
    faults.renew.hang = on;
    faults.release.hang = on;
    store_->SetFaults(faults);
    return true;
  }

  bool FailNextRenewals(int n) override {
    MemoryFaults faults = store_->faults();
    faults.renew.fail_next = n;
    store_->SetFaults(faults);
    return true;
  }

  bool ForeignTakeOver(const std::string& name, const std::string& holder) override {
    store_->TakeOver(name, holder, ttl());
    return true;
  }

  bool ForeignDelete(const std::string& name) override {
    store_->Delete(name);
    return true;
  }

 private:
  std::shared_ptr<SimulatedRuntime> runtime_;
  std::shared_ptr<MemoryStore> store_;
};

INSTANTIATE_TEST_SUITE_P(Memory, ConformanceTest,
                         ::testing::Values(ConformanceParam{
                             "Memory", [] { return std::make_unique<MemoryHarness>(); }}),
                         ConformanceParamName);

}  // namespace
}  // namespace leasehold::conformance
