// The store operations of the etcd backend. The transport, sessions, watches
// and transactions they use live beside this file (etcd_*.h).
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include "etcd_session.h"
#include "etcd_state.h"
#include "etcd_transport.h"
#include "etcd_txn.h"
#include "etcd_watch.h"
#include "leasehold/backends/etcd.h"
#include "leasehold/clock.h"
#include "leasehold/detail/handover.h"
#include "leasehold/future.h"

namespace leasehold {
namespace {

namespace pb = etcd::pb;
using etcd::Endpoint;
using etcd::KeepAliveAnswer;
using etcd::Session;
using etcd::SessionInfo;
using etcd::State;
using etcd::TtlSeconds;

// How long past its shutdown deadline a store waits for the calls and streams
// it cancelled to come back: cancellations are local, so this covers only a
// busy machine's scheduling.
constexpr Duration kShutdownGrace = std::chrono::milliseconds(250);

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

}  // namespace

FencingToken etcd::State::Token(const std::string& key, int64_t create_revision) const {
  char id[20];
  std::snprintf(id, sizeof id, "%016llx", static_cast<unsigned long long>(cluster_id.load()));
  return {"etcd/" + std::string(id) + "/" + std::to_string(create_revision) + "/" + key,
          static_cast<uint64_t>(create_revision)};
}

TimePoint etcd::State::Shutdown() {
  std::vector<int64_t> ids;
  {
    std::lock_guard lock(mu);
    shutting_down = true;
    for (auto& [ttl, s] : sessions) {
      if (s->alive) ids.push_back(s->id);
    }
  }
  // One deadline for the whole shutdown: the revocations get until then;
  // then every call and stream still out is cancelled, and the destructor
  // waits past it only for the cancellations to come back (kShutdownGrace).
  const TimePoint deadline = clock.Now() + options.shutdown_timeout;
  const bool may_block = runtime->MayBlock();
  Promise<bool> revoked(runtime);
  if (ids.empty()) revoked.Set(true);
  auto remaining = std::make_shared<std::atomic<size_t>>(ids.size());
  for (int64_t id : ids) {
    pb::LeaseRevokeRequest req;
    req.set_id(id);
    Call("revoke session", std::move(req), deadline, &Endpoint::lease,
         &pb::Lease::Stub::async::LeaseRevoke,
         [remaining, revoked](Result<pb::LeaseRevokeResponse>) mutable {
           if (remaining->fetch_sub(1) == 1) revoked.Set(true);
         });
  }
  if (may_block) {
    (void)revoked.future().WaitFor(deadline - clock.Now());
    CancelCalls();
  }
  // (On a loop thread nothing waits: the revocations and the calls still out
  // end by their own deadlines, the revocations' being this one.)
  std::optional<Future<bool>> streams_ended;
  {
    std::lock_guard lock(mu);
    if (ka_stream) ka_stream->Cancel();
    if (watch_stream) watch_stream->Cancel();
    if (streams_running > 0) {
      streams_idle.emplace(runtime);
      streams_ended = streams_idle->future();
    }
  }
  if (may_block && streams_ended) {
    (void)streams_ended->WaitFor(std::max(deadline - clock.Now(), Duration::zero()) +
                                 kShutdownGrace);
  }
  return deadline;
}

void etcd::State::StreamEnded() {
  if (--streams_running == 0 && streams_idle) streams_idle->Set(true);
}

// ---------------------------------------------------------------------------

Result<std::shared_ptr<EtcdStore>> EtcdStore::Open(EtcdOptions options,
                                                   std::shared_ptr<Runtime> runtime) {
  if (Status s = etcd::ValidateOptions(options); !s.ok()) return s;
  auto creds = etcd::Credentials(options);
  if (!creds.ok()) return creds.status();
  if (!runtime) runtime = Runtime::Default();
  etcd::PinCallbackQueue();
  // Shared so that the destructor can take the last reference over.
  std::shared_ptr<State> state =
      detail::Handover<State>::Share(std::make_unique<State>(runtime, std::move(options)));
  state->CreateEndpoints(*creds);
  if (state->options.dial_timeout > Duration::zero()) {
    if (Status s = state->Dial(); !s.ok()) return s;
  }
  return std::shared_ptr<EtcdStore>(new EtcdStore(runtime, std::move(state)));
}

EtcdStore::EtcdStore(std::shared_ptr<Runtime> runtime, std::shared_ptr<State> state)
    : Store(std::move(runtime)), state_(std::move(state)) {}

EtcdStore::~EtcdStore() {
  const TimePoint deadline = state_->Shutdown();
  // On a loop thread nothing may block: the state dies with its last request.
  if (runtime()->OnLoopThread()) return;
  // gRPC must not destroy a channel from inside one of its own callbacks: wait
  // until the callbacks -- cancelled by Shutdown -- have dropped their
  // references, so the state dies here. Past the shutdown deadline (and the
  // grace for the cancellations) the wait ends anyway: the last reference
  // is then dropped on the runtime's loop (Transport::Release), never inside
  // a gRPC callback.
  const Duration left = std::max(deadline - state_->clock.Now(), Duration::zero());
  detail::Handover<State>::AwaitLast(std::move(state_), left + kShutdownGrace);
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

// --- Acquire ---------------------------------------------------------------

namespace {

// Attempts after the first that an acquire may make: after its session
// expired under it, or while the raft term changes under it.
constexpr int kMaxAcquireRetries = 3;

void AcquireAttempt(std::shared_ptr<etcd::State> st, AcquireRequest request, AcquireCallback done,
                    int attempt);

// Whether a transaction that failed with `code` may or may not have been
// applied (its answer lost, or its deadline passed after etcd took it).
bool Unconfirmed(StatusCode code) {
  return code == StatusCode::kUnavailable || code == StatusCode::kDeadlineExceeded;
}

// The answer to the acquire transaction sent with `session`.
void OnAcquireAnswer(const std::shared_ptr<etcd::State>& st, AcquireRequest request,
                     AcquireCallback done, int attempt, const SessionInfo& session,
                     const std::string& key, const std::string& what, TimePoint sent,
                     Result<pb::TxnResponse> r) {
  if (!r.ok()) {
    if (r.status().code() == StatusCode::kNotFound && attempt < kMaxAcquireRetries) {
      // "requested lease not found": our session expired; grant a new one and
      // try once more.
      {
        std::lock_guard lock(st->mu);
        auto s = st->SessionForId(session.id);
        if (s) s->alive = false;
      }
      AcquireAttempt(st, std::move(request), std::move(done), attempt + 1);
      return;
    }
    if (Unconfirmed(r.status().code())) {
      // The put may land after all, as late as a request can (the engine's
      // settling bound: its deadline plus its own length again); the
      // conditional delete goes out only once it has landed or never will.
      st->NoteLeftover({key, 0}, {.holder = request.holder,
                                  .session = session.id,
                                  .not_before = request.deadline + (request.deadline - sent)});
    }
    done(r.status());
    return;
  }
  st->NoteHeader(r->header());
  if (r->header().raft_term() != session.term) {
    // The session's last proof of life came from another raft term: possibly
    // from a deposed leader. Prove it again, then retry (a put that landed is
    // found again as our own tenure).
    {
      std::lock_guard lock(st->mu);
      auto s = st->SessionForId(session.id);
      if (s) s->anchor = TimePoint{};
    }
    if (attempt < kMaxAcquireRetries) {
      AcquireAttempt(st, std::move(request), std::move(done), attempt + 1);
    } else {
      done(AbortedError(st->describe + ": " + what + ": the cluster's raft term keeps changing"));
    }
    return;
  }
  if (r->succeeded()) {
    if (r->header().revision() <= 0) {
      done(st->Malformed(what));
      return;
    }
    done(AcquireOutcome(
        Acquired{st->Token(key, r->header().revision()), session.ttl, session.anchor}));
    return;
  }
  if (r->responses_size() != 1 || !r->responses(0).has_response_range()) {
    done(st->Malformed(what));
    return;
  }
  const auto& range = r->responses(0).response_range();
  if (range.kvs_size() == 0) {
    done(AbortedError(st->describe + ": " + what + ": the key vanished mid-transaction"));
    return;
  }
  const auto& kv = range.kvs(0);
  // Already ours: this holder's key on this session (such as the put of an
  // earlier attempt that landed).
  if (kv.value() == request.holder && kv.lease() == session.id && kv.create_revision() > 0) {
    done(AcquireOutcome(
        Acquired{st->Token(key, kv.create_revision()), session.ttl, session.anchor}));
    return;
  }
  done(AcquireOutcome(Contended{kv.value(), std::to_string(r->header().revision()), std::nullopt}));
}

void AcquireAttempt(std::shared_ptr<etcd::State> st, AcquireRequest request, AcquireCallback done,
                    int attempt) {
  const int64_t ttl_s = TtlSeconds(request.ttl);
  const TimePoint deadline = request.deadline;
  st->GetSession(
      ttl_s, deadline,
      [st, request = std::move(request), done = std::move(done),
       attempt](Result<SessionInfo> info) mutable {
        if (!info.ok()) {
          done(info.status());
          return;
        }
        std::string key = st->Key(request.name);
        pb::TxnRequest txn = etcd::AcquireTxn(key, request.holder, info->id);
        std::string what = "acquire " + etcd::State::Lease(request.name);
        const TimePoint deadline = request.deadline;
        const TimePoint sent = st->clock.Now();
        st->Txn(what, std::move(txn), deadline,
                [st, request = std::move(request), done = std::move(done), attempt, session = *info,
                 key = std::move(key), what, sent](Result<pb::TxnResponse> r) mutable {
                  OnAcquireAnswer(st, std::move(request), std::move(done), attempt, session, key,
                                  what, sent, std::move(r));
                });
      });
}

}  // namespace

void EtcdStore::Acquire(AcquireRequest request, AcquireCallback done) {
  const std::string key = state_->Key(request.name);
  const std::string holder = request.holder;
  state_->ClaimLeftover(key, holder,
                        [st = state_, request = std::move(request),
                         done = OnLoop(runtime(), std::move(done))]() mutable {
                          AcquireAttempt(std::move(st), std::move(request), std::move(done), 0);
                        });
}

// --- Renew -----------------------------------------------------------------

namespace {

// One Renew call, in phases. Phase 1: one keepalive per session (or a fresh
// enough answer). Phase 2, after every answer: read the keys, at most
// kMaxOpsPerTxn per transaction. Then each lease's outcome follows from both.
// The reads are linearizable, so their raft term is the cluster's: a keepalive
// answered in an older term may come from a deposed leader and counts for
// nothing.
class RenewBatch : public std::enable_shared_from_this<RenewBatch> {
 public:
  RenewBatch(std::shared_ptr<etcd::State> st, std::vector<RenewRequest> batch, RenewCallback done)
      : st_(std::move(st)), done_(std::move(done)) {
    const size_t n = batch.size();
    key_result_.resize(n);
    key_lease_.assign(n, 0);
    key_term_.assign(n, 0);
    for (const auto& r : batch) deadline_ = std::min(deadline_, r.deadline);
    batch_ = std::move(batch);
  }

  void Start() { SendKeepAlives(SessionsToProve()); }

 private:
  // Phase 1. Records the answers that need no keepalive; returns the sessions
  // that do, by ttl_s.
  std::map<int64_t, std::shared_ptr<Session>> SessionsToProve();
  void SendKeepAlives(const std::map<int64_t, std::shared_ptr<Session>>& sessions);
  void KeepAliveDone();

  // Phase 2.
  void ReadKeys();
  void OnKeysRead(size_t begin, size_t end, const Result<pb::TxnResponse>& r);

  // The outcomes.
  void Finish();
  Result<RenewOutcome> OutcomeFor(size_t i);  // REQUIRES: mu_ held

  const std::shared_ptr<etcd::State> st_;
  const RenewCallback done_;
  TimePoint deadline_ = TimePoint::max();  // the earliest of the batch

  std::mutex mu_;
  std::vector<RenewRequest> batch_;
  std::map<int64_t, Result<KeepAliveAnswer>> answers_;           // by ttl_s
  std::map<int64_t, int64_t> session_id_;                        // by ttl_s
  std::vector<std::optional<Result<RenewOutcome>>> key_result_;  // set: final
  std::vector<int64_t> key_lease_;
  std::vector<uint64_t> key_term_;
  size_t pending_ = 0;  // keepalives, then reads, not yet answered
};

std::map<int64_t, std::shared_ptr<Session>> RenewBatch::SessionsToProve() {
  std::map<int64_t, std::shared_ptr<Session>> sessions;
  std::lock_guard lock(st_->mu);
  const TimePoint now = st_->clock.Now();
  for (const auto& r : batch_) {
    const int64_t ttl_s = TtlSeconds(r.ttl);
    auto it = st_->sessions.find(ttl_s);
    if (it == st_->sessions.end() || !it->second->alive) continue;
    const auto& s = it->second;
    session_id_[ttl_s] = s->id;
    // A keepalive of this session answered within the last TTL/10 proves it
    // alive as well as a new one would, from an earlier (safer) anchor; and
    // leases renewed from one anchor fall due together again, so the batches
    // of a store converge instead of each sending a keepalive of its own.
    if (now - s->anchor < s->ttl / 10) {
      answers_.emplace(
          ttl_s, KeepAliveAnswer{std::chrono::duration_cast<std::chrono::seconds>(s->ttl).count(),
                                 s->anchor, s->anchor_term});
      continue;
    }
    sessions[ttl_s] = s;
  }
  return sessions;
}

void RenewBatch::SendKeepAlives(const std::map<int64_t, std::shared_ptr<Session>>& sessions) {
  {
    std::lock_guard lock(mu_);
    pending_ = sessions.size() + 1;  // + 1: this loop itself
  }
  auto self = shared_from_this();
  for (auto& [ttl_s, s] : sessions) {
    st_->KeepAlive(s, deadline_, [self, ttl_s = ttl_s](Result<KeepAliveAnswer> a) {
      {
        std::lock_guard lock(self->mu_);
        self->answers_.emplace(ttl_s, std::move(a));
      }
      self->KeepAliveDone();
    });
  }
  KeepAliveDone();
}

void RenewBatch::KeepAliveDone() {
  bool last;
  {
    std::lock_guard lock(mu_);
    last = --pending_ == 0;
  }
  if (last) ReadKeys();
}

void RenewBatch::ReadKeys() {
  const size_t n = batch_.size();
  std::vector<std::pair<size_t, size_t>> chunks;  // [begin, end)
  for (size_t b = 0; b < n; b += etcd::kMaxOpsPerTxn) {
    chunks.emplace_back(b, std::min(n, b + etcd::kMaxOpsPerTxn));
  }
  {
    std::lock_guard lock(mu_);
    pending_ = chunks.size();
  }
  auto self = shared_from_this();
  for (auto [b, e] : chunks) {
    std::vector<std::string> keys;
    for (size_t i = b; i < e; ++i) keys.push_back(st_->Key(batch_[i].name));
    st_->Txn("verify " + std::to_string(e - b) + " held key(s)", etcd::ReadTxn(keys), deadline_,
             [self, b = b, e = e](Result<pb::TxnResponse> r) { self->OnKeysRead(b, e, r); });
  }
}

void RenewBatch::OnKeysRead(size_t begin, size_t end, const Result<pb::TxnResponse>& r) {
  bool last;
  {
    std::lock_guard lock(mu_);
    const bool shape_ok =
        r.ok() && r->succeeded() && r->responses_size() == static_cast<int>(end - begin);
    for (size_t i = begin; i < end; ++i) {
      const auto& req = batch_[i];
      const std::string what = st_->describe + ": " + etcd::State::Lease(req.name);
      if (!r.ok()) {
        key_result_[i] = r.status();
        continue;
      }
      if (!shape_ok || !r->responses(static_cast<int>(i - begin)).has_response_range()) {
        key_result_[i] = st_->Malformed("verify " + etcd::State::Lease(req.name));
        continue;
      }
      const auto& range = r->responses(static_cast<int>(i - begin)).response_range();
      if (range.kvs_size() == 0) {
        key_result_[i] = RenewOutcome(Lost{LossReason::kDeleted, what + ": the key is gone"});
        continue;
      }
      const auto& kv = range.kvs(0);
      if (static_cast<uint64_t>(kv.create_revision()) != req.token.sequence) {
        key_result_[i] = RenewOutcome(
            Lost{LossReason::kTakenOver, what + ": the key was recreated (create revision " +
                                             std::to_string(kv.create_revision()) + ", ours " +
                                             std::to_string(req.token.sequence) + ")"});
        continue;
      }
      key_lease_[i] = kv.lease();
      key_term_[i] = r->header().raft_term();
    }
    last = --pending_ == 0;
  }
  if (last) Finish();
}

Result<RenewOutcome> RenewBatch::OutcomeFor(size_t i) {
  const auto& req = batch_[i];
  const int64_t ttl_s = TtlSeconds(req.ttl);
  const std::string what = st_->describe + ": " + etcd::State::Lease(req.name);
  auto a = answers_.find(ttl_s);
  if (a == answers_.end()) {
    return RenewOutcome(Lost{LossReason::kExpired, what + ": its session is gone"});
  }
  if (!a->second.ok()) return a->second.status();
  if (a->second->ttl_s <= 0) {
    return RenewOutcome(Lost{LossReason::kExpired, what + ": etcd says its session lease " +
                                                       std::to_string(session_id_[ttl_s]) +
                                                       " has expired"});
  }
  if (key_result_[i]) return *key_result_[i];
  if (key_lease_[i] != session_id_[ttl_s]) {
    return RenewOutcome(
        Lost{LossReason::kTakenOver, what + ": the key is attached to another etcd lease"});
  }
  if (key_term_[i] != a->second->term) {
    // The retry must send a keepalive of its own, not reuse this anchor.
    st_->ForgetAnchor(session_id_[ttl_s], a->second->anchor);
    return UnavailableError(what + ": the keepalive was answered in raft term " +
                            std::to_string(a->second->term) + " but the cluster is in term " +
                            std::to_string(key_term_[i]) + " (a deposed leader?)");
  }
  return RenewOutcome(Renewed{std::chrono::seconds(a->second->ttl_s), a->second->anchor});
}

void RenewBatch::Finish() {
  std::vector<Result<RenewOutcome>> results;
  results.reserve(batch_.size());
  {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < batch_.size(); ++i) results.push_back(OutcomeFor(i));
  }
  done_(std::move(results));
}

}  // namespace

void EtcdStore::Renew(std::vector<RenewRequest> batch, RenewCallback done) {
  std::make_shared<RenewBatch>(state_, std::move(batch), OnLoop(runtime(), std::move(done)))
      ->Start();
}

// --- Release, Inspect, Break -----------------------------------------------

void EtcdStore::Release(ReleaseRequest request, StatusCallback done) {
  auto st = state_;
  done = OnLoop(runtime(), std::move(done));
  const auto sequence = static_cast<int64_t>(request.token.sequence);
  std::string key = st->Key(request.name);
  st->Txn("release " + State::Lease(request.name), etcd::ReleaseTxn(key, sequence),
          request.deadline, [st, key, sequence, done = std::move(done)](Result<pb::TxnResponse> r) {
            // Unconfirmed: the key may live on with its session; the caller
            // hears the failure, and the delete goes on in the background.
            if (!r.ok() && Unconfirmed(r.status().code())) {
              st->NoteLeftover({key, sequence}, {});
            }
            done(r.ok() ? Status::Ok() : r.status());
          });
}

namespace {

// The end of etcd's range of keys that start with `prefix` ("\0": every key
// from the start on, when no key is greater than all of them).
std::string PrefixEnd(std::string prefix) {
  while (!prefix.empty()) {
    if (static_cast<unsigned char>(prefix.back()) != 0xff) {
      prefix.back() = static_cast<char>(static_cast<unsigned char>(prefix.back()) + 1);
      return prefix;
    }
    prefix.pop_back();
  }
  return std::string(1, '\0');
}

// The time a session (etcd lease) has left, as etcd reports it in whole
// seconds, rounded down. Rounded up here, capped at the granted TTL, so a live
// session with less than a second left is not shown as one without expiry;
// none when etcd says the session is gone (-1).
std::optional<Duration> SessionRemaining(const pb::LeaseTimeToLiveResponse& t) {
  if (t.ttl() < 0) return std::nullopt;
  return std::chrono::seconds(t.grantedttl() > 0 ? std::min(t.ttl() + 1, t.grantedttl())
                                                 : t.ttl() + 1);
}

}  // namespace

void EtcdStore::Inspect(std::string name, TimePoint deadline, InspectCallback done) {
  auto st = state_;
  done = OnLoop(runtime(), std::move(done));
  pb::RangeRequest req;
  const std::string key = st->Key(name);
  req.set_key(key);
  const std::string what = "inspect " + State::Lease(name);
  st->Call(what, std::move(req), deadline, &Endpoint::kv, &pb::KV::Stub::async::Range,
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
             st->Call(what + " (session time to live)", std::move(q), deadline, &Endpoint::lease,
                      &pb::Lease::Stub::async::LeaseTimeToLive,
                      [rec = std::move(rec), done](Result<pb::LeaseTimeToLiveResponse> t) mutable {
                        if (!t.ok()) {
                          done(t.status());
                          return;
                        }
                        rec.remaining = SessionRemaining(*t);
                        done(std::move(rec));
                      });
           });
}

void EtcdStore::Break(std::string name, TimePoint deadline, StatusCallback done) {
  auto st = state_;
  done = OnLoop(runtime(), std::move(done));
  pb::DeleteRangeRequest req;
  req.set_key(st->Key(name));
  st->Call("break " + State::Lease(name), std::move(req), deadline, &Endpoint::kv,
           &pb::KV::Stub::async::DeleteRange,
           [done = std::move(done)](Result<pb::DeleteRangeResponse> r) {
             done(r.ok() ? Status::Ok() : r.status());
           });
}

// One Range over the keys of `prefix`, then one LeaseTimeToLive per distinct
// session (the keys of one client share few), side by side; answered when the
// last is in. etcd deletes an expired key, so only held leases are listed.
void EtcdStore::List(std::string prefix, TimePoint deadline, ListCallback done) {
  auto st = state_;
  done = OnLoop(runtime(), std::move(done));
  const std::string start = st->Key(prefix);
  pb::RangeRequest req;
  req.set_key(start.empty() ? std::string(1, '\0') : start);
  req.set_range_end(PrefixEnd(start));
  // etcd answers a range in key order (bytewise): already sorted by name.
  std::string what = "list leases";
  if (!prefix.empty()) what += " starting with " + etcd::Quote(prefix);
  st->Call(what, std::move(req), deadline, &Endpoint::kv, &pb::KV::Stub::async::Range,
           [st, deadline, what, done = std::move(done)](Result<pb::RangeResponse> r) {
             if (!r.ok()) {
               done(r.status());
               return;
             }
             st->NoteHeader(r->header());
             struct Gather {
               std::mutex mu;
               std::vector<LeaseRecord> records;
               std::map<int64_t, std::vector<size_t>> sessions;  // etcd lease -> records
               size_t left = 0;
               Status failed;
               ListCallback done;
             };
             auto g = std::make_shared<Gather>();
             g->done = done;
             const size_t skip = st->Key("").size();
             for (const auto& kv : r->kvs()) {
               LeaseRecord rec;
               rec.name = kv.key().substr(std::min(skip, kv.key().size()));
               rec.holder = kv.value();
               rec.token = st->Token(kv.key(), kv.create_revision());
               rec.version = std::to_string(r->header().revision());
               if (kv.lease() != 0) g->sessions[kv.lease()].push_back(g->records.size());
               g->records.push_back(std::move(rec));
             }
             if (g->sessions.empty()) {
               done(std::move(g->records));
               return;
             }
             g->left = g->sessions.size();
             for (const auto& [id, _] : g->sessions) {
               pb::LeaseTimeToLiveRequest q;
               q.set_id(id);
               st->Call(what + " (session time to live)", std::move(q), deadline, &Endpoint::lease,
                        &pb::Lease::Stub::async::LeaseTimeToLive,
                        [g, id](Result<pb::LeaseTimeToLiveResponse> t) {
                          bool last;
                          {
                            std::lock_guard lock(g->mu);
                            if (!t.ok()) {
                              if (g->failed.ok()) g->failed = t.status();
                            } else {
                              for (size_t i : g->sessions[id]) {
                                g->records[i].remaining = SessionRemaining(*t);
                              }
                            }
                            last = --g->left == 0;
                          }
                          if (!last) return;
                          if (!g->failed.ok()) {
                            g->done(g->failed);
                          } else {
                            g->done(std::move(g->records));
                          }
                        });
             }
           });
}

// --- Watch -----------------------------------------------------------------

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
  const std::string key = st->Key(name);
  const WatchId id = st->watchers.Add(key, version, std::move(on_change));
  st->StartWatch(id, key, revision + 1);
  return id;
}

void EtcdStore::CancelWatch(WatchId id) noexcept {
  // From here on on_change will not start (watch_registry.h).
  state_->watchers.Cancel(id);
  // etcd drops the watch; it ignores ids it no longer has (one that fired).
  std::lock_guard lock(state_->mu);
  if (state_->watch_stream != nullptr) {
    pb::WatchRequest req;
    req.mutable_cancel_request()->set_watch_id(static_cast<int64_t>(id));
    state_->watch_stream->Send(std::move(req));
  }
}

// --- FencedTxn -------------------------------------------------------------

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
  for (const auto& w : writes) {
    if (w.key.empty()) return InvalidArgumentError(st->describe + ": fenced write: empty key");
  }
  Promise<Status> applied(nullptr);
  st->Txn("fenced write under " + State::Lease(name),
          etcd::FencedTxn(key, static_cast<int64_t>(token.sequence), std::move(writes)), deadline,
          [st, name, sequence = token.sequence, applied](Result<pb::TxnResponse> r) mutable {
            Status s;
            if (!r.ok()) {
              s = r.status();
            } else if (!r->succeeded()) {
              s = FailedPreconditionError(st->describe + ": " + State::Lease(name) +
                                          ": lease no longer held (create revision is not " +
                                          std::to_string(sequence) + ")");
            }
            applied.Set(std::move(s));
          });
  return applied.future().Wait();
}

}  // namespace leasehold
