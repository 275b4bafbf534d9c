// leasehold: the Kubernetes store -- leases as coordination.k8s.io/v1 Lease
// objects, readable by kubectl and client-go.
//
// Expiry is client-judged (see store.h): a foreign record counts as expired
// only after this store has observed it unchanged (same resourceVersion) for
// min(leaseDurationSeconds, max_observe_factor x our TTL) on its own monotonic
// clock, starting when the read that first showed it was answered. The
// renewTime/acquireTime written by others are informational and never used for
// safety, so clock offsets between nodes (and hostile or broken fields) cannot
// make us steal a live lease or wait forever for a dead one. Every participant
// of one lease should use the same TTL: a contender with a much shorter TTL
// caps its wait at max_observe_factor times its own TTL.
//
// Wire protocol, per operation (n = API requests):
//   acquire   GET (+ POST when absent, or PUT with the observed resourceVersion
//             to take over): 2.
//   renew     one PUT carrying the last resourceVersion; a 409 is followed by
//             one GET that tells "our own earlier write landed" (keep) from
//             "someone else wrote" (lost).
//   release   one PUT clearing holderIdentity with the last resourceVersion
//             (leaseTransitions kept, so sequences never restart).
// The whole last-read object is written back with only our spec fields
// changed: labels, annotations, ownerReferences and fields this client does
// not know survive.
//
// Fencing: the sequence is spec.leaseTransitions after our increment; it is
// incremented on every acquisition (including the same owner re-acquiring).
// The token also carries the object's uid: deleting the object by hand
// restarts the sequence, and tokens of the old object never equal tokens of
// the new one.
//
// Identity: holderIdentity is the request's holder (readable by kubectl); the
// annotation "leasehold.io/incarnation" carries a random id per store object,
// so our own owner string written by an earlier incarnation is foreign.
//
// Waiting: a contender watches the single object from the resourceVersion it
// read (fieldSelector=metadata.name=NAME) on a thread of the store's; any
// change, a 410 Gone or the end of the stream wakes it.
//
// Credentials: a TokenSource (kubernetes_credentials.h) supplies the bearer
// token; it is re-read periodically and at once after a 401, and the request is
// retried once. TLS is always verified against Credentials::ca_pem (or the
// system store when empty). Proxy environment variables are honoured
// (libcurl's defaults).
//
// Thread-safety: every method is safe from any thread. Blocking IO runs on the
// runtime's blocking lane and on the store's watch threads, never on a loop
// thread.
#ifndef LEASEHOLD_BACKENDS_KUBERNETES_H_
#define LEASEHOLD_BACKENDS_KUBERNETES_H_

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "leasehold/backends/kubernetes_credentials.h"
#include "leasehold/runtime.h"
#include "leasehold/status.h"
#include "leasehold/store.h"

namespace leasehold::kubernetes {

struct KubernetesOptions {
  // Required: the API server and identity (LoadCredentials()).
  Credentials credentials{};
  // Namespace of the Lease objects. Empty: credentials.namespace_name, else
  // "default".
  std::string namespace_name{};
  // Cap on how long a foreign record must be observed unchanged before it is
  // taken over: min(leaseDurationSeconds, max_observe_factor x our TTL). Must
  // be in [1, 1000].
  double max_observe_factor = 2.0;
  // Ceiling of one HTTP request's timeout (each request is further cut to the
  // caller's remaining budget). Must be > 0.
  Duration request_timeout = std::chrono::seconds(10);
  // Share observations (when each resourceVersion was first seen) with the
  // other KubernetesStore objects of this process. Safe either way: an
  // observation is a fact about the server on this host's monotonic clock;
  // sharing lets a contender count from when another client of the process
  // (e.g. the holder itself) saw the record, instead of from its own first
  // read. Stores on the real clock share with each other; stores on another
  // clock (a simulated runtime's) share with the stores of that runtime.
  bool share_observations = true;
  // Accept a plain http:// server (the bearer token then crosses the network
  // in the clear) or credentials with insecure_skip_tls_verify. Never the
  // default; LoadCredentials needs CredentialOptions::allow_insecure as well.
  bool allow_insecure = false;
  // Wake waiting contenders with a watch (true) or let the engine poll.
  bool watch = true;
  // How often the bearer token file is re-read at the latest.
  Duration token_max_age = std::chrono::minutes(1);
};

class KubernetesStore final : public Store {
 public:
  // Validates the options (kInvalidArgument naming the field). No IO.
  static Result<std::shared_ptr<KubernetesStore>> Open(KubernetesOptions options,
                                                       std::shared_ptr<Runtime> runtime = nullptr);
  ~KubernetesStore() override;

  // "kubernetes://NS (SERVER)", e.g. "kubernetes://default (https://10.0.0.1:6443)".
  std::string Describe() const override;
  StoreCapabilities capabilities() const override;
  // DNS-1123 subdomain of at most 253 characters (kInvalidArgument otherwise).
  Status ValidateName(std::string_view name) const override;
  void Acquire(AcquireRequest request, AcquireCallback done) override;
  // Independent PUTs, run concurrently on the blocking lane.
  void Renew(std::vector<RenewRequest> batch, RenewCallback done) override;
  void Release(ReleaseRequest request, StatusCallback done) override;
  void Inspect(std::string name, TimePoint deadline, InspectCallback done) override;
  // The Lease objects of the namespace (RBAC verb "list").
  void List(std::string prefix, TimePoint deadline, ListCallback done) override;
  void Break(std::string name, TimePoint deadline, StatusCallback done) override;
  WatchId Watch(const std::string& name, const std::string& version, Task on_change) override;
  void CancelWatch(WatchId id) noexcept override;

  // The namespace in use.
  const std::string& namespace_name() const noexcept;
  // This store object's incarnation id (the annotation's value).
  const std::string& incarnation() const noexcept;

 private:
  struct State;
  KubernetesStore(std::shared_ptr<Runtime> runtime, std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
};

// The annotation that carries the incarnation id.
inline constexpr std::string_view kIncarnationAnnotation = "leasehold.io/incarnation";

}  // namespace leasehold::kubernetes

namespace leasehold {
// Every backend's store and options are leasehold::<Backend>Store and
// leasehold::<Backend>Options; the Kubernetes ones live in their own
// namespace with the rest of the backend's public types (credentials).
using kubernetes::KubernetesOptions;
using kubernetes::KubernetesStore;
}  // namespace leasehold

#endif  // LEASEHOLD_BACKENDS_KUBERNETES_H_
