// The fixture of the Kubernetes store's tests (kubernetes_store_test.cc,
// kubernetes_watch_test.cc): a fake API server over real TLS on loopback, a
// runtime, and helpers for direct store calls, leases and foreign records.
#ifndef LEASEHOLD_SRC_BACKENDS_KUBERNETES_KUBERNETES_STORE_FIXTURE_H_
#define LEASEHOLD_SRC_BACKENDS_KUBERNETES_KUBERNETES_STORE_FIXTURE_H_

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "fake_api_server.h"
#include "leasehold/backends/kubernetes.h"
#include "leasehold/future.h"
#include "leasehold/lease.h"
#include "leasehold/runtime.h"

namespace leasehold::kubernetes::store_test {

using json = nlohmann::json;
using namespace std::chrono_literals;
using testing::FakeApiServer;

class KubernetesStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { StartServer({}); }
  // The tests' leases and stores are locals, gone by now: the runtime goes
  // here, its threads joined on this thread, rather than by one of its own
  // while the process exits (under TSan, OpenSSL's exit-time cleanup was seen
  // racing a watch thread joined that way).
  void TearDown() override { EXPECT_TRUE(ShutDown(std::move(runtime_), std::chrono::seconds(10))); }

  void StartServer(testing::FakeApiServerOptions options) {
    auto server = FakeApiServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
  }

  Credentials Creds(const std::string& token = "test-token") const {
    Credentials c;
    c.server = server_->url();
    c.ca_pem = server_->pki().ca_pem;
    c.token = token;
    c.source = "test credentials";
    return c;
  }

  std::shared_ptr<KubernetesStore> Open(Credentials creds, KubernetesOptions options = {}) {
    options.credentials = std::move(creds);
    auto store = KubernetesStore::Open(options, runtime_);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? *store : nullptr;
  }
  std::shared_ptr<KubernetesStore> Open() { return Open(Creds()); }

  std::unique_ptr<Lease> MakeLease(std::shared_ptr<Store> store, const std::string& name,
                                   const std::string& owner, Duration ttl = 2s) {
    auto lease = Lease::Create(std::move(store), {.name = name, .owner = owner, .ttl = ttl});
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    return lease.ok() ? std::move(*lease) : nullptr;
  }

  // Direct store calls, waited for.
  Result<AcquireOutcome> StoreAcquire(Store& store, const std::string& name,
                                      const std::string& holder, Duration ttl = 2s) {
    Promise<Result<AcquireOutcome>> p(runtime_);
    store.Acquire({.name = name, .holder = holder, .ttl = ttl, .deadline = Now() + 5s},
                  [p](Result<AcquireOutcome> r) mutable { p.Set(std::move(r)); });
    return p.future().Wait();
  }
  Result<RenewOutcome> StoreRenew(Store& store, const std::string& name, const std::string& holder,
                                  const FencingToken& token, Duration ttl = 2s) {
    Promise<Result<RenewOutcome>> p(runtime_);
    store.Renew(
        {RenewRequest{
            .name = name, .holder = holder, .token = token, .ttl = ttl, .deadline = Now() + 5s}},
        [p](std::vector<Result<RenewOutcome>> r) mutable { p.Set(std::move(r.at(0))); });
    return p.future().Wait();
  }
  Status StoreRelease(Store& store, const std::string& name, const std::string& holder,
                      const FencingToken& token) {
    Promise<Status> p(runtime_);
    store.Release({.name = name, .holder = holder, .token = token, .deadline = Now() + 5s},
                  [p](Status s) mutable { p.Set(std::move(s)); });
    return p.future().Wait();
  }
  Result<LeaseRecord> StoreInspect(Store& store, const std::string& name, Duration timeout = 5s) {
    Promise<Result<LeaseRecord>> p(runtime_);
    store.Inspect(name, Now() + timeout,
                  [p](Result<LeaseRecord> r) mutable { p.Set(std::move(r)); });
    return p.future().Wait();
  }

  json Object(const std::string& name) {
    auto text = server_->GetLease("default", name);
    EXPECT_TRUE(text.has_value()) << name;
    return text ? json::parse(*text) : json();
  }
  void PutForeign(const std::string& name, json spec, json metadata = json::object()) {
    json obj = {{"apiVersion", "coordination.k8s.io/v1"},
                {"kind", "Lease"},
                {"metadata", metadata},
                {"spec", std::move(spec)}};
    ASSERT_TRUE(server_->PutLease("default", name, obj.dump()).ok());
  }

  TimePoint Now() const { return runtime_->clock().Now(); }

  std::shared_ptr<Runtime> runtime_ = Runtime::Create();
  std::unique_ptr<FakeApiServer> server_;
};

inline const Acquired* Won(const Result<AcquireOutcome>& r) {
  if (!r.ok()) return nullptr;
  return std::get_if<Acquired>(&*r);
}

}  // namespace leasehold::kubernetes::store_test

#endif  // LEASEHOLD_SRC_BACKENDS_KUBERNETES_KUBERNETES_STORE_FIXTURE_H_
