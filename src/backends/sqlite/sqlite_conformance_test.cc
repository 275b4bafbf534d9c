// The conformance suite instantiated for the SQLite store: each NewClient() is
// a store object with its own connection to the same database file, as another
// process would have, behind a FaultStore for the network-like faults
// (DecoratedHarness). On a SimulatedRuntime the store's expiry clock is the
// fake clock; on the real runtime it is CLOCK_BOOTTIME.
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "conformance/conformance.h"
#include "conformance/decorated_harness.h"
#include "leasehold/backends/sqlite.h"
#include "sqlite_test_util.h"
#include "testing/sanitizers.h"

namespace leasehold::conformance {
namespace {

using namespace std::chrono_literals;

class SqliteHarness final : public DecoratedHarness {
 public:
  explicit SqliteHarness(bool simulated) : DecoratedHarness(simulated) {}

  ~SqliteHarness() override {
    blocker_.reset();
    clients_.clear();
  }

  std::shared_ptr<Store> NewClient() override {
    // Short busy timeouts so that "unavailable" (the database locked by
    // someone else) fails fast: very short when simulated (nothing else
    // contends, and the fake clock does not move while SQLite waits), longer
    // in real time, where many clients really contend for the write lock on a
    // loaded (or sanitized) machine. Production defaults to 5 s.
    auto store = SqliteStore::Open(
        {.path = dir_.db(), .busy_timeout = simulated() ? Duration(20ms) : Duration(250ms)},
        runtime());
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok()) return nullptr;
    clients_.push_back(*store);
    return Decorate(*store);
  }

  // Sanitized builds run the store's code several times slower: 200 leases
  // renewing every 200 ms (ManyLeasesAreHeldAtOnce) is more than a TSan
  // build gets through beside three other tests on two cores.
  Duration ttl() const override {
    if (simulated()) return 3s;
    return leasehold::testing::kSanitized ? Duration(2s) : Duration(600ms);
  }
  // Waiters poll every 5 ms.
  Duration expiry_slack() const override { return simulated() ? Duration(10ms) : Duration(100ms); }
  Duration callback_slack() const override { return simulated() ? Duration(1ms) : Duration(100ms); }

  // Another program holds the write lock: every write fails with BUSY (the
  // store's own unavailability, rather than the decorator's refusal).
  bool SetUnavailable(bool on) override {
    if (on) {
      blocker_ = std::make_unique<sqlite_test::Raw>(dir_.db());
      return blocker_->Exec("BEGIN EXCLUSIVE");
    }
    if (blocker_) blocker_->Exec("ROLLBACK");
    blocker_.reset();
    return true;
  }
  bool ForeignTakeOver(const std::string& name, const std::string& holder) override {
    sqlite_test::Raw raw(dir_.db());
    const auto now = runtime()->clock().Now().time_since_epoch().count();
    return raw.Exec(
        "BEGIN IMMEDIATE;"
        "UPDATE leasehold_sequences SET last = last + 1 WHERE name = '" +
        name +
        "';"
        "UPDATE leasehold_leases SET holder = '" +
        holder +
        "',"
        " sequence = (SELECT last FROM leasehold_sequences WHERE name = '" +
        name +
        "'),"
        " boot_id = '" +
        sqlite_test::BootId() + "', renewed_ns = " + std::to_string(now) + ", ttl_ns = " +
        std::to_string(ttl().count()) + ", version = version + 1 WHERE name = '" + name +
        "';"
        "COMMIT;");
  }
  bool ForeignDelete(const std::string& name) override {
    sqlite_test::Raw raw(dir_.db());
    return raw.Exec("DELETE FROM leasehold_leases WHERE name = '" + name + "'");
  }

 private:
  sqlite_test::TempDir dir_;
  std::vector<std::shared_ptr<SqliteStore>> clients_;
  std::unique_ptr<sqlite_test::Raw> blocker_;
};

INSTANTIATE_TEST_SUITE_P(Sqlite, ConformanceTest,
                         ::testing::ValuesIn(OnBothClocks<SqliteHarness>("Sqlite")),
                         ConformanceParamName);

}  // namespace
}  // namespace leasehold::conformance
