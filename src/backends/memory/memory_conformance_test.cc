// The conformance suite (tests/conformance/) instantiated for the memory store
// twice: on a SimulatedRuntime, where every timing assertion is exact and
// nothing sleeps, and on a real threaded runtime with a short TTL, where the
// engine's threads, timers and callbacks really run concurrently (this is the
// instantiation the ThreadSanitizer build learns the most from).
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "conformance/conformance.h"
#include "leasehold/backends/memory.h"
#include "leasehold/runtime.h"

namespace leasehold::conformance {
namespace {

using namespace std::chrono_literals;

class MemoryHarness final : public Harness {
 public:
  explicit MemoryHarness(bool simulated)
      : Harness(simulated), store_(MemoryStore::Create(runtime())) {}

  // The memory store is process-local: every "client" is the same store.
  std::shared_ptr<Store> NewClient() override { return store_; }

  // Simulated: exact, so a realistic TTL costs nothing. Real: short, with
  // slack for thread scheduling on a loaded (or sanitized) 2-core machine.
  Duration ttl() const override { return simulated() ? Duration(3s) : Duration(600ms); }
  Duration expiry_slack() const override { return simulated() ? Duration(1ms) : Duration(100ms); }
  Duration callback_slack() const override { return simulated() ? Duration(1ms) : Duration(100ms); }

  bool SetUnavailable(bool on) override {
    return Update([on](MemoryFaults& f) {
      f.acquire.unavailable = f.renew.unavailable = f.release.unavailable = on;
    });
  }
  bool SetHang(bool on) override {
    return Update([on](MemoryFaults& f) { f.acquire.hang = f.renew.hang = f.release.hang = on; });
  }
  bool FailNextRenewals(int n) override {
    return Update([n](MemoryFaults& f) { f.renew.fail_next = n; });
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
  bool Update(const std::function<void(MemoryFaults&)>& change) {
    MemoryFaults faults = store_->faults();
    change(faults);
    store_->SetFaults(faults);
    return true;
  }

  std::shared_ptr<MemoryStore> store_;
};

INSTANTIATE_TEST_SUITE_P(Memory, ConformanceTest,
                         ::testing::ValuesIn(OnBothClocks<MemoryHarness>("Memory")),
                         ConformanceParamName);

}  // namespace
}  // namespace leasehold::conformance
