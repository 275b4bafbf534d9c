// The conformance suite: the behaviours every leasehold backend must prove
// (docs/conformance.md items 1-32 and 51-53 as they apply to a backend).
//
// A backend instantiates the suite with a factory for its Harness:
//
//   INSTANTIATE_TEST_SUITE_P(Memory, ConformanceTest,
//       ::testing::Values(ConformanceParam{"memory", &MakeMemoryHarness}),
//       ConformanceParamName);
//
// (or ::testing::ValuesIn(OnBothClocks<MemoryHarness>("Memory")) for a
// harness that runs on the simulated clock and on the real one).
//
// Each test gets a fresh Harness (a fresh store namespace), so tests never see
// each other's records. Timing assertions are written against the harness's
// clock and Sleep(): under a simulated runtime they are exact and never sleep;
// against a real server they run in real time with the backend's slack.
#ifndef LEASEHOLD_TESTS_CONFORMANCE_CONFORMANCE_H_
#define LEASEHOLD_TESTS_CONFORMANCE_CONFORMANCE_H_

#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "leasehold/lease.h"
#include "leasehold/runtime.h"
#include "leasehold/store.h"

namespace leasehold::conformance {

class Harness {
 public:
  // Waits (bounded) for the runtime's last tasks to let go of it and joins
  // its threads, so that none is still running when the test process exits.
  virtual ~Harness();

  // The runtime the harness's stores run on: a SimulatedRuntime when
  // simulated, else a real threaded runtime of the harness's own.
  const std::shared_ptr<Runtime>& runtime() const { return runtime_; }
  bool simulated() const { return simulated_runtime_ != nullptr; }

  // A new client of the same underlying store, as another process would have
  // (same records, its own connection). Fails the test if it cannot connect.
  virtual std::shared_ptr<Store> NewClient() = 0;

  // Lets `d` of time pass on the harness clock (simulated: runs the simulation;
  // real: sleeps).
  void Sleep(Duration d);

  // A TTL suitable for this backend's tests (short, but well above the
  // backend's expiry granularity), and how late after a TTL the backend may let
  // another holder in (expiry granularity + one round trip).
  virtual Duration ttl() const = 0;
  virtual Duration expiry_slack() const = 0;
  // How late after a deadline an OnLost callback may arrive (scheduling slack).
  virtual Duration callback_slack() const = 0;
  // How many leases ManyLeasesAreHeldAtOnce holds on one client: 200, unless
  // the test's own server cannot serve that many at the harness's TTL (the
  // harness says why).
  virtual int many_leases() const { return 200; }

  // Fault control. Each returns false if the backend cannot do it (the test
  // that needs it then says so and is skipped for that backend only).
  //   Unavailable: every request fails fast (connection refused / kUnavailable).
  virtual bool SetUnavailable(bool on) = 0;
  //   Hang: requests are never answered (black hole); stores must still honour
  //   their deadlines where they can, the engine must not depend on it.
  virtual bool SetHang(bool on) = 0;
  //   Fail the next `n` renewals transiently.
  virtual bool FailNextRenewals(int n) = 0;
  //   A foreign writer takes the lease over / deletes the record.
  virtual bool ForeignTakeOver(const std::string& name, const std::string& holder) = 0;
  virtual bool ForeignDelete(const std::string& name) = 0;

 protected:
  explicit Harness(bool simulated)
      : simulated_runtime_(simulated ? SimulatedRuntime::Create() : nullptr),
        runtime_(simulated ? std::shared_ptr<Runtime>(simulated_runtime_) : Runtime::Create()) {}

 private:
  std::shared_ptr<SimulatedRuntime> simulated_runtime_;
  std::shared_ptr<Runtime> runtime_;
};

struct ConformanceParam {
  std::string name;
  std::function<std::unique_ptr<Harness>()> make;
};

// Lets gtest print a parameter as its backend name (not as raw bytes).
inline void PrintTo(const ConformanceParam& param, std::ostream* os) { *os << param.name; }

inline std::string ConformanceParamName(const ::testing::TestParamInfo<ConformanceParam>& info) {
  return info.param.name;
}

// The two instantiations of a harness built as `Harness(bool simulated)`: on
// the simulated clock, named `name`, and on real threads and the real clock,
// named `name` + "RealTime".
template <typename H>
std::vector<ConformanceParam> OnBothClocks(const std::string& name) {
  return {ConformanceParam{name, [] { return std::make_unique<H>(true); }},
          ConformanceParam{name + "RealTime", [] { return std::make_unique<H>(false); }}};
}

class ConformanceTest : public ::testing::TestWithParam<ConformanceParam> {
 protected:
  void SetUp() override;
  void TearDown() override;

  Harness& harness() { return *harness_; }
  // A Lease on a new client of the harness's store, with the harness's TTL
  // unless `options` set one. The name is prefixed with name_prefix_ (so pass
  // the same short name to get contenders for one lease; Lease::name() is the
  // full name). Fails the test, and throws to end it, on invalid options.
  // With `store`, the Lease shares that client, as the leases of one process do.
  std::unique_ptr<Lease> MakeLease(LeaseOptions options, std::shared_ptr<Store> store = nullptr);
  std::unique_ptr<Lease> MakeLease(const std::string& name, const std::string& owner);
  TimePoint Now() { return harness_->runtime()->clock().Now(); }

  std::unique_ptr<Harness> harness_;
  std::string name_prefix_;  // unique per test, for lease names
};

}  // namespace leasehold::conformance

#endif  // LEASEHOLD_TESTS_CONFORMANCE_CONFORMANCE_H_
