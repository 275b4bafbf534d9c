// The conformance suite instantiated for the Redis store against a real
// redis-server 7.0 (started by the fixture), on the simulated clock and on
// the real one. Each NewClient() is a store object with its own
// connections, as another process would have, behind a FaultStore for the
// network-like faults (DecoratedHarness); each harness has a key prefix of
// its own.
//
// Expiry is client-judged (redis.h): a contender takes a silent holder's
// record over one TTL after it first saw it unchanged.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "conformance/conformance.h"
#include "conformance/decorated_harness.h"
#include "leasehold/backends/redis.h"
#include "redis_test_util.h"
#include "testing/sanitizers.h"

namespace leasehold::conformance {
namespace {

using namespace std::chrono_literals;
using leasehold::testing::kSanitized;

class RedisHarness final : public DecoratedHarness {
 public:
  explicit RedisHarness(bool simulated)
      : DecoratedHarness(simulated), server_(redis_test::SharedServer()) {}
  ~RedisHarness() override { clients_.clear(); }

  std::shared_ptr<Store> NewClient() override {
    if (!server_) return nullptr;
    auto options = ParseRedisUrl(server_->url());
    EXPECT_TRUE(options.ok()) << options.status().ToString();
    if (!options.ok()) return nullptr;
    options->key_prefix = prefix_;
    options->connect_timeout = 2s;
    auto store = RedisStore::Open(*options, runtime());
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
    return server_ && redis_test::ForeignTakeOver(*server_, prefix_, name, holder);
  }
  bool ForeignDelete(const std::string& name) override {
    return server_ && redis_test::ForeignDelete(*server_, prefix_, name);
  }

 private:
  redis_test::RedisServer* const server_;
  const std::string prefix_ = redis_test::FreshPrefix();
  std::vector<std::shared_ptr<RedisStore>> clients_;
};

INSTANTIATE_TEST_SUITE_P(Redis, ConformanceTest,
                         ::testing::ValuesIn(OnBothClocks<RedisHarness>("Redis")),
                         ConformanceParamName);

}  // namespace
}  // namespace leasehold::conformance
