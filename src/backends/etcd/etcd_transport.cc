#include "etcd_transport.h"

#include <algorithm>
#include <cctype>
#include <optional>

#include "leasehold/detail/io.h"
#include "leasehold/future.h"

namespace leasehold::etcd {
namespace {

// HTTP/2 pings on open connections (see CreateEndpoints): every 10 s, and a
// connection whose ping goes unanswered for 5 s is closed.
constexpr int kPingInterval = 10'000;
constexpr int kPingTimeout = 5'000;

}  // namespace

// gRPC (1.51) shares one "callback alternative" completion queue among the
// channels that use its callback API, and shuts it down when the last such
// channel is destroyed; creating a channel while that shutdown runs trips an
// assertion inside gRPC. One channel that has made a callback call and lives
// for the whole process keeps the queue up.
void PinCallbackQueue() {
  static std::once_flag once;
  std::call_once(once, [] {
    static auto* const channel = new std::shared_ptr<grpc::Channel>(
        grpc::CreateChannel("dns:///127.0.0.1:1", grpc::InsecureChannelCredentials()));
    auto stub = pb::KV::NewStub(*channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(gpr_time_from_nanos(1, GPR_TIMESPAN));
    pb::RangeRequest req;
    pb::RangeResponse resp;
    Promise<bool> answered(nullptr);
    stub->async()->Range(&ctx, &req, &resp,
                         [answered](grpc::Status) mutable { answered.Set(true); });
    answered.future().Wait();
  });
}

Status ValidateOptions(const EtcdOptions& options) {
  if (options.endpoints.empty()) {
    return InvalidArgumentError("etcd: endpoints: at least one host:port is required");
  }
  for (const auto& e : options.endpoints) {
    if (Status s = leasehold::detail::CheckEndpoint(e); !s.ok()) {
      return InvalidArgumentError("etcd: endpoints: " + s.message());
    }
  }
  if (options.cert_file.empty() != options.key_file.empty()) {
    return InvalidArgumentError(
        "etcd: cert_file and key_file: a client certificate needs both (got only " +
        std::string(options.cert_file.empty() ? "key_file" : "cert_file") + ")");
  }
  if (!options.tls && (!options.ca_file.empty() || !options.cert_file.empty())) {
    return InvalidArgumentError("etcd: ca_file/cert_file given but tls is off");
  }
  if (options.username.empty() != options.password.empty()) {
    return InvalidArgumentError("etcd: username and password: give both or neither");
  }
  if (options.dial_timeout < Duration::zero()) {
    return InvalidArgumentError("etcd: dial_timeout must be >= 0");
  }
  return Status::Ok();
}

Result<std::shared_ptr<grpc::ChannelCredentials>> Credentials(const EtcdOptions& options) {
  if (!options.tls) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  if (!options.ca_file.empty()) {
    auto ca = leasehold::detail::ReadSmallFile(options.ca_file, "etcd: ca file");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *ca;
  }
  if (!options.cert_file.empty()) {
    auto cert = leasehold::detail::ReadSmallFile(options.cert_file, "etcd: cert file");
    if (!cert.ok()) return cert.status();
    auto key = leasehold::detail::ReadSmallFile(options.key_file, "etcd: key file");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *cert;
    ssl.pem_private_key = *key;
  }
  return grpc::SslCredentials(ssl);
}

Transport::Transport(std::shared_ptr<Runtime> rt, EtcdOptions o)
    : runtime(std::move(rt)), clock(runtime->clock()), options(std::move(o)) {
  describe = "etcd://";
  for (size_t i = 0; i < options.endpoints.size(); ++i) {
    describe += (i ? "," : "") + options.endpoints[i];
  }
  describe += "/" + options.key_prefix;
}

void Transport::CreateEndpoints(const std::shared_ptr<grpc::ChannelCredentials>& creds) {
  for (const auto& address : options.endpoints) {
    grpc::ChannelArguments args;
    // Reconnect quickly after an outage: the default backoff grows to 2 min.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // A channel per store object (not shared with other stores of the process).
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    // A connection that went silent (a member behind a black hole answers
    // nothing, not even a reset) is found by HTTP/2 pings and closed, so the
    // watch stream it carried re-opens elsewhere. Only while calls are open,
    // and no more often than etcd's --grpc-keepalive-min-time (5 s by
    // default) allows: more often, etcd closes the connection.
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kPingInterval);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kPingTimeout);
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    Endpoint e;
    e.address = address;
    e.channel = grpc::CreateCustomChannel("dns:///" + address, creds, args);
    e.kv = pb::KV::NewStub(e.channel);
    e.lease = pb::Lease::NewStub(e.channel);
    e.watch = pb::Watch::NewStub(e.channel);
    e.auth = pb::Auth::NewStub(e.channel);
    endpoints.push_back(std::move(e));
  }
}

Status Transport::Dial() {
  const TimePoint until = clock.Now() + options.dial_timeout;
  bool connected = false;
  // Try every endpoint at once; the first to connect becomes current.
  for (auto& e : endpoints) e.channel->GetState(true);
  std::vector<bool> failed(endpoints.size(), false);
  while (!connected && clock.Now() < until) {
    for (size_t i = 0; i < endpoints.size() && !connected; ++i) {
      const auto st = endpoints[i].channel->GetState(true);
      if (st == GRPC_CHANNEL_READY) {
        current = i;
        connected = true;
      }
      if (st == GRPC_CHANNEL_TRANSIENT_FAILURE) failed[i] = true;
    }
    // Every endpoint kept refusing for a second: say so now, not at the
    // timeout (a loaded machine can fail one early attempt).
    if (std::all_of(failed.begin(), failed.end(), [](bool f) { return f; }) &&
        clock.Now() > until - options.dial_timeout + std::chrono::seconds(1)) {
      break;
    }
    if (!connected) {
      endpoints[0].channel->WaitForStateChange(endpoints[0].channel->GetState(true),
                                               gpr_time_from_millis(20, GPR_TIMESPAN));
    }
  }
  if (!connected) {
    return UnavailableError(describe + ": no endpoint accepted a connection (dial timeout " +
                            FormatDuration(options.dial_timeout) + ")" +
                            (options.tls ? " (TLS: check the CA and certificates)" : ""));
  }
  if (options.username.empty()) return Status::Ok();
  Promise<Status> authenticated(nullptr);
  Authenticate(current.load(), clock.Now() + options.dial_timeout,
               [authenticated](Status s) mutable { authenticated.Set(std::move(s)); });
  return authenticated.future().Wait();
}

void Transport::Authenticate(size_t ep, TimePoint deadline, StatusCallback done) {
  struct InFlight {
    grpc::ClientContext ctx;
    pb::AuthenticateRequest req;
    pb::AuthenticateResponse resp;
  };
  auto call = std::make_shared<InFlight>();
  call->req.set_name(options.username);
  call->req.set_password(options.password);
  const Duration left = deadline - clock.Now();
  if (left <= Duration::zero()) {
    done(DeadlineExceededError(describe + ": authenticate: deadline passed"));
    return;
  }
  call->ctx.set_deadline(gpr_time_from_nanos(left.count(), GPR_TIMESPAN));
  auto self = shared_from_this();
  endpoints[ep].auth->async()->Authenticate(
      &call->ctx, &call->req, &call->resp, [self, call, ep, done](grpc::Status s) {
        if (!s.ok()) {
          if (Failover(s.error_code())) self->Rotate(ep);
          // The password is never part of a message.
          done(self->Error(s, "authenticate as user " + Quote(self->options.username),
                           self->endpoints[ep]));
          return;
        }
        {
          std::lock_guard lock(self->auth_mu_);
          self->token_ = call->resp.token();
        }
        done(Status::Ok());
      });
}

bool Transport::NeedsToken() {
  if (options.username.empty()) return false;
  std::lock_guard lock(auth_mu_);
  return token_.empty();
}

void Transport::ForgetToken() {
  std::lock_guard lock(auth_mu_);
  token_.clear();
}

void Transport::AddMetadata(grpc::ClientContext& ctx) {
  ctx.AddMetadata("hasleader", "true");
  if (options.username.empty()) return;
  std::lock_guard lock(auth_mu_);
  if (!token_.empty()) ctx.AddMetadata("token", token_);
}

void Transport::Track(grpc::ClientContext* ctx) {
  std::lock_guard lock(calls_mu_);
  calls_.insert(ctx);
  // Safe before the call starts: gRPC cancels it as soon as it does.
  if (calls_cancelled_) ctx->TryCancel();
}

void Transport::Untrack(grpc::ClientContext* ctx) {
  std::lock_guard lock(calls_mu_);
  calls_.erase(ctx);
}

void Transport::CancelCalls() {
  std::lock_guard lock(calls_mu_);
  calls_cancelled_ = true;
  for (grpc::ClientContext* ctx : calls_) ctx->TryCancel();
}

void Transport::Rotate(size_t used) {
  size_t expected = used;
  current.compare_exchange_strong(expected, (used + 1) % endpoints.size());
}

bool Transport::Prepare(grpc::ClientContext& ctx, TimePoint deadline) {
  const Duration left = deadline - clock.Now();
  if (left <= Duration::zero()) return false;
  ctx.set_deadline(gpr_time_from_nanos(left.count(), GPR_TIMESPAN));
  AddMetadata(ctx);
  return true;
}

void Transport::Release(std::shared_ptr<Transport>&& self) {
  // Whether this is the last reference is not asked (a count read here is
  // stale by the time it is used): the reference goes to the loop, where
  // dropping it -- the last one included -- is safe. `rt` keeps the runtime
  // alive until Post has returned.
  const std::shared_ptr<Runtime> rt = runtime;
  rt->Post([keep = std::move(self)] {});
}

}  // namespace leasehold::etcd
