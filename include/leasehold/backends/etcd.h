// leasehold: the etcd v3 store -- leases held as etcd keys attached to etcd
// leases, spoken natively over gRPC.
//
// Key layout: the record of lease NAME is the key `<key_prefix>NAME`; its value
// is the holder identity, and it is attached to this store's *session*.
//
// Sessions: one etcd lease per distinct TTL (rounded up to whole seconds; etcd
// raises it to its own minimum, 1.5 x the election timeout rounded up, and the
// TTL it grants is the one the engine uses). It is granted on the first acquire
// with that TTL and shared by every lease held through this store with that
// TTL, kept alive on one LeaseKeepAlive stream: a renewal of any number of
// leases is one keepalive per session. The safe deadline is anchored at the
// send time of the keepalive (or grant) whose answer arrived. A keepalive
// answered with TTL <= 0 means the session, and every key on it, is gone: each
// of its leases is lost. Each renewal also reads the keys (batched, many per
// transaction) and reports a key that is gone or carries another create
// revision as lost (deleted / taken over). Sessions are revoked when the store
// is destroyed (bounded by `shutdown_timeout`), which frees every key on them.
//
// Leftovers: a key does not expire while its session lives, and a session
// lives while any lease of the store with its TTL does. A key this store may
// have left behind without holding it -- a release etcd did not confirm
// (UNAVAILABLE, deadline exceeded), an acquire whose answer was lost after its
// put may have landed -- is deleted by a conditional transaction in the
// background (create revision == the tenure's; for the lost acquire, value ==
// the holder and lease == the session, sent only after the put's settling
// bound: its deadline plus its length again), retried with backoff (0.1-2 s)
// until etcd answers, the session is gone or the store shuts down. An acquire
// by the same holder of such a key claims it instead (the idempotent re-acquire
// finds it as its own), waiting for a delete already in flight.
//
// Fencing: the sequence is the key's create revision -- etcd's cluster-wide
// revision, strictly increasing across owners, release, expiry, break and
// restarts of either side for as long as the cluster's data lives. Tokens carry
// the cluster id, so tokens from different clusters never compare equal.
// FencedTxn() lets a holder apply its own writes only while its key still has
// that create revision: etcd itself rejects a stale holder.
//
// Expiry is server-judged by etcd's leader. A leader change resets every etcd
// lease's remaining time to its full TTL (etcd 3.4): a crashed holder's key can
// outlive its TTL by up to one TTL plus the election, so failover can be late,
// never early -- a holder's own deadline is computed from its send times only.
//
// Failover: requests go to one endpoint at a time; an endpoint that answers
// UNAVAILABLE or does not answer within a request's deadline is left for the
// next one. Every RPC's deadline is the request's deadline.
//
// Thread-safety: every method is safe from any thread. Callbacks run on gRPC's
// threads or the runtime's, never under a lock of the store.
#ifndef LEASEHOLD_BACKENDS_ETCD_H_
#define LEASEHOLD_BACKENDS_ETCD_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "leasehold/fencing.h"
#include "leasehold/runtime.h"
#include "leasehold/status.h"
#include "leasehold/store.h"

namespace leasehold {

struct EtcdOptions {
  // "host:port" of each member to use (at least one). Failover goes through
  // them in order.
  std::vector<std::string> endpoints{};
  // Prepended to every lease name to form its key.
  std::string key_prefix = "leasehold/";
  // TLS: when `tls` is true, the server is verified against `ca_file` (PEM; the
  // system roots when empty); `cert_file` and `key_file` (PEM) give a client
  // certificate, both or neither.
  bool tls = false;
  std::string ca_file{};
  std::string cert_file{};
  std::string key_file{};
  // Token authentication when `username` is non-empty. The token is renewed
  // when etcd reports it invalid or expired.
  std::string username{};
  std::string password{};
  // How long Open() waits for a first endpoint to accept a connection; zero:
  // Open() does no IO and connects on first use.
  Duration dial_timeout = std::chrono::seconds(5);
  // The destructor's one deadline: the sessions' revocation gets until then;
  // then every request and stream still out is cancelled (a member behind a
  // black hole answers nothing) and the destructor returns at most a quarter
  // second past it.
  Duration shutdown_timeout = std::chrono::seconds(1);
};

// One write applied by FencedTxn.
struct EtcdWrite {
  enum class Kind { kPut, kDelete };
  Kind kind = Kind::kPut;
  std::string key{};    // the full etcd key (no prefix is added)
  std::string value{};  // for kPut
};

namespace etcd {
struct State;  // src/backends/etcd/etcd_state.h
}  // namespace etcd

class EtcdStore final : public Store {
 public:
  // Validates the options and reads the TLS files. Errors: kInvalidArgument
  // naming the option (no endpoint, a malformed endpoint, a cert without its
  // key); kNotFound / kPermissionDenied naming an unreadable file; kUnavailable
  // when no endpoint accepted a connection within dial_timeout (when > 0);
  // kUnauthenticated when the credentials are refused.
  static Result<std::shared_ptr<EtcdStore>> Open(EtcdOptions options,
                                                 std::shared_ptr<Runtime> runtime = nullptr);
  // Revokes the sessions, cancels what is still out, then stops; returns
  // within shutdown_timeout + 0.25 s whatever the members do.
  ~EtcdStore() override;

  std::string Describe() const override;
  StoreCapabilities capabilities() const override;
  void Acquire(AcquireRequest request, AcquireCallback done) override;
  void Renew(std::vector<RenewRequest> batch, RenewCallback done) override;
  void Release(ReleaseRequest request, StatusCallback done) override;
  void Inspect(std::string name, TimePoint deadline, InspectCallback done) override;
  void Break(std::string name, TimePoint deadline, StatusCallback done) override;
  // The keys under key_prefix + `prefix`: etcd deletes an expired key, so
  // only held leases are listed.
  void List(std::string prefix, TimePoint deadline, ListCallback done) override;
  WatchId Watch(const std::string& name, const std::string& version, Task on_change) override;
  void CancelWatch(WatchId id) noexcept override;

  // The key that holds lease `name`.
  std::string KeyFor(std::string_view name) const;

  // Applies `writes` in one etcd transaction only if the key of lease `name`
  // still has create revision token.sequence (the tenure is still the one the
  // token names). Returns OK when applied; kFailedPrecondition "lease no
  // longer held" when etcd rejected it; kInvalidArgument, without sending
  // anything, for a token that is not one of lease `name` on this cluster;
  // transport errors as for Acquire. Blocks
  // the calling thread until `deadline` at most (not for runtime loop threads).
  Status FencedTxn(const FencingToken& token, const std::string& name,
                   std::vector<EtcdWrite> writes, TimePoint deadline);

  // The etcd lease ids of the live sessions (for tests and operators).
  std::vector<int64_t> SessionIds() const;

 private:
  EtcdStore(std::shared_ptr<Runtime> runtime, std::shared_ptr<etcd::State> state);
  std::shared_ptr<etcd::State> state_;
};

}  // namespace leasehold

#endif  // LEASEHOLD_BACKENDS_ETCD_H_
