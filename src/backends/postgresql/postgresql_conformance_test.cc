// The conformance suite instantiated for the PostgreSQL store against a real
// PostgreSQL 15 (started by the fixture), on the simulated clock and on the
// real one, and -- real time -- through PgBouncer in transaction pooling
// mode. Each NewClient() is a store object with its own connections, as
// another process would have, behind a FaultStore for the network-like
// faults (DecoratedHarness); each harness has a table of its own.
//
// Expiry is client-judged (postgresql.h): a contender takes a silent
// holder's row over one TTL after it first saw it unchanged. On the real
// clock the stores of one process share their observations, so that is one
// TTL after the holder's client last saw its own write.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "conformance/conformance.h"
#include "conformance/decorated_harness.h"
#include "leasehold/backends/postgresql.h"
#include "postgresql_test_util.h"
#include "testing/sanitizers.h"

namespace leasehold::conformance {
namespace {

using namespace std::chrono_literals;
using leasehold::testing::kSanitized;

class PostgresHarness : public DecoratedHarness {
 public:
  explicit PostgresHarness(bool simulated, bool bouncer = false)
      : DecoratedHarness(simulated), server_(pg_test::SharedServer()) {
    if (bouncer) bouncer_ = pg_test::SharedBouncer();
  }
  ~PostgresHarness() override { clients_.clear(); }

  std::shared_ptr<Store> NewClient() override {
    if (!server_) return nullptr;
    PostgresOptions options;
    options.conninfo = bouncer_ ? bouncer_->user_conninfo() : server_->user_conninfo();
    // Behind a transaction pooler, LISTEN goes straight to the server.
    if (bouncer_) options.listen_conninfo = server_->user_conninfo();
    options.table = table_;
    options.connect_timeout = 2s;
    auto store = PostgresStore::Open(options, runtime());
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok()) return nullptr;
    clients_.push_back(*store);
    return Decorate(*store);
  }

  Duration ttl() const override {
    if (simulated()) return 3s;
    return kSanitized ? Duration(2s) : Duration(1s);
  }
  Duration expiry_slack() const override { return ttl() + 300ms; }
  Duration callback_slack() const override {
    if (simulated()) return 1ms;
    return kSanitized ? Duration(500ms) : Duration(250ms);
  }

  bool ForeignTakeOver(const std::string& name, const std::string& holder) override {
    return server_ && pg_test::ForeignTakeOver(*server_, table_, name, holder);
  }
  bool ForeignDelete(const std::string& name) override {
    return server_ && pg_test::ForeignDelete(*server_, table_, name);
  }

 private:
  pg_test::PgServer* const server_;
  pg_test::PgBouncer* bouncer_ = nullptr;
  const std::string table_ = pg_test::FreshTable();
  std::vector<std::shared_ptr<PostgresStore>> clients_;
};

class BouncedHarness final : public PostgresHarness {
 public:
  explicit BouncedHarness(bool simulated) : PostgresHarness(simulated, /*bouncer=*/true) {}
};

INSTANTIATE_TEST_SUITE_P(Postgres, ConformanceTest,
                         ::testing::ValuesIn(OnBothClocks<PostgresHarness>("Postgres")),
                         ConformanceParamName);

INSTANTIATE_TEST_SUITE_P(PgBouncer, ConformanceTest,
                         ::testing::Values(ConformanceParam{
                             "PgBouncer", [] { return std::make_unique<BouncedHarness>(false); }}),
                         ConformanceParamName);

}  // namespace
}  // namespace leasehold::conformance
