// leasehold etcd backend, internal: the connection to the cluster -- one gRPC
// channel and set of stubs per endpoint, the auth token, and unary calls with
// failover to the next endpoint and re-authentication.
//
// Thread-safety: every method is safe from any thread. `current` and
// `cluster_id` are atomics; the token has its own mutex, which is never held
// while calling out. Completion callbacks run on gRPC's threads (or inline,
// for a call that cannot start), never under a lock of the transport.
//
// Lifetime: a Transport is always owned by a shared_ptr (it is the base of the
// store's state). Every call in flight holds a reference; a gRPC callback
// never drops its reference itself but hands it to the runtime's loop
// (Release), since a channel must not be destroyed inside one of gRPC's own
// callbacks.
#ifndef LEASEHOLD_BACKENDS_ETCD_ETCD_TRANSPORT_H_
#define LEASEHOLD_BACKENDS_ETCD_ETCD_TRANSPORT_H_

#include <grpc/support/time.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "etcd_errors.h"
#include "leasehold/backends/etcd.h"
#include "leasehold/clock.h"
#include "leasehold/runtime.h"
#include "leasehold/status.h"
#include "rpc.grpc.pb.h"
#include "rpc.pb.h"

namespace leasehold::etcd {

namespace pb = etcdserverpb;

struct Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::KV::Stub> kv;
  std::unique_ptr<pb::Lease::Stub> lease;
  std::unique_ptr<pb::Watch::Stub> watch;
  std::unique_ptr<pb::Auth::Stub> auth;
};

// A unary method of a stub's callback API, e.g. &pb::KV::Stub::async::Txn.
template <typename Async, typename Req, typename Resp>
using AsyncMethod = void (Async::*)(grpc::ClientContext*, const Req*, Resp*,
                                    std::function<void(grpc::Status)>);

// Keeps gRPC's shared callback completion queue up for the whole process; call
// before creating a store's channels.
void PinCallbackQueue();

// Checks the endpoints, the TLS and credential options and the dial timeout;
// kInvalidArgument naming the option. No IO.
Status ValidateOptions(const EtcdOptions& options);

// The channel credentials `options` ask for (reads the TLS files).
Result<std::shared_ptr<grpc::ChannelCredentials>> Credentials(const EtcdOptions& options);

struct Transport : std::enable_shared_from_this<Transport> {
  Transport(std::shared_ptr<Runtime> rt, EtcdOptions o);

  // Creates a channel and stubs per endpoint of `options`. No IO.
  void CreateEndpoints(const std::shared_ptr<grpc::ChannelCredentials>& creds);
  // Waits (up to options.dial_timeout) for the first endpoint to connect and
  // makes it current, then authenticates if there are credentials. Blocks.
  Status Dial();

  // One unary RPC: `method` of each endpoint's `stub` (e.g. &Endpoint::kv,
  // &pb::KV::Stub::async::Txn), with failover to the next endpoint on
  // UNAVAILABLE (while time is left) and one re-authentication on an auth
  // token etcd no longer accepts. Every attempt's deadline is `deadline`.
  template <typename Stub, typename Async, typename Req, typename Resp>
  void Call(std::string what, Req req, TimePoint deadline, std::unique_ptr<Stub> Endpoint::*stub,
            AsyncMethod<Async, Req, Resp> method,
            std::type_identity_t<std::function<void(Result<Resp>)>> done) {
    Unary<Req, Resp>(
        std::move(what), std::move(req), deadline,
        [stub, method](Endpoint& e, grpc::ClientContext* c, const Req* q, Resp* r,
                       std::function<void(grpc::Status)> cb) {
          ((e.*stub)->async()->*method)(c, q, r, std::move(cb));
        },
        std::move(done));
  }

  void Txn(std::string what, pb::TxnRequest req, TimePoint deadline,
           std::function<void(Result<pb::TxnResponse>)> done) {
    Call(std::move(what), std::move(req), deadline, &Endpoint::kv, &pb::KV::Stub::async::Txn,
         std::move(done));
  }

  // Fetches a fresh auth token from endpoint `ep`, then calls `done`.
  void Authenticate(size_t ep, TimePoint deadline, StatusCallback done);
  // True when there are credentials but no token yet.
  bool NeedsToken();
  // Makes the next call authenticate first.
  void ForgetToken();
  // Adds what every request and stream carries: the token (if any), and
  // etcd's require-leader flag, so that a member without a leader (cut off
  // from its cluster's majority) refuses a request at once ("no leader",
  // UNAVAILABLE: the request moves to the next endpoint) and cancels the
  // watch and keepalive streams it holds once it has lost its leader, so
  // that they re-open elsewhere instead of going silent.
  void AddMetadata(grpc::ClientContext& ctx);

  // Cancels every unary call in flight, and every one started from now on
  // (at shutdown: a call to a member behind a black hole would otherwise
  // hold the store until its own deadline).
  void CancelCalls();

  // Moves `current` past endpoint `used`, unless another call already has.
  void Rotate(size_t used);

  Status Error(const grpc::Status& s, const std::string& what, const Endpoint& e) const {
    return FromGrpc(s, describe, what, e.address);
  }
  Status Malformed(const std::string& what) const { return etcd::Malformed(describe, what); }
  void NoteHeader(const pb::ResponseHeader& h) {
    if (h.cluster_id() != 0) cluster_id.store(h.cluster_id());
  }

  const std::shared_ptr<Runtime> runtime;
  const Clock& clock;
  const EtcdOptions options;
  std::string describe;
  std::vector<Endpoint> endpoints;
  std::atomic<size_t> current{0};
  std::atomic<uint64_t> cluster_id{0};

 private:
  // Sets the deadline and credentials of one call. False if no time is left.
  bool Prepare(grpc::ClientContext& ctx, TimePoint deadline);

  // Drops a reference held by a gRPC callback, on the runtime's loop.
  void Release(std::shared_ptr<Transport>&& self);

  template <typename Req, typename Resp, typename Invoke>
  void Unary(std::string what, Req req, TimePoint deadline, Invoke invoke,
             std::function<void(Result<Resp>)> done, int attempt = 0, bool reauthed = false);

  // The contexts of the unary calls in flight; a callback removes its own
  // before anything else, so a context here is alive.
  void Track(grpc::ClientContext* ctx);
  void Untrack(grpc::ClientContext* ctx);

  std::mutex auth_mu_;
  std::string token_;  // empty without auth

  std::mutex calls_mu_;
  std::set<grpc::ClientContext*> calls_;
  bool calls_cancelled_ = false;
};

// `invoke(endpoint, ctx, req, resp, cb)` starts the call on one endpoint.
template <typename Req, typename Resp, typename Invoke>
void Transport::Unary(std::string what, Req req, TimePoint deadline, Invoke invoke,
                      std::function<void(Result<Resp>)> done, int attempt, bool reauthed) {
  const size_t ep = current.load() % endpoints.size();
  if (NeedsToken()) {
    auto self = shared_from_this();
    Authenticate(ep, deadline,
                 [self, what = std::move(what), req = std::move(req), deadline, invoke,
                  done = std::move(done), attempt](Status s) mutable {
                   if (!s.ok()) {
                     done(s);
                     return;
                   }
                   self->Unary<Req, Resp>(std::move(what), std::move(req), deadline, invoke,
                                          std::move(done), attempt, true);
                 });
    return;
  }
  struct InFlight {
    grpc::ClientContext ctx;
    Req req;
    Resp resp;
  };
  auto call = std::make_shared<InFlight>();
  call->req = req;
  if (!Prepare(call->ctx, deadline)) {
    done(DeadlineExceededError(describe + ": " + what + ": deadline passed before the request"));
    return;
  }
  auto self = shared_from_this();
  Track(&call->ctx);
  invoke(endpoints[ep], &call->ctx, &call->req, &call->resp,
         [self, call, ep, what = std::move(what), deadline, invoke, done = std::move(done), attempt,
          reauthed](grpc::Status s) mutable {
           self->Untrack(&call->ctx);
           if (s.ok()) {
             done(std::move(call->resp));
             self->Release(std::move(self));
             return;
           }
           if (Failover(s.error_code())) self->Rotate(ep);
           const bool retry_elsewhere = s.error_code() == grpc::StatusCode::UNAVAILABLE &&
                                        attempt + 1 < static_cast<int>(self->endpoints.size()) &&
                                        self->clock.Now() < deadline;
           if (retry_elsewhere) {
             self->Unary<Req, Resp>(std::move(what), std::move(call->req), deadline, invoke,
                                    std::move(done), attempt + 1, reauthed);
             return;
           }
           if (NeedsNewToken(s) && !self->options.username.empty() && !reauthed) {
             self->ForgetToken();
             self->Unary<Req, Resp>(std::move(what), std::move(call->req), deadline, invoke,
                                    std::move(done), attempt, true);
             return;
           }
           done(self->Error(s, what, self->endpoints[ep]));
           self->Release(std::move(self));
         });
}

}  // namespace leasehold::etcd

#endif  // LEASEHOLD_BACKENDS_ETCD_ETCD_TRANSPORT_H_
