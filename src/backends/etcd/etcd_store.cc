#include <grpc/support/time.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>

#include "leasehold/backends/etcd.h"
#include "leasehold/detail/io.h"
#include "leasehold/clock.h"
#include "rpc.grpc.pb.h"
#include "rpc.pb.h"

namespace leasehold {
namespace {

namespace pb = etcdserverpb;

// Ranges per verification transaction in a renewal (etcd's default
// --max-txn-ops is 128).
constexpr size_t kMaxOpsPerTxn = 128;

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out + "\"";
}

StatusCode CodeFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::UNKNOWN:
      return StatusCode::kUnavailable;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return StatusCode::kDeadlineExceeded;
    case grpc::StatusCode::UNAUTHENTICATED:
      return StatusCode::kUnauthenticated;
    case grpc::StatusCode::PERMISSION_DENIED:
      return StatusCode::kPermissionDenied;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return StatusCode::kInvalidArgument;
    case grpc::StatusCode::NOT_FOUND:
      return StatusCode::kNotFound;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return StatusCode::kResourceExhausted;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return StatusCode::kFailedPrecondition;
    case grpc::StatusCode::ABORTED:
      return StatusCode::kAborted;
    case grpc::StatusCode::UNIMPLEMENTED:
      return StatusCode::kUnimplemented;
    default:
      return StatusCode::kInternal;
  }
}

// Worth trying the next endpoint: the member is down, has no leader, or did
// not answer in time.
bool Failover(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

// Worth authenticating again and retrying once: the token expired or was
// revoked, or the server's auth store changed since it was issued (etcd says
// "revision of auth store is old" as INVALID_ARGUMENT; a JWT carries the
// revision, so any user or role change invalidates every token).
bool NeedsNewToken(const grpc::Status& s) {
  if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) return true;
  return s.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
         s.error_message().find("revision") != std::string::npos &&
         s.error_message().find("auth") != std::string::npos;
}

int64_t TtlSeconds(Duration ttl) {
  const auto s = std::chrono::ceil<std::chrono::seconds>(ttl).count();
  return std::max<int64_t>(1, s);
}

// A keepalive stream whose member leaves a keepalive unanswered this long is
// abandoned for the next endpoint (when that keepalive's caller gives up).
constexpr Duration kUnresponsiveMember = std::chrono::milliseconds(250);

// The largest TTL we accept for a grant of `requested` seconds. etcd raises a
// TTL below its minimum (1.5 election timeouts, rounded up: seconds, even with
// slow elections), and never lowers one.
int64_t MaxGrantedTtl(int64_t requested) { return std::max<int64_t>(requested, 3600); }

struct Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<pb::KV::Stub> kv;
  std::unique_ptr<pb::Lease::Stub> lease;
  std::unique_ptr<pb::Watch::Stub> watch;
  std::unique_ptr<pb::Auth::Stub> auth;
};

class KeepAliveStream;
class WatchStream;

// Answers reach the engine on the runtime's loop, never on a gRPC thread: the
// engine may drop its last reference to the store there, and a store must not
// be destroyed (nor its channels) inside one of gRPC's own callbacks.
//
// `published` is released by the caller's thread here and acquired on the
// loop: the hand-off through gRPC's own (uninstrumented) threads is thereby
// visible to ThreadSanitizer as the happens-before it is.
template <typename T>
std::function<void(T)> OnLoop(const std::shared_ptr<Runtime>& runtime,
                              std::function<void(T)> done) {
  auto published = std::make_shared<std::atomic<bool>>(false);
  published->store(true, std::memory_order_release);
  return [runtime, published, done = std::move(done)](T value) mutable {
    runtime->Post([published, done = std::move(done), value = std::move(value)]() mutable {
      (void)published->load(std::memory_order_acquire);
      done(std::move(value));
    });
  };
}

// The same for a watch's on_change.
Task OnLoopTask(Task task) {
  auto published = std::make_shared<std::atomic<bool>>(false);
  published->store(true, std::memory_order_release);
  return [published, task = std::move(task)] {
    (void)published->load(std::memory_order_acquire);
    task();
  };
}

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
    std::mutex m;
    std::condition_variable cv;
    bool done = false;
    stub->async()->Range(&ctx, &req, &resp, [&](grpc::Status) {
      std::lock_guard lock(m);
      done = true;
      cv.notify_all();
    });
    std::unique_lock lock(m);
    cv.wait(lock, [&] { return done; });
  });
}

}  // namespace

struct EtcdStore::State : std::enable_shared_from_this<EtcdStore::State> {
  State(std::shared_ptr<Runtime> rt, EtcdOptions o)
      : runtime(std::move(rt)), clock(runtime->clock()), options(std::move(o)) {
    describe = "etcd://";
    for (size_t i = 0; i < options.endpoints.size(); ++i) {
      describe += (i ? "," : "") + options.endpoints[i];
    }
    describe += "/" + options.key_prefix;
  }

  const std::shared_ptr<Runtime> runtime;
  const Clock& clock;
  const EtcdOptions options;
  std::string describe;
  std::vector<Endpoint> endpoints;
  std::atomic<size_t> current{0};

  std::mutex auth_mu;
  std::string token;  // auth token; empty without auth
  uint64_t token_generation = 0;

  // Sessions: one etcd lease per TTL in seconds.
  struct Session {
    int64_t ttl_s = 0;
    int64_t id = 0;
    bool alive = false;
    bool granting = false;
    Duration ttl{};
    TimePoint anchor{};
    // The raft term of the answer that set `anchor`. An answer from a leader
    // that has been deposed (paused, partitioned) carries an older term than
    // the cluster's: such a renewal may not have happened where it counts.
    uint64_t anchor_term = 0;
    std::vector<std::function<void(Status)>> grant_waiters;
    // Keepalives sent and not yet answered, oldest first: (serial, send time).
    std::deque<std::pair<uint64_t, TimePoint>> in_flight;
  };
  struct SessionInfo {
    int64_t id;
    Duration ttl;
    TimePoint anchor;
    uint64_t term;
  };
  struct KeepAliveAnswer {
    int64_t ttl_s;  // <= 0: the session is gone
    TimePoint anchor;
    uint64_t term;
  };
  using KeepAliveCallback = std::function<void(Result<KeepAliveAnswer>)>;

  mutable std::mutex mu;
  std::map<int64_t, std::shared_ptr<Session>> sessions;  // by ttl_s
  uint64_t next_serial = 0;
  std::unordered_map<uint64_t, std::pair<KeepAliveCallback, TimerId>> ka_waiters;
  KeepAliveStream* ka_stream = nullptr;
  WatchStream* watch_stream = nullptr;
  size_t streams_running = 0;
  std::condition_variable streams_cv;
  bool shutting_down = false;
  std::atomic<uint64_t> cluster_id{0};

  struct Watcher {
    std::string key;
    int64_t start_revision;
    Task on_change;
  };
  std::unordered_map<WatchId, Watcher> watchers;
  WatchId last_watch = 0;

  std::string Key(std::string_view name) const { return options.key_prefix + std::string(name); }
  static std::string Lease(const std::string& name) { return "lease " + Quote(name); }

  FencingToken Token(const std::string& key, int64_t create_revision) const {
    char id[20];
    std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(cluster_id.load()));
    return {"etcd/" + std::string(id) + "/" + std::to_string(create_revision) + "/" + key,
            static_cast<uint64_t>(create_revision)};
  }

  Status Error(const grpc::Status& s, const std::string& what, const Endpoint& e) const {
    return Status(CodeFor(s.error_code()), describe + ": " + what + ": " + s.error_message() +
                                               " (gRPC code " +
                                               std::to_string(static_cast<int>(s.error_code())) +
                                               " from " + e.address + ")");
  }
  // A renewal found the cluster in a newer raft term than the keepalive that
  // set `anchor`: make the next renewal send a fresh keepalive.
  void ForgetAnchor(int64_t session_id, TimePoint anchor) {
    std::lock_guard lock(mu);
    auto s = SessionForId(session_id);
    if (s && s->anchor == anchor) s->anchor = TimePoint{};
  }

  Status Malformed(const std::string& what) const {
    return DataLossError(describe + ": " + what + ": malformed reply from etcd");
  }

  void NoteHeader(const pb::ResponseHeader& h) {
    if (h.cluster_id() != 0) cluster_id.store(h.cluster_id());
  }

  // Sets the deadline and credentials of one call. False if no time is left.
  bool Prepare(grpc::ClientContext& ctx, TimePoint deadline) {
    const Duration left = deadline - clock.Now();
    if (left <= Duration::zero()) return false;
    ctx.set_deadline(gpr_time_from_nanos(left.count(), GPR_TIMESPAN));
    if (!options.username.empty()) {
      std::lock_guard lock(auth_mu);
      if (!token.empty()) ctx.AddMetadata("token", token);
    }
    return true;
  }

  void Rotate(size_t used) {
    size_t expected = used;
    current.compare_exchange_strong(expected, (used + 1) % endpoints.size());
  }

  // Fetches a fresh auth token, then calls `done`.
  void Authenticate(size_t ep, TimePoint deadline, StatusCallback done) {
    struct Call {
      grpc::ClientContext ctx;
      pb::AuthenticateRequest req;
      pb::AuthenticateResponse resp;
    };
    auto call = std::make_shared<Call>();
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
            std::lock_guard lock(self->auth_mu);
            self->token = call->resp.token();
            ++self->token_generation;
          }
          done(Status::Ok());
        });
  }

  bool NeedsToken() {
    if (options.username.empty()) return false;
    std::lock_guard lock(auth_mu);
    return token.empty();
  }

  // One unary RPC with failover to the next endpoint on UNAVAILABLE (while
  // time is left) and one re-authentication on an auth token etcd no longer
  // accepts. `invoke(stub endpoint, ctx, req, resp, cb)` starts it.
  template <typename Req, typename Resp, typename Invoke>
  void Unary(std::string what, Req req, TimePoint deadline, Invoke invoke,
             std::function<void(Result<Resp>)> done, int attempt = 0, bool reauthed = false) {
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
    struct Call {
      grpc::ClientContext ctx;
      Req req;
      Resp resp;
    };
    auto call = std::make_shared<Call>();
    call->req = req;
    if (!Prepare(call->ctx, deadline)) {
      done(DeadlineExceededError(describe + ": " + what + ": deadline passed before the request"));
      return;
    }
    auto self = shared_from_this();
    invoke(endpoints[ep], &call->ctx, &call->req, &call->resp,
           [self, call, ep, what = std::move(what), deadline, invoke, done = std::move(done),
            attempt, reauthed](grpc::Status s) mutable {
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
               {
                 std::lock_guard lock(self->auth_mu);
                 self->token.clear();
               }
               self->Unary<Req, Resp>(std::move(what), std::move(call->req), deadline, invoke,
                                      std::move(done), attempt, true);
               return;
             }
             done(self->Error(s, what, self->endpoints[ep]));
             self->Release(std::move(self));
           });
  }

  // Drops a reference held by a gRPC callback; the last one is dropped on the
  // runtime instead (see OnLoop).
  void Release(std::shared_ptr<State>&& self) {
    if (self.use_count() > 1) {
      self.reset();
      return;
    }
    auto rt = runtime;
    rt->Post([keep = std::move(self)] {});
  }

  void Txn(std::string what, pb::TxnRequest req, TimePoint deadline,
           std::function<void(Result<pb::TxnResponse>)> done) {
    Unary<pb::TxnRequest, pb::TxnResponse>(
        std::move(what), std::move(req), deadline,
        [](Endpoint& e, grpc::ClientContext* c, const pb::TxnRequest* q, pb::TxnResponse* r,
           std::function<void(grpc::Status)> cb) { e.kv->async()->Txn(c, q, r, std::move(cb)); },
        std::move(done));
  }

  // Sessions.
  void GetSession(int64_t ttl_s, TimePoint deadline, std::function<void(Result<SessionInfo>)> done);
  void Grant(const std::shared_ptr<Session>& s, TimePoint deadline);
  void KeepAlive(const std::shared_ptr<Session>& s, TimePoint deadline, KeepAliveCallback done);
  void OnKeepAliveResponse(const pb::LeaseKeepAliveResponse& resp);
  void OnKeepAliveStreamDone(KeepAliveStream* stream, const grpc::Status& status);
  void ExpireKeepAlive(uint64_t serial);
  std::shared_ptr<Session> SessionForId(int64_t id) {
    for (auto& [ttl, s] : sessions) {
      if (s->alive && s->id == id) return s;
    }
    return nullptr;
  }

  // Watches.
  void OnWatchResponse(const pb::WatchResponse& resp);
  void OnWatchStreamDone(WatchStream* stream);
  void StartWatch(WatchId id, const Watcher& w);

  void Shutdown();
};

namespace {

// A bidirectional stream whose writes are queued (one in flight at a time, as
// gRPC requires) and whose answers go to OnResponse. Once the read side has
// ended, gRPC destroys its half of the call before OnDone, so no write may
// start from then on.
template <typename Request, typename Response>
class QueuedBidiStream : public grpc::ClientBidiReactor<Request, Response> {
 public:
  grpc::ClientContext& context() { return ctx_; }
  void Cancel() { ctx_.TryCancel(); }

  void Send(Request req) {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(req));
    if (!writing_ && !done_) {
      writing_ = true;
      this->StartWrite(&queue_.front());
    }
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    queue_.pop_front();
    if (!ok) {
      done_ = true;
      writing_ = false;
      return;
    }
    if (!queue_.empty()) {
      this->StartWrite(&queue_.front());
    } else {
      writing_ = false;
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::lock_guard lock(mu_);
      done_ = true;
      return;
    }
    OnResponse(resp_);
    this->StartRead(&resp_);
  }

 protected:
  virtual void OnResponse(const Response& response) = 0;

  grpc::ClientContext ctx_;
  Response resp_;

 private:
  std::recursive_mutex mu_;  // gRPC may run OnWriteDone inline
  std::deque<Request> queue_;
  bool writing_ = false;
  bool done_ = false;
};

// The one LeaseKeepAlive stream of a store.
class KeepAliveStream final
    : public QueuedBidiStream<pb::LeaseKeepAliveRequest, pb::LeaseKeepAliveResponse> {
 public:
  KeepAliveStream(std::weak_ptr<EtcdStore::State> state, size_t endpoint)
      : state_(std::move(state)), endpoint_(endpoint) {}

  size_t endpoint() const { return endpoint_; }

  void Start(pb::Lease::Stub* stub) {
    stub->async()->LeaseKeepAlive(&ctx_, this);
    StartRead(&resp_);
    StartCall();
  }

  void Send(int64_t id) {
    pb::LeaseKeepAliveRequest req;
    req.set_id(id);
    QueuedBidiStream::Send(std::move(req));
  }

  void OnDone(const grpc::Status& status) override {
    if (auto s = state_.lock()) s->OnKeepAliveStreamDone(this, status);
    delete this;
  }

 private:
  void OnResponse(const pb::LeaseKeepAliveResponse& response) override {
    if (auto s = state_.lock()) s->OnKeepAliveResponse(response);
  }

  std::weak_ptr<EtcdStore::State> state_;
  const size_t endpoint_;
};

// The one Watch stream of a store, multiplexing its watches by watch id.
class WatchStream final : public QueuedBidiStream<pb::WatchRequest, pb::WatchResponse> {
 public:
  explicit WatchStream(std::weak_ptr<EtcdStore::State> state) : state_(std::move(state)) {}

  void Start(pb::Watch::Stub* stub) {
    stub->async()->Watch(&ctx_, this);
    StartRead(&resp_);
    StartCall();
  }

  void OnDone(const grpc::Status&) override {
    if (auto s = state_.lock()) s->OnWatchStreamDone(this);
    delete this;
  }

 private:
  void OnResponse(const pb::WatchResponse& response) override {
    if (auto s = state_.lock()) s->OnWatchResponse(response);
  }

  std::weak_ptr<EtcdStore::State> state_;
};

}  // namespace

void EtcdStore::State::GetSession(int64_t ttl_s, TimePoint deadline,
                                  std::function<void(Result<SessionInfo>)> done) {
  std::unique_lock lock(mu);
  if (shutting_down) {
    lock.unlock();
    done(FailedPreconditionError(describe + ": store is shutting down"));
    return;
  }
  auto& slot = sessions[ttl_s];
  if (!slot) {
    slot = std::make_shared<Session>();
    slot->ttl_s = ttl_s;
  }
  auto s = slot;
  if (s->alive) {
    const SessionInfo info{s->id, s->ttl, s->anchor, s->anchor_term};
    // A session whose last proof of life is old would give a new tenure a
    // short deadline: refresh it first.
    if (clock.Now() - s->anchor < s->ttl / 3) {
      lock.unlock();
      done(info);
      return;
    }
    lock.unlock();
    auto self = shared_from_this();
    KeepAlive(s, deadline, [self, s, ttl_s, deadline, done](Result<KeepAliveAnswer> a) {
      if (!a.ok()) {
        done(a.status());
        return;
      }
      if (a->ttl_s <= 0) {
        self->GetSession(ttl_s, deadline, done);  // it was marked dead: grant anew
        return;
      }
      std::lock_guard lock(self->mu);
      done(SessionInfo{s->id, s->ttl, s->anchor, s->anchor_term});
    });
    return;
  }
  auto self = shared_from_this();
  s->grant_waiters.push_back([self, s, done](Status st) {
    if (!st.ok()) {
      done(st);
      return;
    }
    SessionInfo info;
    {
      std::lock_guard lock(self->mu);
      info = {s->id, s->ttl, s->anchor, s->anchor_term};
    }
    done(info);
  });
  if (s->granting) return;
  s->granting = true;
  lock.unlock();
  Grant(s, deadline);
}

void EtcdStore::State::Grant(const std::shared_ptr<Session>& s, TimePoint deadline) {
  pb::LeaseGrantRequest req;
  req.set_ttl(s->ttl_s);
  const TimePoint sent = clock.Now();
  auto self = shared_from_this();
  Unary<pb::LeaseGrantRequest, pb::LeaseGrantResponse>(
      "grant a session lease of " + std::to_string(s->ttl_s) + "s", std::move(req), deadline,
      [](Endpoint& e, grpc::ClientContext* c, const pb::LeaseGrantRequest* q,
         pb::LeaseGrantResponse* r, std::function<void(grpc::Status)> cb) {
        e.lease->async()->LeaseGrant(c, q, r, std::move(cb));
      },
      [self, s, sent](Result<pb::LeaseGrantResponse> r) {
        Status st;
        if (r.ok()) {
          self->NoteHeader(r->header());
          if (r->id() == 0 || r->ttl() <= 0 || !r->error().empty()) {
            st = self->Malformed("grant a session lease" +
                                 (r->error().empty() ? "" : " (" + r->error() + ")"));
          } else if (r->ttl() > MaxGrantedTtl(s->ttl_s)) {
            // etcd raises a TTL below its minimum (a few election timeouts),
            // never by hours: a reply that does would keep CheckAlive() true
            // long after the lease is gone (or overflow the deadline).
            st = self->Malformed("grant a session lease of " + std::to_string(s->ttl_s) +
                                 "s: granted " + std::to_string(r->ttl()) + "s");
          }
        } else {
          st = r.status();
        }
        std::vector<std::function<void(Status)>> waiters;
        {
          std::lock_guard lock(self->mu);
          s->granting = false;
          if (st.ok()) {
            s->alive = true;
            s->id = r->id();
            s->ttl = std::chrono::seconds(r->ttl());
            s->anchor = sent;
            s->anchor_term = r->header().raft_term();
            s->in_flight.clear();
          }
          waiters.swap(s->grant_waiters);
        }
        for (auto& w : waiters) w(st);
      });
}

void EtcdStore::State::KeepAlive(const std::shared_ptr<Session>& s, TimePoint deadline,
                                 KeepAliveCallback done) {
  if (NeedsToken()) {
    auto self = shared_from_this();
    Authenticate(current.load() % endpoints.size(), deadline,
                 [self, s, deadline, done = std::move(done)](Status st) mutable {
                   if (!st.ok()) {
                     done(st);
                     return;
                   }
                   self->KeepAlive(s, deadline, std::move(done));
                 });
    return;
  }
  std::unique_lock lock(mu);
  if (!s->alive) {
    lock.unlock();
    done(KeepAliveAnswer{0, {}, 0});
    return;
  }
  if (clock.Now() >= deadline) {
    lock.unlock();
    done(DeadlineExceededError(describe + ": keepalive: deadline passed before the request"));
    return;
  }
  KeepAliveStream* stream = ka_stream;
  if (stream == nullptr) {
    const size_t ep = current.load() % endpoints.size();
    stream = new KeepAliveStream(weak_from_this(), ep);
    if (!options.username.empty()) {
      std::lock_guard alock(auth_mu);
      if (!token.empty()) stream->context().AddMetadata("token", token);
    }
    ka_stream = stream;
    ++streams_running;
    stream->Start(endpoints[ep].lease.get());
  }
  const uint64_t serial = ++next_serial;
  s->in_flight.emplace_back(serial, clock.Now());
  auto self = weak_from_this();
  const TimerId timer = runtime->RunAt(deadline, [self, serial] {
    if (auto st = self.lock()) st->ExpireKeepAlive(serial);
  });
  ka_waiters.emplace(serial, std::make_pair(std::move(done), timer));
  stream->Send(s->id);
}

void EtcdStore::State::ExpireKeepAlive(uint64_t serial) {
  KeepAliveCallback cb;
  {
    std::lock_guard lock(mu);
    auto it = ka_waiters.find(serial);
    if (it == ka_waiters.end()) return;
    cb = std::move(it->second.first);
    ka_waiters.erase(it);
    // The member has not answered for a while: start over on the next
    // endpoint. Not for a keepalive whose caller simply had a short budget (a
    // try-acquire of a few ms): tearing the shared stream down would fail
    // every other session's keepalive in flight and leave a healthy member.
    TimePoint sent = TimePoint::max();
    for (const auto& [ttl, session] : sessions) {
      for (const auto& [in_flight_serial, at] : session->in_flight) {
        if (in_flight_serial == serial) sent = at;
      }
    }
    if (ka_stream != nullptr && sent != TimePoint::max() &&
        clock.Now() - sent >= kUnresponsiveMember) {
      Rotate(ka_stream->endpoint());
      ka_stream->Cancel();
    }
  }
  cb(DeadlineExceededError(describe + ": keepalive: no answer before the deadline"));
}

void EtcdStore::State::OnKeepAliveResponse(const pb::LeaseKeepAliveResponse& resp) {
  std::vector<std::pair<KeepAliveCallback, Result<KeepAliveAnswer>>> calls;
  std::vector<TimerId> timers;
  {
    std::lock_guard lock(mu);
    NoteHeader(resp.header());
    auto s = SessionForId(resp.id());
    if (!s || s->in_flight.empty()) return;
    auto [serial, sent] = s->in_flight.front();
    s->in_flight.pop_front();
    const int64_t granted = std::chrono::duration_cast<std::chrono::seconds>(s->ttl).count();
    const bool gone = resp.ttl() <= 0;
    if (gone) {
      s->alive = false;
      // Every keepalive still in flight for it has the same answer.
      while (!s->in_flight.empty()) {
        auto it = ka_waiters.find(s->in_flight.front().first);
        if (it != ka_waiters.end()) {
          timers.push_back(it->second.second);
          calls.emplace_back(std::move(it->second.first),
                             KeepAliveAnswer{0, sent, resp.header().raft_term()});
          ka_waiters.erase(it);
        }
        s->in_flight.pop_front();
      }
    }
    // A keepalive answers with the TTL that was granted: more is garbage (it
    // would stretch the safe deadline past what etcd keeps the key for).
    const bool garbage = !gone && resp.ttl() > granted;
    if (!gone && !garbage && sent >= s->anchor) {
      s->anchor = sent;
      s->anchor_term = resp.header().raft_term();
    }
    auto it = ka_waiters.find(serial);
    if (it != ka_waiters.end()) {
      timers.push_back(it->second.second);
      if (garbage) {
        calls.emplace_back(
            std::move(it->second.first),
            Malformed("keepalive of session lease " + std::to_string(resp.id()) + ": TTL " +
                      std::to_string(resp.ttl()) + "s, granted " + std::to_string(granted) + "s"));
      } else {
        calls.emplace_back(std::move(it->second.first),
                           KeepAliveAnswer{gone ? 0 : resp.ttl(), sent, resp.header().raft_term()});
      }
      ka_waiters.erase(it);
    }
  }
  for (TimerId t : timers) runtime->CancelTimer(t);
  for (auto& [cb, r] : calls) cb(std::move(r));
}

void EtcdStore::State::OnKeepAliveStreamDone(KeepAliveStream* stream, const grpc::Status& status) {
  std::vector<KeepAliveCallback> calls;
  std::vector<TimerId> timers;
  Status st =
      Error(status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream ended") : status,
            "keepalive stream", endpoints[stream->endpoint()]);
  if (st.code() != StatusCode::kUnavailable && st.code() != StatusCode::kDeadlineExceeded &&
      st.code() != StatusCode::kUnauthenticated && st.code() != StatusCode::kPermissionDenied) {
    st = UnavailableError(st.message());
  }
  {
    std::lock_guard lock(mu);
    if (ka_stream == stream) {
      ka_stream = nullptr;
      if (Failover(status.error_code())) Rotate(stream->endpoint());
      if (NeedsNewToken(status)) {
        std::lock_guard alock(auth_mu);
        token.clear();
      }
      for (auto& [ttl, s] : sessions) s->in_flight.clear();
      for (auto& [serial, w] : ka_waiters) {
        calls.push_back(std::move(w.first));
        timers.push_back(w.second);
      }
      ka_waiters.clear();
    }
    --streams_running;
    streams_cv.notify_all();
  }
  for (TimerId t : timers) runtime->CancelTimer(t);
  for (auto& cb : calls) cb(st);
}

void EtcdStore::State::StartWatch(WatchId id, const Watcher& w) {
  // REQUIRES: mu held.
  if (watch_stream == nullptr) {
    const size_t ep = current.load() % endpoints.size();
    watch_stream = new WatchStream(weak_from_this());
    if (!options.username.empty()) {
      std::lock_guard alock(auth_mu);
      if (!token.empty()) watch_stream->context().AddMetadata("token", token);
    }
    ++streams_running;
    watch_stream->Start(endpoints[ep].watch.get());
  }
  pb::WatchRequest req;
  auto* c = req.mutable_create_request();
  c->set_key(w.key);
  c->set_start_revision(w.start_revision);
  c->set_watch_id(static_cast<int64_t>(id));
  watch_stream->Send(std::move(req));
}

void EtcdStore::State::OnWatchResponse(const pb::WatchResponse& resp) {
  const bool fire = !resp.events().empty() || resp.canceled() || resp.compact_revision() != 0;
  if (!fire) return;
  Task task;
  {
    std::lock_guard lock(mu);
    auto it = watchers.find(static_cast<WatchId>(resp.watch_id()));
    if (it == watchers.end()) return;
    task = std::move(it->second.on_change);
    watchers.erase(it);
    if (!resp.canceled() && watch_stream != nullptr) {
      pb::WatchRequest req;
      req.mutable_cancel_request()->set_watch_id(resp.watch_id());
      watch_stream->Send(std::move(req));
    }
  }
  if (task) runtime->Post(std::move(task));
}

void EtcdStore::State::OnWatchStreamDone(WatchStream* stream) {
  std::vector<Task> tasks;
  {
    std::lock_guard lock(mu);
    if (watch_stream == stream) {
      watch_stream = nullptr;
      // Every watch hears "may have changed": its waiter reads again.
      for (auto& [id, w] : watchers) tasks.push_back(std::move(w.on_change));
      watchers.clear();
    }
    --streams_running;
    streams_cv.notify_all();
  }
  for (auto& t : tasks) {
    if (t) runtime->Post(std::move(t));
  }
}

void EtcdStore::State::Shutdown() {
  std::vector<int64_t> ids;
  {
    std::lock_guard lock(mu);
    shutting_down = true;
    for (auto& [ttl, s] : sessions) {
      if (s->alive) ids.push_back(s->id);
    }
  }
  const TimePoint deadline = clock.Now() + options.shutdown_timeout;
  const bool may_block = !runtime->OnLoopThread();
  auto remaining = std::make_shared<std::atomic<size_t>>(ids.size());
  auto done_mu = std::make_shared<std::mutex>();
  auto done_cv = std::make_shared<std::condition_variable>();
  for (int64_t id : ids) {
    pb::LeaseRevokeRequest req;
    req.set_id(id);
    Unary<pb::LeaseRevokeRequest, pb::LeaseRevokeResponse>(
        "revoke session", std::move(req), deadline,
        [](Endpoint& e, grpc::ClientContext* c, const pb::LeaseRevokeRequest* q,
           pb::LeaseRevokeResponse* r, std::function<void(grpc::Status)> cb) {
          e.lease->async()->LeaseRevoke(c, q, r, std::move(cb));
        },
        [remaining, done_mu, done_cv](Result<pb::LeaseRevokeResponse>) {
          std::lock_guard lock(*done_mu);
          --*remaining;
          done_cv->notify_all();
        });
  }
  if (may_block) {
    std::unique_lock lock(*done_mu);
    done_cv->wait_for(lock, options.shutdown_timeout + std::chrono::milliseconds(100),
                      [&] { return remaining->load() == 0; });
  }
  std::unique_lock lock(mu);
  if (ka_stream) ka_stream->Cancel();
  if (watch_stream) watch_stream->Cancel();
  if (may_block) {
    streams_cv.wait_for(lock, std::chrono::seconds(5), [&] { return streams_running == 0; });
  }
}

// ---------------------------------------------------------------------------

Result<std::shared_ptr<EtcdStore>> EtcdStore::Open(EtcdOptions options,
                                                   std::shared_ptr<Runtime> runtime) {
  if (options.endpoints.empty()) {
    return InvalidArgumentError("etcd: endpoints: at least one host:port is required");
  }
  for (const auto& e : options.endpoints) {
    const auto colon = e.rfind(':');
    bool ok = colon != std::string::npos && colon > 0 && colon + 1 < e.size() &&
              e.size() - colon - 1 <= 5;
    if (ok) {
      for (size_t i = colon + 1; i < e.size(); ++i)
        ok = ok && std::isdigit(static_cast<unsigned char>(e[i]));
      ok = ok && std::stoi(e.substr(colon + 1)) > 0 && std::stoi(e.substr(colon + 1)) < 65536;
    }
    for (char c : e) ok = ok && c > 0x20 && c < 0x7f && c != '/' && c != ',';
    if (!ok) {
      return InvalidArgumentError("etcd: endpoints: " + Quote(e) +
                                  " is not host:port with a port in 1..65535");
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
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.tls) {
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
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  if (!runtime) runtime = Runtime::Default();
  PinCallbackQueue();
  auto state = std::make_shared<State>(runtime, std::move(options));
  for (const auto& address : state->options.endpoints) {
    grpc::ChannelArguments args;
    // Reconnect quickly after an outage: the default backoff grows to 2 min.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // A channel per store object (not shared with other stores of the process).
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    Endpoint e;
    e.address = address;
    e.channel = grpc::CreateCustomChannel("dns:///" + address, creds, args);
    e.kv = pb::KV::NewStub(e.channel);
    e.lease = pb::Lease::NewStub(e.channel);
    e.watch = pb::Watch::NewStub(e.channel);
    e.auth = pb::Auth::NewStub(e.channel);
    state->endpoints.push_back(std::move(e));
  }
  if (state->options.dial_timeout > Duration::zero()) {
    const TimePoint until = state->clock.Now() + state->options.dial_timeout;
    bool connected = false;
    // Try every endpoint at once; the first to connect becomes current.
    for (auto& e : state->endpoints) e.channel->GetState(true);
    std::vector<bool> failed(state->endpoints.size(), false);
    while (!connected && state->clock.Now() < until) {
      for (size_t i = 0; i < state->endpoints.size() && !connected; ++i) {
        const auto st = state->endpoints[i].channel->GetState(true);
        if (st == GRPC_CHANNEL_READY) {
          state->current = i;
          connected = true;
        }
        if (st == GRPC_CHANNEL_TRANSIENT_FAILURE) failed[i] = true;
      }
      // Every endpoint kept refusing for a second: say so now, not at the
      // timeout (a loaded machine can fail one early attempt).
      if (std::all_of(failed.begin(), failed.end(), [](bool f) { return f; }) &&
          state->clock.Now() > until - state->options.dial_timeout + std::chrono::seconds(1)) {
        break;
      }
      if (!connected) {
        state->endpoints[0].channel->WaitForStateChange(state->endpoints[0].channel->GetState(true),
                                                        gpr_time_from_millis(20, GPR_TIMESPAN));
      }
    }
    if (!connected) {
      return UnavailableError(state->describe +
                              ": no endpoint accepted a connection (dial timeout " +
                              FormatDuration(state->options.dial_timeout) + ")" +
                              (state->options.tls ? " (TLS: check the CA and certificates)" : ""));
    }
    if (!state->options.username.empty()) {
      std::mutex m;
      std::condition_variable cv;
      std::optional<Status> result;
      state->Authenticate(state->current.load(), state->clock.Now() + state->options.dial_timeout,
                          [&](Status s) {
                            std::lock_guard lock(m);
                            result = s;
                            cv.notify_all();
                          });
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return result.has_value(); });
      if (!result->ok()) return *result;
    }
  }
  return std::shared_ptr<EtcdStore>(new EtcdStore(runtime, std::move(state)));
}

EtcdStore::EtcdStore(std::shared_ptr<Runtime> runtime, std::shared_ptr<State> state)
    : Store(std::move(runtime)), state_(std::move(state)) {}

EtcdStore::~EtcdStore() {
  state_->Shutdown();
  // On a loop thread nothing may block: the state dies with its last request.
  if (runtime()->OnLoopThread()) return;
  // gRPC must not destroy a channel from inside one of its own callbacks: wait
  // (bounded by the requests' deadlines) until the callbacks have dropped
  // their references, so the state dies here.
  for (int i = 0; i < 10000 && state_.use_count() > 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

std::string EtcdStore::Describe() const { return state_->describe; }

StoreCapabilities EtcdStore::capabilities() const { return {.fencing = true, .watch = true}; }

std::string EtcdStore::KeyFor(std::string_view name) const { return state_->Key(name); }

std::vector<int64_t> EtcdStore::SessionIds() const {
  std::lock_guard lock(state_->mu);
  std::vector<int64_t> ids;
  for (auto& [ttl, s] : state_->sessions) {
    if (s->alive) ids.push_back(s->id);
  }
  return ids;
}

namespace {

void AcquireAttempt(std::shared_ptr<EtcdStore::State> st, AcquireRequest request,
                    AcquireCallback done, int attempt) {
  const int64_t ttl_s = TtlSeconds(request.ttl);
  const TimePoint deadline = request.deadline;
  st->GetSession(
      ttl_s, deadline,
      [st, request = std::move(request), done = std::move(done),
       attempt](Result<EtcdStore::State::SessionInfo> info) mutable {
        if (!info.ok()) {
          done(info.status());
          return;
        }
        const std::string key = st->Key(request.name);
        pb::TxnRequest txn;
        auto* cmp = txn.add_compare();
        cmp->set_key(key);
        cmp->set_target(pb::Compare::CREATE);
        cmp->set_result(pb::Compare::EQUAL);
        cmp->set_create_revision(0);
        auto* put = txn.add_success()->mutable_request_put();
        put->set_key(key);
        put->set_value(request.holder);
        put->set_lease(info->id);
        txn.add_failure()->mutable_request_range()->set_key(key);
        const std::string what = "acquire " + EtcdStore::State::Lease(request.name);
        const TimePoint deadline = request.deadline;
        const auto session = *info;
        st->Txn(what, std::move(txn), deadline,
                [st, request = std::move(request), done = std::move(done), attempt, session, key,
                 what](Result<pb::TxnResponse> r) mutable {
                  if (!r.ok()) {
                    if (r.status().code() == StatusCode::kNotFound && attempt < 3) {
                      // "requested lease not found": our session expired; grant a
                      // new one and try once more.
                      {
                        std::lock_guard lock(st->mu);
                        auto s = st->SessionForId(session.id);
                        if (s) s->alive = false;
                      }
                      AcquireAttempt(st, std::move(request), std::move(done), attempt + 1);
                      return;
                    }
                    done(r.status());
                    return;
                  }
                  st->NoteHeader(r->header());
                  if (r->header().raft_term() != session.term) {
                    // The session's last proof of life came from another raft term:
                    // possibly from a deposed leader. Prove it again, then retry
                    // (a put that landed is found again as our own tenure).
                    {
                      std::lock_guard lock(st->mu);
                      auto s = st->SessionForId(session.id);
                      if (s) s->anchor = TimePoint{};
                    }
                    if (attempt < 3) {
                      AcquireAttempt(st, std::move(request), std::move(done), attempt + 1);
                    } else {
                      done(AbortedError(st->describe + ": " + what +
                                        ": the cluster's raft term keeps changing"));
                    }
                    return;
                  }
                  if (r->succeeded()) {
                    if (r->header().revision() <= 0) {
                      done(st->Malformed(what));
                      return;
                    }
                    done(AcquireOutcome(Acquired{st->Token(key, r->header().revision()),
                                                 session.ttl, session.anchor}));
                    return;
                  }
                  if (r->responses_size() != 1 || !r->responses(0).has_response_range()) {
                    done(st->Malformed(what));
                    return;
                  }
                  const auto& range = r->responses(0).response_range();
                  if (range.kvs_size() == 0) {
                    done(AbortedError(st->describe + ": " + what +
                                      ": the key vanished mid-transaction"));
                    return;
                  }
                  const auto& kv = range.kvs(0);
                  if (kv.value() == request.holder && kv.lease() == session.id &&
                      kv.create_revision() > 0) {
                    done(AcquireOutcome(Acquired{st->Token(key, kv.create_revision()), session.ttl,
                                                 session.anchor}));
                    return;
                  }
                  done(AcquireOutcome(
                      Contended{kv.value(), std::to_string(r->header().revision()), std::nullopt}));
                });
      });
}

}  // namespace

void EtcdStore::Acquire(AcquireRequest request, AcquireCallback done) {
  AcquireAttempt(state_, std::move(request), OnLoop(runtime(), std::move(done)), 0);
}

void EtcdStore::Renew(std::vector<RenewRequest> batch, RenewCallback done) {
  auto st = state_;
  // Phase 1: one keepalive per session (or a fresh enough answer). Phase 2,
  // after every answer: read the keys, ≤ kMaxOpsPerTxn per transaction. The
  // reads are linearizable, so their raft term is the cluster's: a keepalive
  // answered in an older term may come from a deposed leader and counts for
  // nothing.
  struct Join {
    std::mutex mu;
    std::vector<RenewRequest> batch;
    std::map<int64_t, Result<State::KeepAliveAnswer>> answers;    // by ttl_s
    std::map<int64_t, int64_t> session_id;                        // by ttl_s
    std::vector<std::optional<Result<RenewOutcome>>> key_result;  // set: final
    std::vector<int64_t> key_lease;
    std::vector<uint64_t> key_term;
    size_t pending = 0;
    RenewCallback done;
  };
  auto join = std::make_shared<Join>();
  const size_t n = batch.size();
  join->key_result.resize(n);
  join->key_lease.assign(n, 0);
  join->key_term.assign(n, 0);
  join->done = OnLoop(runtime(), std::move(done));
  TimePoint deadline = TimePoint::max();
  for (const auto& r : batch) deadline = std::min(deadline, r.deadline);
  join->batch = std::move(batch);

  std::map<int64_t, std::shared_ptr<State::Session>> sessions;
  {
    std::lock_guard lock(st->mu);
    const TimePoint now = st->clock.Now();
    for (const auto& r : join->batch) {
      const int64_t ttl_s = TtlSeconds(r.ttl);
      auto it = st->sessions.find(ttl_s);
      if (it == st->sessions.end() || !it->second->alive) continue;
      const auto& s = it->second;
      join->session_id[ttl_s] = s->id;
      // A keepalive of this session answered within the last TTL/10 proves it
      // alive as well as a new one would, from an earlier (safer) anchor; and
      // leases renewed from one anchor fall due together again, so the batches
      // of a store converge instead of each sending a keepalive of its own.
      if (now - s->anchor < s->ttl / 10) {
        join->answers.emplace(
            ttl_s,
            State::KeepAliveAnswer{std::chrono::duration_cast<std::chrono::seconds>(s->ttl).count(),
                                   s->anchor, s->anchor_term});
        continue;
      }
      sessions[ttl_s] = s;
    }
  }

  auto finish = [join, st] {
    std::vector<Result<RenewOutcome>> results;
    results.reserve(join->batch.size());
    {
      std::lock_guard lock(join->mu);
      for (size_t i = 0; i < join->batch.size(); ++i) {
        const auto& req = join->batch[i];
        const int64_t ttl_s = TtlSeconds(req.ttl);
        const std::string what = st->describe + ": " + State::Lease(req.name);
        auto a = join->answers.find(ttl_s);
        if (a == join->answers.end()) {
          results.emplace_back(
              RenewOutcome(Lost{LossReason::kExpired, what + ": its session is gone"}));
        } else if (!a->second.ok()) {
          results.emplace_back(a->second.status());
        } else if (a->second->ttl_s <= 0) {
          results.emplace_back(RenewOutcome(Lost{
              LossReason::kExpired, what + ": etcd says its session lease " +
                                        std::to_string(join->session_id[ttl_s]) + " has expired"}));
        } else if (join->key_result[i]) {
          results.push_back(*join->key_result[i]);
        } else if (join->key_lease[i] != join->session_id[ttl_s]) {
          results.emplace_back(RenewOutcome(
              Lost{LossReason::kTakenOver, what + ": the key is attached to another etcd lease"}));
        } else if (join->key_term[i] != a->second->term) {
          // The retry must send a keepalive of its own, not reuse this anchor.
          st->ForgetAnchor(join->session_id[ttl_s], a->second->anchor);
          results.emplace_back(
              UnavailableError(what + ": the keepalive was answered in raft term " +
                               std::to_string(a->second->term) + " but the cluster is in term " +
                               std::to_string(join->key_term[i]) + " (a deposed leader?)"));
        } else {
          results.emplace_back(
              RenewOutcome(Renewed{std::chrono::seconds(a->second->ttl_s), a->second->anchor}));
        }
      }
    }
    join->done(std::move(results));
  };

  auto read_keys = [join, st, deadline, finish] {
    const size_t n = join->batch.size();
    std::vector<std::pair<size_t, size_t>> chunks;  // [begin, end)
    for (size_t b = 0; b < n; b += kMaxOpsPerTxn)
      chunks.emplace_back(b, std::min(n, b + kMaxOpsPerTxn));
    {
      std::lock_guard lock(join->mu);
      join->pending = chunks.size();
    }
    for (auto [b, e] : chunks) {
      pb::TxnRequest txn;
      for (size_t i = b; i < e; ++i) {
        txn.add_success()->mutable_request_range()->set_key(st->Key(join->batch[i].name));
      }
      st->Txn("verify " + std::to_string(e - b) + " held key(s)", std::move(txn), deadline,
              [join, finish, st, b = b, e = e](Result<pb::TxnResponse> r) {
                bool last;
                {
                  std::lock_guard lock(join->mu);
                  const bool shape_ok =
                      r.ok() && r->succeeded() && r->responses_size() == static_cast<int>(e - b);
                  for (size_t i = b; i < e; ++i) {
                    const auto& req = join->batch[i];
                    const std::string what = st->describe + ": " + State::Lease(req.name);
                    if (!r.ok()) {
                      join->key_result[i] = r.status();
                      continue;
                    }
                    if (!shape_ok || !r->responses(static_cast<int>(i - b)).has_response_range()) {
                      join->key_result[i] = st->Malformed("verify " + State::Lease(req.name));
                      continue;
                    }
                    const auto& range = r->responses(static_cast<int>(i - b)).response_range();
                    if (range.kvs_size() == 0) {
                      join->key_result[i] =
                          RenewOutcome(Lost{LossReason::kDeleted, what + ": the key is gone"});
                      continue;
                    }
                    const auto& kv = range.kvs(0);
                    if (static_cast<uint64_t>(kv.create_revision()) != req.token.sequence) {
                      join->key_result[i] =
                          RenewOutcome(Lost{LossReason::kTakenOver,
                                            what + ": the key was recreated (create revision " +
                                                std::to_string(kv.create_revision()) + ", ours " +
                                                std::to_string(req.token.sequence) + ")"});
                      continue;
                    }
                    join->key_lease[i] = kv.lease();
                    join->key_term[i] = r->header().raft_term();
                  }
                  last = --join->pending == 0;
                }
                if (last) finish();
              });
    }
  };

  {
    std::lock_guard lock(join->mu);
    join->pending = sessions.size() + 1;
  }
  auto keepalive_done = [join, read_keys] {
    bool last;
    {
      std::lock_guard lock(join->mu);
      last = --join->pending == 0;
    }
    if (last) read_keys();
  };
  for (auto& [ttl_s, s] : sessions) {
    st->KeepAlive(s, deadline,
                  [join, keepalive_done, ttl_s = ttl_s](Result<State::KeepAliveAnswer> a) {
                    {
                      std::lock_guard lock(join->mu);
                      join->answers.emplace(ttl_s, std::move(a));
                    }
                    keepalive_done();
                  });
  }
  keepalive_done();
}

void EtcdStore::Release(ReleaseRequest request, StatusCallback done) {
  auto st = state_;
  done = OnLoop(runtime(), std::move(done));
  const std::string key = st->Key(request.name);
  pb::TxnRequest txn;
  auto* cmp = txn.add_compare();
  cmp->set_key(key);
  cmp->set_target(pb::Compare::CREATE);
  cmp->set_result(pb::Compare::EQUAL);
  cmp->set_create_revision(static_cast<int64_t>(request.token.sequence));
  txn.add_success()->mutable_request_delete_range()->set_key(key);
  st->Txn("release " + State::Lease(request.name), std::move(txn), request.deadline,
          [done = std::move(done)](Result<pb::TxnResponse> r) {
            done(r.ok() ? Status::Ok() : r.status());
          });
}

void EtcdStore::Inspect(std::string name, TimePoint deadline, InspectCallback done) {
  auto st = state_;
  done = OnLoop(runtime(), std::move(done));
  pb::RangeRequest req;
  const std::string key = st->Key(name);
  req.set_key(key);
  const std::string what = "inspect " + State::Lease(name);
  st->Unary<pb::RangeRequest, pb::RangeResponse>(
      what, std::move(req), deadline,
      [](Endpoint& e, grpc::ClientContext* c, const pb::RangeRequest* q, pb::RangeResponse* r,
         std::function<void(grpc::Status)> cb) { e.kv->async()->Range(c, q, r, std::move(cb)); },
      [st, name, key, deadline, what, done = std::move(done)](Result<pb::RangeResponse> r) {
        if (!r.ok()) {
          done(r.status());
          return;
        }
        st->NoteHeader(r->header());
        if (r->kvs_size() == 0) {
          done(NotFoundError(st->describe + ": " + what + ": no such lease"));
          return;
        }
        const auto& kv = r->kvs(0);
        LeaseRecord rec;
        rec.name = name;
        rec.holder = kv.value();
        rec.token = st->Token(key, kv.create_revision());
        rec.version = std::to_string(r->header().revision());
        if (kv.lease() == 0) {
          done(rec);  // a key without a lease: held until deleted
          return;
        }
        pb::LeaseTimeToLiveRequest q;
        q.set_id(kv.lease());
        st->Unary<pb::LeaseTimeToLiveRequest, pb::LeaseTimeToLiveResponse>(
            what + " (session time to live)", std::move(q), deadline,
            [](Endpoint& e, grpc::ClientContext* c, const pb::LeaseTimeToLiveRequest* q,
               pb::LeaseTimeToLiveResponse* r, std::function<void(grpc::Status)> cb) {
              e.lease->async()->LeaseTimeToLive(c, q, r, std::move(cb));
            },
            [rec = std::move(rec), done](Result<pb::LeaseTimeToLiveResponse> t) mutable {
              if (!t.ok()) {
                done(t.status());
                return;
              }
              if (t->ttl() > 0) rec.remaining = std::chrono::seconds(t->ttl());
              done(std::move(rec));
            });
      });
}

void EtcdStore::Break(std::string name, TimePoint deadline, StatusCallback done) {
  auto st = state_;
  done = OnLoop(runtime(), std::move(done));
  pb::DeleteRangeRequest req;
  req.set_key(st->Key(name));
  st->Unary<pb::DeleteRangeRequest, pb::DeleteRangeResponse>(
      "break " + State::Lease(name), std::move(req), deadline,
      [](Endpoint& e, grpc::ClientContext* c, const pb::DeleteRangeRequest* q,
         pb::DeleteRangeResponse* r, std::function<void(grpc::Status)> cb) {
        e.kv->async()->DeleteRange(c, q, r, std::move(cb));
      },
      [done = std::move(done)](Result<pb::DeleteRangeResponse> r) {
        done(r.ok() ? Status::Ok() : r.status());
      });
}

WatchId EtcdStore::Watch(const std::string& name, const std::string& version, Task on_change) {
  auto st = state_;
  int64_t revision = 0;
  bool valid = !version.empty() && version.size() < 19;
  for (char c : version) valid = valid && std::isdigit(static_cast<unsigned char>(c));
  if (valid) revision = std::stoll(version);
  // Without a revision to watch from, a change could be missed: the engine
  // polls instead.
  if (!valid || revision <= 0) return 0;
  std::unique_lock lock(st->mu);
  if (st->shutting_down) return 0;
  const WatchId id = ++st->last_watch;
  State::Watcher w{st->Key(name), revision + 1, OnLoopTask(std::move(on_change))};
  st->StartWatch(id, w);
  st->watchers.emplace(id, std::move(w));
  return id;
}

void EtcdStore::CancelWatch(WatchId id) noexcept {
  Task dropped;
  std::lock_guard lock(state_->mu);
  auto it = state_->watchers.find(id);
  if (it == state_->watchers.end()) return;
  dropped = std::move(it->second.on_change);
  state_->watchers.erase(it);
  if (state_->watch_stream != nullptr) {
    pb::WatchRequest req;
    req.mutable_cancel_request()->set_watch_id(static_cast<int64_t>(id));
    state_->watch_stream->Send(std::move(req));
  }
}

Status EtcdStore::FencedTxn(const FencingToken& token, const std::string& name,
                            std::vector<EtcdWrite> writes, TimePoint deadline) {
  auto st = state_;
  const std::string key = st->Key(name);
  // The compare below checks the create revision only: make sure the token is
  // one of this lease on this cluster (keys created in one transaction share a
  // revision, and another cluster's revisions mean nothing here).
  if (token.value != st->Token(key, static_cast<int64_t>(token.sequence)).value) {
    return InvalidArgumentError(st->describe + ": fenced write under " + State::Lease(name) +
                                ": the token \"" + token.value.substr(0, 200) +
                                "\" is not a token of this lease on this cluster");
  }
  pb::TxnRequest txn;
  auto* cmp = txn.add_compare();
  cmp->set_key(key);
  cmp->set_target(pb::Compare::CREATE);
  cmp->set_result(pb::Compare::EQUAL);
  cmp->set_create_revision(static_cast<int64_t>(token.sequence));
  for (auto& w : writes) {
    if (w.key.empty()) return InvalidArgumentError(st->describe + ": fenced write: empty key");
    if (w.kind == EtcdWrite::Kind::kPut) {
      auto* put = txn.add_success()->mutable_request_put();
      put->set_key(std::move(w.key));
      put->set_value(std::move(w.value));
    } else {
      txn.add_success()->mutable_request_delete_range()->set_key(std::move(w.key));
    }
  }
  std::mutex m;
  std::condition_variable cv;
  std::optional<Status> result;
  st->Txn("fenced write under " + State::Lease(name), std::move(txn), deadline,
          [&, name](Result<pb::TxnResponse> r) {
            Status s;
            if (!r.ok()) {
              s = r.status();
            } else if (!r->succeeded()) {
              s = FailedPreconditionError(st->describe + ": " + State::Lease(name) +
                                          ": lease no longer held (create revision is not " +
                                          std::to_string(token.sequence) + ")");
            }
            std::lock_guard lock(m);
            result = s;
            cv.notify_all();
          });
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return result.has_value(); });
  return *result;
}

}  // namespace leasehold
