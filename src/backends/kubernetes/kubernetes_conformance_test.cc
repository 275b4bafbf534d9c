// The conformance suite instantiated for the Kubernetes store against the
// in-tree fake API server (real TLS on loopback, real time). Each NewClient()
// is a store object of its own (its own connections and incarnation), as
// another process would have, behind a FaultStore for black-holed requests and
// failed renewals (DecoratedHarness); "unavailable" suspends the server
// (connections refused).
//
// Expiry is client-judged: a contender takes a silent holder's record over one
// lease duration after the record was first seen unchanged. The stores of one
// process share their observations (KubernetesOptions::share_observations), so
// a contender created after the holder's last write counts from when the
// holder's client saw that write, as a contender that had been watching would.
#include <chrono>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "conformance/conformance.h"
#include "conformance/decorated_harness.h"
#include "fake_api_server.h"
#include "leasehold/backends/kubernetes.h"
#include "leasehold/future.h"
#include "testing/sanitizers.h"

namespace leasehold::conformance {
namespace {

using namespace std::chrono_literals;
using kubernetes::testing::FakeApiServer;

// A fresh client's first request includes a TLS handshake, which on a loaded
// machine (and under ASan/TSan) can outlast a short TTL's request timeout
// (TTL/3): 2 s TTLs (4 s sanitized) leave room for it.
using leasehold::testing::kSanitized;

class KubernetesHarness final : public DecoratedHarness {
 public:
  KubernetesHarness() : DecoratedHarness(false) {
    // Every client keeps its connections open, and the server gives each
    // connection a thread: a client renews at most 8 Leases at once, and no
    // test opens more than a few clients, so the default 64 threads suffice.
    // More would cost time where it hurts: Resume() builds the pool anew
    // mid-test, inside the renewal budget AnOutageShorterThanTheDeadlineIs
    // RiddenOut leaves (320 made it miss under ASan).
    auto server = FakeApiServer::Start({});
    EXPECT_TRUE(server.ok()) << server.status().ToString();
    if (server.ok()) server_ = std::move(*server);
    // A process's first TLS handshake (loading the CA and keys) can outlast
    // a first request's timeout under sanitizers: one slow read takes it.
    if (auto store = Open(60s); store != nullptr) {
      Promise<Result<LeaseRecord>> done(runtime());
      store->Inspect("warm-up", runtime()->clock().Now() + 60s,
                     [done](Result<LeaseRecord> r) mutable { done.Set(std::move(r)); });
      const auto& r = done.future().Wait();
      EXPECT_EQ(r.status().code(), StatusCode::kNotFound) << r.status().ToString();
    }
  }
  ~KubernetesHarness() override { clients_.clear(); }

  std::shared_ptr<Store> NewClient() override {
    auto store = Open();
    if (store == nullptr) return nullptr;
    clients_.push_back(store);
    return Decorate(store);
  }

  std::shared_ptr<kubernetes::KubernetesStore> Open(Duration request_timeout = 2s) {
    if (!server_) return nullptr;
    kubernetes::KubernetesOptions options;
    options.credentials.server = server_->url();
    options.credentials.ca_pem = server_->pki().ca_pem;
    options.credentials.token = "test-token";
    options.request_timeout = request_timeout;
    auto store = kubernetes::KubernetesStore::Open(options, runtime());
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok()) return nullptr;
    return *store;
  }

  // Leases are whole seconds on the wire; a contender takes a silent holder's
  // record over one lease duration after it first saw it unchanged, which is
  // up to one TTL after the holder's last write.
  Duration ttl() const override { return kSanitized ? Duration(4s) : Duration(2s); }
  // The fake API server runs in the test's process, under the same sanitizer:
  // ASan-built, it stops answering new requests in time past ~100 leases
  // renewing at a 4 s TTL (an acquire gets no byte within its 1.3 s budget).
  // The default build holds all 200.
  int many_leases() const override { return kSanitized ? 64 : 200; }
  Duration expiry_slack() const override { return ttl() + 300ms; }
  Duration callback_slack() const override {
    return kSanitized ? Duration(500ms) : Duration(250ms);
  }

  // The real thing: the server stops accepting connections.
  bool SetUnavailable(bool on) override {
    if (!server_) return false;
    if (on) {
      server_->Suspend();
      return true;
    }
    return server_->Resume().ok();
  }
  bool ForeignTakeOver(const std::string& name, const std::string& holder) override {
    auto text = server_->GetLease("default", name);
    if (!text) return false;
    auto obj = nlohmann::json::parse(*text);
    const int64_t transitions = obj["spec"].value("leaseTransitions", 0);
    obj["spec"]["holderIdentity"] = holder;
    obj["spec"]["leaseTransitions"] = transitions + 1;
    obj["spec"]["leaseDurationSeconds"] = 60;
    obj["metadata"].erase("annotations");
    return server_->PutLease("default", name, obj.dump()).ok();
  }
  bool ForeignDelete(const std::string& name) override {
    return server_->DeleteLease("default", name);
  }

 private:
  std::unique_ptr<FakeApiServer> server_;
  std::vector<std::shared_ptr<kubernetes::KubernetesStore>> clients_;
};

INSTANTIATE_TEST_SUITE_P(Kubernetes, ConformanceTest,
                         ::testing::Values(ConformanceParam{
                             "Kubernetes", [] { return std::make_unique<KubernetesHarness>(); }}),
                         ConformanceParamName);

}  // namespace
}  // namespace leasehold::conformance
