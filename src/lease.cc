// The engine behind leasehold::Lease: timing, the safe deadline, renewal,
// retries, loss detection, callbacks, single-flight acquire, waiting.
//
// Invariants (see docs/design.md):
//   * `deadline_ns_` is the only thing CheckAlive() reads. It is set to a finite
//     value only while a tenure is held, only ever moves forward within a
//     tenure, and is reset to kNotHeld *before* any release IO.
//   * Every asynchronous answer (store callback, timer) carries the epoch it
//     was started in; `epoch_` changes whenever a tenure begins or ends, so a
//     stale answer can never act on a later tenure.
//   * The store is never called and no user code runs while `mu_` is held.
//   * At most one acquire request and one renewal request are in flight. While
//     anything that could free a record of ours is in flight -- a release, or
//     an "orphan" (an acquire request whose operation was abandoned by a
//     timeout, cancel or release, and which may still win) -- no new acquire
//     request is sent: a store answers a same-identity acquire with the
//     existing tenure, which the in-flight release would then free. Each such
//     operation "settles" when it answers, or at the latest one request
//     timeout past its deadline, so a silent store cannot park acquires forever.
//   * A tenure never begins with a retired token: one whose tenure ended here
//     (lost or released) or that this Lease gave back. Because a store answers
//     a same-identity acquire on a live record with that record's token, a
//     grant of a retired token may be freed by a release still on its way; it
//     is released again and the acquire retried, so each tenure gets a token
//     (and sequence) of its own and no late release can free it.
#include "leasehold/lease.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <limits>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "scheduler.h"

namespace leasehold {
namespace detail {

struct HandlerSlot {
  std::mutex mu;
  std::condition_variable cv;
  std::function<void(const LostEvent&)> fn;
  bool active = true;
  std::thread::id running;  // the thread running fn, if any
  std::weak_ptr<LeaseCore> core;

  void Invoke(const LostEvent& event) {
    {
      std::lock_guard lock(mu);
      if (!active) return;
      running = std::this_thread::get_id();
    }
    try {
      fn(event);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "leasehold: OnLost handler threw: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "leasehold: OnLost handler threw\n");
    }
    {
      std::lock_guard lock(mu);
      running = std::thread::id();
    }
    cv.notify_all();
  }

  // Deactivates and, if `wait`, waits for a run on another thread to finish.
  void Deactivate(bool wait) {
    std::function<void(const LostEvent&)> dropped;
    std::unique_lock lock(mu);
    active = false;
    const auto self = std::this_thread::get_id();
    if (wait) cv.wait(lock, [&] { return running == std::thread::id() || running == self; });
    if (running == std::thread::id()) dropped = std::move(fn);
  }

  // Waiting for a handler from a loop thread could deadlock: the handler may
  // itself be blocked on that loop (Acquire/Release from inside OnLost).
  static bool MayWait(const std::shared_ptr<Runtime>& runtime) { return !runtime->OnLoopThread(); }
};

namespace {

constexpr int64_t kNotHeld = std::numeric_limits<int64_t>::min();
// A lost compare-and-swap is retried at once, this many times per attempt.
constexpr int kMaxAbortedRetries = 16;
// Renewal timers are rounded down to this grid (at most 1/16 of the renew
// interval) so that leases falling due together fire together and share one
// Renew() call (scheduler.h). Coarse on purpose: a store whose answers come
// back at their own pace spreads its leases' renewal times, and a fine grid
// then turns 10,000 leases into ~100 round trips a second; 100 ms makes it
// ~10, for renewals at most 1/16 of an interval early.
constexpr Duration kRenewGrid = std::chrono::milliseconds(100);
// Attempts shorter than this are pointless; the deadline timer takes over.
constexpr Duration kMinAttempt = std::chrono::milliseconds(1);
// A waiting acquire never polls faster than this.
constexpr Duration kMinPoll = std::chrono::milliseconds(1);

int64_t Ns(TimePoint t) { return t.time_since_epoch().count(); }

std::string RandomSuffix() {
  static std::atomic<uint64_t> state = [] {
    std::random_device rd;
    return (uint64_t{rd()} << 32) ^ rd();
  }();
  // splitmix64 over a shared counter: distinct per instance, unpredictable per
  // process.
  uint64_t z = state.fetch_add(0x9e3779b97f4a7c15, std::memory_order_relaxed);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
  z ^= z >> 31;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%012llx", static_cast<unsigned long long>(z & 0xffffffffffffULL));
  return buf;
}

// The observer of one lease's events (LeaseObserver::ForLease).
std::shared_ptr<LeaseObserver> ObserverFor(const LeaseOptions& o) {
  if (!o.observer) return nullptr;
  std::shared_ptr<LeaseObserver> own = o.observer->ForLease(o.name);
  return own ? own : o.observer;
}

}  // namespace

class LeaseCore final : public Sleeper, public std::enable_shared_from_this<LeaseCore> {
 public:
  LeaseCore(std::shared_ptr<Store> store, LeaseOptions options)
      : store_(std::move(store)),
        runtime_(store_->runtime()),
        clock_(runtime_->clock()),
        options_(std::move(options)),
        drift_(*options_.drift_allowance),
        identity_(options_.unique_identity ? options_.owner + "#" + RandomSuffix()
                                           : options_.owner),
        what_("lease \"" + options_.name + "\" on " + store_->Describe()),
        scheduler_(Scheduler::For(*store_)),
        fencing_(store_->capabilities().fencing),
        watch_(store_->capabilities().watch),
        observer_(ObserverFor(options_)) {}

  bool CheckAlive() const noexcept {
    const int64_t deadline = deadline_ns_.load(std::memory_order_acquire);
    return Ns(clock_.Now()) < deadline;
  }

  std::optional<TimePoint> SafeDeadline() const noexcept {
    const int64_t deadline = deadline_ns_.load(std::memory_order_acquire);
    if (deadline == kNotHeld) return std::nullopt;
    return TimePoint(Duration(deadline));
  }

  std::optional<FencingToken> Token() const {
    std::lock_guard lock(mu_);
    if (!held_ || !CheckAlive()) return std::nullopt;
    return token_;
  }

  Future<AcquireResult> StartAcquire(AcquireOptions options);
  Future<Status> StartRelease();
  void Shutdown();
  std::shared_ptr<HandlerSlot> AddHandler(std::function<void(const LostEvent&)> fn);
  void RemoveHandler(const HandlerSlot* slot);

  const std::shared_ptr<Store>& store() const { return store_; }
  const LeaseOptions& options() const { return options_; }
  const std::string& identity() const { return identity_; }
  bool fencing() const { return fencing_; }
  const std::shared_ptr<Runtime>& runtime() const { return runtime_; }

 private:
  // One acquire request sent to the store.
  struct Request {
    TimePoint sent;
    TimePoint deadline;
    // Guarded by mu_: the engine stopped waiting for this request's answer
    // (its operation finished, or the request outlived its deadline) and
    // counts it in settling_ until it answers or `settle_timer` fires.
    bool orphan = false;
    TimerId give_up_timer = 0;
    TimerId settle_timer = 0;
    std::atomic<bool> settled{false};
  };
  using RequestPtr = std::shared_ptr<Request>;

  struct AcquireOp {
    explicit AcquireOp(std::shared_ptr<Runtime> rt) : promise(std::move(rt)) {}
    Promise<AcquireResult> promise;
    AcquireOptions options;
    TimePoint started;  // for LeaseObserver::AcquireFinished
    int attempts = 1;   // AcquireOptions::attempts, defaulted
    TimePoint deadline = TimePoint::max();
    int contended = 0;         // contended answers so far
    int errors = 0;            // errors and given-back grants so far
    int aborted_in_a_row = 0;  // lost compare-and-swaps since the last answer
    bool parked = false;       // waiting for an orphan to answer
    RequestPtr request;        // the request awaiting its answer, if any
    TimerId timeout_timer = 0;
    TimerId retry_timer = 0;
    WatchId watch = 0;
    std::unique_ptr<std::stop_callback<std::function<void()>>> stop;
  };
  using OpPtr = std::shared_ptr<AcquireOp>;

  // Cleanup collected under the lock and carried out after it is released.
  struct Deferred {
    std::vector<TimerId> timers;
    std::vector<WatchId> watches;
    std::function<void()> then;
  };
  void Run(Deferred& d);
  // Has `d` give `token`'s tenure back (a conditional release) once it runs.
  void GiveBackAfter(Deferred& d, FencingToken token);

  // Names the lease and its store in messages.
  const std::string& What() const { return what_; }
  void SendAttempt(const OpPtr& op);
  void OnAcquireAnswer(const OpPtr& op, const RequestPtr& req, Result<AcquireOutcome> result);
  // The request outlived its settling bound without an answer: the operation
  // goes on as if it had answered kDeadlineExceeded.
  void GiveUp(const OpPtr& op, const RequestPtr& req);
  void HandleAnswer(const OpPtr& op, TimePoint sent, Result<AcquireOutcome> result,
                    std::unique_lock<std::mutex>& lock);
  // Counts `req` in settling_ until it answers or one request timeout past
  // its deadline, whichever comes first.
  void OrphanLocked(const RequestPtr& req);
  void OnOrphanAnswer(const RequestPtr& req, Result<AcquireOutcome> result);
  void EndSettling();
  void RetireLocked(const FencingToken& token);
  bool RetiredLocked(const FencingToken& token) const;
  void ScheduleRetry(const OpPtr& op, Duration delay, const std::string& version,
                     std::unique_lock<std::mutex>& lock);
  void RetryNow(const OpPtr& op);
  void Finish(const OpPtr& op, AcquireResult result, std::unique_lock<std::mutex>& lock);
  void DetachOpLocked(const OpPtr& op, Deferred& d);

  void BeginTenureLocked(const FencingToken& token, TimePoint anchor, Duration ttl);
  void SetRenewAtLocked(TimePoint at);
  void ArmLocked();
  void SendRenewal(RenewRequest request, uint64_t epoch, uint64_t seq, TimePoint sent,
                   TimePoint wake_at);
  void OnRenewAnswer(uint64_t epoch, uint64_t seq, TimePoint sent, Result<RenewOutcome> r);
  // A renewal's answer (or the engine giving up on it), for the observer.
  struct RenewalReport {
    bool ok = false;
    Duration latency{0};
    Duration time_left{0};
  };
  void Report(const RenewalReport& r);

 public:
  // Called by the scheduler when a wake-up this lease asked for is due.
  void OnWake() override;

 private:
  void LoseLocked(LossReason reason, std::string message, Deferred& d);
  // Sends a conditional release of `token`'s tenure, settling-tracked and
  // bounded by a timer of our own; the Future completes with the store's
  // answer or kDeadlineExceeded.
  Future<Status> SendRelease(FencingToken token);
  void ReleaseDetached(FencingToken token) { (void)SendRelease(std::move(token)); }
  Duration Backoff(int failures);
  // The renewal interval for a store-enforced `ttl`: as configured, but never
  // more than half of what the TTL leaves (a store may cap the TTL).
  Duration RenewInterval(Duration ttl) const {
    return std::min(options_.renew_interval, (ttl - drift_) / 2);
  }

  const std::shared_ptr<Store> store_;
  const std::shared_ptr<Runtime> runtime_;
  const Clock& clock_;
  const LeaseOptions options_;
  const Duration drift_;
  const std::string identity_;
  const std::string what_;  // What(): built once, not per message
  // Shared by every lease of the same underlying store (scheduler.h).
  const std::shared_ptr<Scheduler> scheduler_;
  const bool fencing_;
  const bool watch_;
  const std::shared_ptr<LeaseObserver> observer_;  // options_.observer

  std::atomic<int64_t> deadline_ns_{kNotHeld};

  mutable std::mutex mu_;
  uint64_t epoch_ = 0;
  bool held_ = false;
  FencingToken token_;
  TimePoint deadline_;
  Duration store_ttl_{};
  // While held: when the next renewal is due. The lease needs a wake-up at
  // renew_at_ while idle (the deadline while a renewal is out is guarded by
  // the batch's watchdog, scheduler.h); wakes_
  // tracks (up to its size) the wake-ups pending in the scheduler, so that one
  // already due early enough is reused instead of pushing another.
  TimePoint renew_at_;
  std::array<TimePoint, 4> wakes_{};
  uint8_t nwakes_ = 0;
  bool renewing_ = false;
  // The renewal in flight: its number (answers of given-up ones are ignored)
  // and when it is given up -- its deadline plus the settling bound, by
  // which it has landed or never will.
  uint64_t renew_seq_ = 0;
  TimePoint renew_give_up_;
  TimePoint renew_sent_;  // when the renewal in flight was sent
  // The epoch of the tenure whose acquire Future is running its
  // continuations (0: none): no renewal of it goes out until they have (see
  // HandleAnswer). Per tenure, so the end of one delivery never ends
  // another's.
  uint64_t delivering_ = 0;
  // The token of the tenure that ended last, for giving back a renewal of it
  // that landed too late.
  FencingToken ended_token_;
  // Retired tokens (see the invariants): the highest retired sequence, and
  // the last few values for stores without ordered sequences.
  uint64_t retired_sequence_ = 0;
  std::array<std::string, 4> retired_values_;
  uint8_t retired_next_ = 0;
  int renew_failures_ = 0;
  Status last_renew_error_;
  OpPtr op_;          // the acquire operation in progress
  int settling_ = 0;  // releases and orphans in flight (see the invariants)
  bool shut_down_ = false;
  std::vector<std::shared_ptr<HandlerSlot>> handlers_;
  std::minstd_rand jitter_{0x5eed};
};

void LeaseCore::GiveBackAfter(Deferred& d, FencingToken token) {
  auto previous = std::move(d.then);
  d.then = [this, previous = std::move(previous), token = std::move(token)]() mutable {
    if (previous) previous();
    ReleaseDetached(std::move(token));
  };
}

void LeaseCore::Run(Deferred& d) {
  for (TimerId id : d.timers) runtime_->CancelTimer(id);
  for (WatchId id : d.watches) store_->CancelWatch(id);
  if (d.then) d.then();
}

// --- acquire ------------------------------------------------------------------

Future<AcquireResult> LeaseCore::StartAcquire(AcquireOptions options) {
  auto op = std::make_shared<AcquireOp>(runtime_);
  Future<AcquireResult> future = op->promise.future();
  Deferred d;
  {
    std::unique_lock lock(mu_);
    if (shut_down_) {
      lock.unlock();
      op->promise.Set(FailedPreconditionError(What() + ": the Lease is being destroyed"));
      return future;
    }
    if (op_) return op_->promise.future();  // single flight: share it
    const TimePoint now = clock_.Now();
    op->started = now;
    if (held_) {
      if (Ns(now) < deadline_ns_.load(std::memory_order_acquire)) {
        FencingToken token = token_;
        lock.unlock();
        if (observer_) {
          observer_->AcquireFinished(options_.name, LeaseObserver::AcquireOutcome::kAcquired,
                                     Duration::zero());
        }
        op->promise.Set(std::optional<FencingToken>(std::move(token)));
        return future;
      }
      // Past the deadline, and the deadline timer has not run yet.
      LoseLocked(LossReason::kExpired, "safe deadline passed without a successful renewal", d);
      GiveBackAfter(d, token_);  // as the timer would (OnWake)
    }
    op->attempts = options.attempts > 0 ? options.attempts : options_.acquire_attempts;
    if (options.timeout > Duration::zero()) {
      op->deadline = now + options.timeout;
    } else if (!options.wait) {
      // The natural budget of the attempts, with one request's worth of slack
      // for lost compare-and-swaps.
      op->deadline = now + options_.request_timeout * (op->attempts + 1) +
                     options_.retry_delay * (op->attempts - 1);
    }
    op->options = std::move(options);
    op_ = op;
    if (op->deadline != TimePoint::max()) {
      op->timeout_timer = runtime_->RunAt(op->deadline, [weak = weak_from_this(), op] {
        auto self = weak.lock();
        if (!self) return;
        const Duration timeout = op->options.timeout;
        const std::string budget = timeout > Duration::zero()
                                       ? "its timeout of " + FormatDuration(timeout)
                                       : "the budget of its attempts";
        std::unique_lock lock(self->mu_);
        self->Finish(
            op, DeadlineExceededError(self->What() + ": acquire did not complete within " + budget),
            lock);
      });
    }
  }
  Run(d);
  if (op->options.stop.stop_possible()) {
    // May run at once (already stopped); the callback takes the lock itself.
    op->stop = std::make_unique<std::stop_callback<std::function<void()>>>(
        op->options.stop,
        // Weak: the op owns this callback.
        std::function<void()>([weak = weak_from_this(), weak_op = std::weak_ptr<AcquireOp>(op)] {
          auto self = weak.lock();
          auto op = weak_op.lock();
          if (!self || !op) return;
          self->runtime_->Post([self, op] {
            std::unique_lock lock(self->mu_);
            self->Finish(op, CancelledError(self->What() + ": acquire cancelled"), lock);
          });
        }));
  }
  SendAttempt(op);
  return future;
}

void LeaseCore::SendAttempt(const OpPtr& op) {
  AcquireRequest request;
  auto req = std::make_shared<Request>();
  {
    std::lock_guard lock(mu_);
    if (op_ != op) return;
    if (settling_ > 0) {
      op->parked = true;  // EndSettling sends it
      return;
    }
    req->sent = clock_.Now();
    req->deadline = std::min(req->sent + options_.request_timeout, op->deadline);
    op->request = req;
    request.name = options_.name;
    request.holder = identity_;
    request.ttl = options_.ttl;
    request.deadline = req->deadline;
  }
  if (observer_) observer_->AcquireAttempted(options_.name);
  store_->Acquire(
      std::move(request),
      [weak = weak_from_this(), op, req, store = store_, name = options_.name, identity = identity_,
       timeout = options_.request_timeout](Result<AcquireOutcome> r) {
        if (auto self = weak.lock()) {
          self->OnAcquireAnswer(op, req, std::move(r));
        } else if (r.ok() && std::holds_alternative<Acquired>(*r)) {
          // The Lease is gone but its last attempt won: give the tenure back.
          store->Release({name, identity, std::get<Acquired>(*r).token,
                          store->runtime()->clock().Now() + timeout},
                         [store](Status) {});
        }
      });
  // The engine never depends on a store honouring deadlines: a request still
  // unanswered at its settling bound (by which it has landed or never will)
  // is given up and the operation goes on. An answer up to then is used.
  std::lock_guard lock(mu_);
  if (op->request != req) return;  // answered already (possibly inline)
  req->give_up_timer =
      runtime_->RunAt(req->deadline + options_.request_timeout, [weak = weak_from_this(), op, req] {
        if (auto self = weak.lock()) self->GiveUp(op, req);
      });
}

void LeaseCore::OrphanLocked(const RequestPtr& req) {
  if (req->orphan) return;
  req->orphan = true;
  ++settling_;
  req->settle_timer =
      runtime_->RunAt(req->deadline + options_.request_timeout, [weak = weak_from_this(), req] {
        if (req->settled.exchange(true)) return;
        if (auto self = weak.lock()) self->EndSettling();
      });
}

void LeaseCore::GiveUp(const OpPtr& op, const RequestPtr& req) {
  std::unique_lock lock(mu_);
  if (op->request != req) return;  // answered, or its operation finished
  op->request.reset();
  req->give_up_timer = 0;
  // Past its settling bound: an orphan that settled already. An answer the
  // store still sends is handled as an orphan's (a win is given back).
  req->orphan = true;
  req->settled = true;
  if (op_ != op) return;
  HandleAnswer(op, req->sent,
               DeadlineExceededError(What() + ": the store did not answer the acquire by its "
                                              "deadline nor within one request timeout after it"),
               lock);
}

void LeaseCore::OnAcquireAnswer(const OpPtr& op, const RequestPtr& req,
                                Result<AcquireOutcome> result) {
  std::unique_lock lock(mu_);
  if (op->request == req) {
    op->request.reset();
    if (req->give_up_timer) runtime_->CancelTimer(std::exchange(req->give_up_timer, 0));
  }
  if (req->orphan || op_ != op) {
    lock.unlock();
    OnOrphanAnswer(req, std::move(result));
    return;
  }
  HandleAnswer(op, req->sent, std::move(result), lock);
}

void LeaseCore::HandleAnswer(const OpPtr& op, TimePoint sent, Result<AcquireOutcome> result,
                             std::unique_lock<std::mutex>& lock) {
  const TimePoint now = clock_.Now();
  if (!result.ok()) {
    const Status& s = result.status();
    if (s.code() == StatusCode::kAborted && op->aborted_in_a_row < kMaxAbortedRetries &&
        now < op->deadline) {
      ++op->aborted_in_a_row;  // a lost compare-and-swap is not contention
      lock.unlock();
      SendAttempt(op);
      return;
    }
    op->aborted_in_a_row = 0;
    const bool retry = IsTransient(s.code()) && (op->options.wait || ++op->errors < op->attempts);
    if (retry && now + options_.retry_delay < op->deadline) {
      ScheduleRetry(op, std::max(options_.retry_delay, Backoff(op->errors)), "", lock);
      return;
    }
    Finish(op, s.WithContext("acquire"), lock);
    return;
  }
  if (auto* won = std::get_if<Acquired>(&*result)) {
    if (RetiredLocked(won->token)) {
      // Our own ended tenure, still live in the store: give it back again and
      // ask anew once that has settled (SendAttempt parks until then).
      FencingToken token = won->token;
      lock.unlock();
      ReleaseDetached(std::move(token));
      lock.lock();
      if (op_ != op) return;
      // The grant extended that tenure in the store, so it counts as an
      // attempt that took effect (AcquireOptions::attempts).
      const bool retry = op->options.wait || ++op->errors < op->attempts;
      if (retry && ++op->aborted_in_a_row <= kMaxAbortedRetries && now < op->deadline) {
        lock.unlock();
        SendAttempt(op);
      } else {
        Finish(op,
               AbortedError(What() + ": the store granted a tenure this lease already ended; "
                                     "it is being given back"),
               lock);
      }
      return;
    }
    op->aborted_in_a_row = 0;
    const Duration ttl = won->ttl > Duration::zero() ? won->ttl : options_.ttl;
    const TimePoint anchor = std::min(sent, won->anchor.value_or(sent));
    if (anchor + ttl - drift_ <= now) {
      // Granted, but the answer took longer than the TTL: nothing of the
      // tenure is left. Give it back and try again while the budget allows.
      FencingToken token = won->token;
      lock.unlock();
      ReleaseDetached(std::move(token));
      lock.lock();
      if (op_ != op) return;
      const bool retry = op->options.wait || ++op->errors < op->attempts;
      if (retry && now + options_.retry_delay < op->deadline) {
        ScheduleRetry(op, options_.retry_delay, "", lock);
      } else {
        Finish(op,
               DeadlineExceededError(What() +
                                     ": the store granted the lease after its TTL had passed"),
               lock);
      }
      return;
    }
    Deferred d;
    // No renewal is sent until the Future's continuations have run: one that
    // does not want the tenure (a late win, LeaseMajority) releases it
    // before the store ever sees it renewed.
    BeginTenureLocked(won->token, anchor, ttl);
    const uint64_t epoch = epoch_;
    delivering_ = epoch;  // set after BeginTenureLocked: it may not arm
    AcquireResult value = std::optional<FencingToken>(won->token);
    DetachOpLocked(op, d);
    lock.unlock();
    Run(d);
    if (observer_) {
      observer_->HeldChanged(options_.name, true);
      observer_->AcquireFinished(options_.name, LeaseObserver::AcquireOutcome::kAcquired,
                                 now - op->started);
    }
    {
      // Ends the delivery of this tenure (and no other) even if a
      // continuation throws: the tenure is then renewed as usual.
      struct Delivered {
        LeaseCore* self;
        uint64_t epoch;
        ~Delivered() {
          std::lock_guard lock(self->mu_);
          if (self->delivering_ != epoch) return;
          self->delivering_ = 0;
          if (self->epoch_ == epoch) self->ArmLocked();
        }
      } delivered{this, epoch};
      op->promise.Set(std::move(value));
    }
    return;
  }
  op->aborted_in_a_row = 0;
  const auto& busy = std::get<Contended>(*result);
  ++op->contended;
  if (!op->options.wait) {
    if (op->contended >= op->attempts || now + options_.retry_delay >= op->deadline) {
      Finish(op, std::optional<FencingToken>(), lock);
    } else {
      ScheduleRetry(op, options_.retry_delay, "", lock);
    }
    return;
  }
  // Waiting: the store's watch wakes us; poll only as a fallback (rarely when
  // the store can watch), and at the latest when a client-judged expiry ends.
  Duration delay = watch_ ? std::max(options_.retry_delay, options_.ttl) : options_.retry_delay;
  if (busy.retry_after) delay = std::min(delay, *busy.retry_after);
  ScheduleRetry(op, std::max(delay, kMinPoll), busy.version, lock);
}

void LeaseCore::ScheduleRetry(const OpPtr& op, Duration delay, const std::string& version,
                              std::unique_lock<std::mutex>& lock) {
  op->retry_timer = runtime_->RunAt(clock_.Now() + delay, [weak = weak_from_this(), op] {
    if (auto self = weak.lock()) self->RetryNow(op);
  });
  // This wait's identity: by the time the watch below is registered, its
  // on_change may have fired, the retry run and a later wait (with a watch
  // of its own) begun. Only if this wait is still the current one does the
  // watch belong to it.
  const TimerId this_wait = op->retry_timer;
  // Watch only from an observation of a contended record: an error gives no
  // version to watch from (and retrying on "changed since nothing" would spin).
  const bool watch = watch_ && op->options.wait && !version.empty();
  lock.unlock();
  if (!watch) return;
  WatchId id = store_->Watch(options_.name, version, [weak = weak_from_this(), op, rt = runtime_] {
    rt->Post([weak, op] {
      if (auto self = weak.lock()) self->RetryNow(op);
    });
  });
  if (id == 0) return;
  lock.lock();
  const bool stale = op_ != op || op->retry_timer != this_wait;
  WatchId previous = 0;
  if (!stale) previous = std::exchange(op->watch, id);
  lock.unlock();
  if (stale) store_->CancelWatch(id);
  if (previous) store_->CancelWatch(previous);
}

void LeaseCore::RetryNow(const OpPtr& op) {
  Deferred d;
  {
    std::lock_guard lock(mu_);
    if (op_ != op || op->retry_timer == 0) return;  // finished, or already retrying
    d.timers.push_back(std::exchange(op->retry_timer, 0));
    if (op->watch) d.watches.push_back(std::exchange(op->watch, 0));
  }
  Run(d);
  SendAttempt(op);
}

void LeaseCore::DetachOpLocked(const OpPtr& op, Deferred& d) {
  if (op->timeout_timer) d.timers.push_back(op->timeout_timer);
  if (op->retry_timer) d.timers.push_back(std::exchange(op->retry_timer, 0));
  if (op->watch) d.watches.push_back(std::exchange(op->watch, 0));
  op_.reset();
}

void LeaseCore::Finish(const OpPtr& op, AcquireResult result, std::unique_lock<std::mutex>& lock) {
  if (op_ != op) return;
  Deferred d;
  if (RequestPtr req = std::exchange(op->request, nullptr)) {
    // The request still in flight becomes an orphan: it settles when it
    // answers, or one request timeout past its deadline if it never does.
    if (req->give_up_timer) d.timers.push_back(std::exchange(req->give_up_timer, 0));
    OrphanLocked(req);
  }
  DetachOpLocked(op, d);
  lock.unlock();
  Run(d);
  if (observer_) {
    using Outcome = LeaseObserver::AcquireOutcome;
    const Outcome outcome = !result.ok()          ? Outcome::kFailed
                            : result->has_value() ? Outcome::kAcquired
                                                  : Outcome::kContended;
    observer_->AcquireFinished(options_.name, outcome, clock_.Now() - op->started);
  }
  op->promise.Set(std::move(result));
}

void LeaseCore::EndSettling() {
  OpPtr parked;
  {
    std::lock_guard lock(mu_);
    if (--settling_ > 0) return;
    if (op_ && op_->parked) {
      op_->parked = false;
      parked = op_;
    }
  }
  if (parked) SendAttempt(parked);
}

void LeaseCore::OnOrphanAnswer(const RequestPtr& req, Result<AcquireOutcome> result) {
  const bool settled_late = req->settled.exchange(true);
  if (!settled_late) runtime_->CancelTimer(req->settle_timer);
  if (result.ok() && std::holds_alternative<Acquired>(*result)) {
    // The abandoned attempt won: give the tenure back. The release is itself
    // settling-tracked, so no new attempt of ours goes out before it settles.
    // Unless it is the tenure we hold now: a store that answered past the
    // settling bound applied the orphan to our live record (same identity),
    // which only renewed it.
    const FencingToken& won = std::get<Acquired>(*result).token;
    bool ours_now;
    {
      std::lock_guard lock(mu_);
      ours_now = held_ && token_ == won;
    }
    if (!ours_now) ReleaseDetached(won);
  }
  if (!settled_late) EndSettling();
}

// --- tenure and renewal --------------------------------------------------------

void LeaseCore::BeginTenureLocked(const FencingToken& token, TimePoint anchor, Duration ttl) {
  ++epoch_;
  held_ = true;
  token_ = token;
  store_ttl_ = ttl;
  deadline_ = anchor + ttl - drift_;
  renew_failures_ = 0;
  last_renew_error_ = Status::Ok();
  renewing_ = false;
  deadline_ns_.store(Ns(deadline_), std::memory_order_release);
  SetRenewAtLocked(anchor + RenewInterval(ttl));
  ArmLocked();
}

void LeaseCore::SetRenewAtLocked(TimePoint at) {
  // Round down onto the grid (never later), so that renewals falling due
  // together are woken together and batched.
  const int64_t grid = std::min(kRenewGrid, options_.renew_interval / 16).count();
  int64_t ns = Ns(at);
  if (grid > 0) ns -= ns % grid;
  renew_at_ = TimePoint(Duration(ns));
}

void LeaseCore::ArmLocked() {
  // While a renewal is out, its batch's watchdog wakes us when it is given up
  // or at the deadline; while a win is being delivered, ArmLocked runs after.
  if (!held_ || renewing_ || delivering_ == epoch_) return;
  const TimePoint want = std::min(renew_at_, deadline_);
  // A pending wake-up at or before `want` will wake us in time; we then
  // re-evaluate and ask again.
  for (uint8_t i = 0; i < nwakes_; ++i) {
    if (wakes_[i] <= want) return;
  }
  if (nwakes_ < wakes_.size()) {
    wakes_[nwakes_++] = want;
  } else {
    // Untracked, it still wakes us once (harmlessly); track the earliest.
    *std::max_element(wakes_.begin(), wakes_.end()) = want;
  }
  scheduler_->WakeAt(want, weak_from_this());
}

void LeaseCore::OnWake() {
  Deferred d;
  RenewRequest request;
  TimePoint sent;
  std::optional<RenewalReport> gave_up;
  uint64_t epoch = 0;
  uint64_t seq = 0;
  TimePoint wake_at;
  {
    std::lock_guard lock(mu_);
    const TimePoint now = clock_.Now();
    // Every pending wake-up due by now has fired (or is firing in this pass).
    for (uint8_t i = 0; i < nwakes_;) {
      if (wakes_[i] <= now) {
        wakes_[i] = wakes_[--nwakes_];
      } else {
        ++i;
      }
    }
    if (!held_) return;
    if (now >= deadline_) {
      std::string message = "no successful renewal before the safe deadline";
      if (!last_renew_error_.ok()) {
        message += "; last renewal error: " + last_renew_error_.ToString();
      } else if (renewing_) {
        message += "; the store has not answered the last renewal";
      }
      LoseLocked(LossReason::kExpired, std::move(message), d);
      // The record may outlive our belief (the store's clock, a renewal that
      // landed unanswered, a session kept alive by other leases): give it
      // back, conditional on this tenure's token, so that others need not
      // wait for it to expire once the store can be reached again.
      GiveBackAfter(d, token_);
    } else {
      if (renewing_ && now >= renew_give_up_) {
        // Unanswered past its deadline and the settling bound: it has landed
        // or never will, so the next renewal cannot overlap it. Retry now.
        renewing_ = false;
        ++renew_seq_;
        ++renew_failures_;
        last_renew_error_ = DeadlineExceededError(
            What() + ": the store did not answer a renewal within its deadline");
        renew_at_ = now;
        gave_up = RenewalReport{false, now - renew_sent_, deadline_ - now};
      }
      if (!renewing_ && delivering_ != epoch_ && now >= renew_at_) {
        if (deadline_ - now < kMinAttempt) {
          renew_at_ = TimePoint::max();  // no attempt fits any more: wait for the deadline
        } else {
          renewing_ = true;  // never two in flight
          sent = now;
          renew_sent_ = now;
          epoch = epoch_;
          seq = ++renew_seq_;
          request.name = options_.name;
          request.holder = identity_;
          request.token = token_;
          request.ttl = options_.ttl;
          request.deadline = sent + std::min(options_.request_timeout, deadline_ - now);
          renew_give_up_ = request.deadline + options_.request_timeout;
          wake_at = std::min(renew_give_up_, deadline_);
        }
      }
    }
    ArmLocked();
  }
  if (gave_up) Report(*gave_up);
  Run(d);
  if (!request.name.empty()) SendRenewal(std::move(request), epoch, seq, sent, wake_at);
}

void LeaseCore::SendRenewal(RenewRequest request, uint64_t epoch, uint64_t seq, TimePoint sent,
                            TimePoint wake_at) {
  scheduler_->Enqueue(
      store_, std::move(request),
      [self = shared_from_this(), epoch, seq, sent](Result<RenewOutcome> r) {
        self->OnRenewAnswer(epoch, seq, sent, std::move(r));
      },
      weak_from_this(), wake_at);
}

void LeaseCore::OnRenewAnswer(uint64_t epoch, uint64_t seq, TimePoint sent,
                              Result<RenewOutcome> r) {
  Deferred d;
  RenewalReport report;
  {
    std::unique_lock lock(mu_);
    if (epoch != epoch_) {
      // The tenure ended while the renewal was out. If the renewal landed, the
      // record names us again until it expires: give it back, conditional on
      // that tenure's token so it can never touch a later one. (The epoch
      // moves once when a tenure ends and once when the next begins, so
      // ended_token_ is that tenure's token exactly when epoch_ == epoch + 1;
      // after a new tenure began it is left to expire.)
      const bool landed = r.ok() && std::holds_alternative<Renewed>(*r);
      FencingToken token = ended_token_;
      const bool release = landed && epoch_ == epoch + 1;
      lock.unlock();
      if (release) ReleaseDetached(std::move(token));
      return;
    }
    // A renewal given up on (OnWake) answering after all: the one sent
    // since then speaks for the tenure.
    if (seq != renew_seq_ || !renewing_) return;
    renewing_ = false;
    const TimePoint now = clock_.Now();
    report = {r.ok() && std::holds_alternative<Renewed>(*r) && now < deadline_, now - sent,
              deadline_ - now};
    if (r.ok()) {
      if (auto* lost = std::get_if<Lost>(&*r)) {
        LoseLocked(lost->reason, lost->message, d);
      } else if (now >= deadline_) {
        // Renewed, but too late: CheckAlive() has already said false, and
        // liveness never comes back within a tenure. The renewal did land,
        // so give the record back.
        LoseLocked(LossReason::kExpired,
                   "the renewal was confirmed only after the safe deadline had passed", d);
        GiveBackAfter(d, token_);
      } else {
        const auto& ok = std::get<Renewed>(*r);
        const Duration ttl = ok.ttl > Duration::zero() ? ok.ttl : store_ttl_;
        const TimePoint anchor = std::min(sent, ok.anchor.value_or(sent));
        const TimePoint deadline = anchor + ttl - drift_;
        if (deadline > deadline_) {
          deadline_ = deadline;
          deadline_ns_.store(Ns(deadline_), std::memory_order_release);
        }
        store_ttl_ = ttl;
        renew_failures_ = 0;
        last_renew_error_ = Status::Ok();
        SetRenewAtLocked(anchor + RenewInterval(ttl));
        report.time_left = deadline_ - now;
      }
    } else {
      const Status& s = r.status();
      last_renew_error_ = s;
      if (s.code() == StatusCode::kUnauthenticated || s.code() == StatusCode::kPermissionDenied) {
        LoseLocked(LossReason::kUnauthorized, s.ToString(), d);
      } else if (!IsTransient(s.code()) && s.code() != StatusCode::kInternal) {
        LoseLocked(LossReason::kBackendError, s.ToString(), d);
      } else {
        // Transient: retry with backoff while an attempt still fits; if none
        // does, the wake-up at the deadline ends the tenure on time.
        const Duration delay = Backoff(++renew_failures_);
        renew_at_ = now + delay + kMinAttempt < deadline_ ? now + delay : TimePoint::max();
      }
    }
    ArmLocked();
  }
  Report(report);
  Run(d);
}

void LeaseCore::Report(const RenewalReport& r) {
  if (observer_) observer_->RenewalAnswered(options_.name, r.ok, r.latency, r.time_left);
}

Duration LeaseCore::Backoff(int failures) {
  // Exponential from request_timeout/8 (at least 5ms), capped at half the
  // renewal interval, with +-20 % jitter so that leases failing together do
  // not retry together. Caller holds mu_ (jitter_ is not thread-safe).
  Duration base = std::max<Duration>(options_.request_timeout / 8, std::chrono::milliseconds(5));
  Duration cap = std::max<Duration>(options_.renew_interval / 2, base);
  Duration delay = base;
  for (int i = 1; i < failures && delay < cap; ++i) delay *= 2;
  delay = std::min(delay, cap);
  const int64_t spread = delay.count() / 5;
  if (spread > 0) {
    std::uniform_int_distribution<int64_t> dist(-spread, spread);
    delay += Duration(dist(jitter_));
  }
  return delay;
}

void LeaseCore::LoseLocked(LossReason reason, std::string message, Deferred& d) {
  if (!held_) return;
  deadline_ns_.store(kNotHeld, std::memory_order_release);
  held_ = false;
  ++epoch_;
  renewing_ = false;
  ended_token_ = token_;
  RetireLocked(token_);
  LostEvent event{reason, What() + ": " + std::string(LossReasonName(reason)) + ": " + message,
                  token_};
  auto handlers = handlers_;
  auto previous = std::move(d.then);
  d.then = [previous = std::move(previous), rt = runtime_, handlers = std::move(handlers),
            event = std::move(event), observer = observer_, name = options_.name]() mutable {
    if (previous) previous();
    if (observer) {
      observer->Lost(name, event.reason);
      observer->HeldChanged(name, false);
    }
    if (handlers.empty()) return;
    rt->PostCallback([handlers = std::move(handlers), event = std::move(event)] {
      for (const auto& slot : handlers) slot->Invoke(event);
    });
  };
}

Future<Status> LeaseCore::SendRelease(FencingToken token) {
  {
    std::lock_guard lock(mu_);
    ++settling_;
    RetireLocked(token);
  }
  Promise<Status> done(runtime_);
  const TimePoint deadline = clock_.Now() + options_.request_timeout;
  // The caller hears kDeadlineExceeded at the deadline (our own timer: the
  // engine never depends on a store honouring deadlines), but the release
  // settles only when the store answers or one request timeout later, since
  // it may still land meanwhile.
  auto settled = std::make_shared<std::atomic<bool>>(false);
  // The timer owns the core: its message names the lease (the store's
  // answer, which cancels it, owns the core too).
  const TimerId answer_timer = runtime_->RunAt(deadline, [done,
                                                          self = shared_from_this()]() mutable {
    done.Set(DeadlineExceededError(self->What() + ": the store did not answer the release within " +
                                   FormatDuration(self->options_.request_timeout)));
  });
  const TimerId settle_timer =
      runtime_->RunAt(deadline + options_.request_timeout, [weak = weak_from_this(), settled] {
        if (settled->exchange(true)) return;
        if (auto self = weak.lock()) self->EndSettling();
      });
  store_->Release(
      ReleaseRequest{options_.name, identity_, std::move(token), deadline},
      [self = shared_from_this(), done, settled, answer_timer, settle_timer](Status s) mutable {
        self->runtime_->CancelTimer(answer_timer);
        done.Set(std::move(s));
        if (!settled->exchange(true)) {
          self->runtime_->CancelTimer(settle_timer);
          self->EndSettling();
        }
      });
  return done.future();
}

void LeaseCore::RetireLocked(const FencingToken& token) {
  retired_sequence_ = std::max(retired_sequence_, token.sequence);
  retired_values_[retired_next_] = token.value;
  retired_next_ = static_cast<uint8_t>((retired_next_ + 1) % retired_values_.size());
}

bool LeaseCore::RetiredLocked(const FencingToken& token) const {
  if (fencing_ && token.sequence > 0) return token.sequence <= retired_sequence_;
  return std::find(retired_values_.begin(), retired_values_.end(), token.value) !=
             retired_values_.end() &&
         !token.value.empty();
}

// --- release, shutdown, handlers ----------------------------------------------------

Future<Status> LeaseCore::StartRelease() {
  FencingToken token;
  {
    std::unique_lock lock(mu_);
    // Liveness first, before anything else can happen; and from here on no
    // renewal of this tenure is sent (the epoch moves).
    const bool was_held = held_;
    deadline_ns_.store(kNotHeld, std::memory_order_release);
    if (op_) {
      OpPtr op = op_;
      Finish(op, CancelledError(What() + ": released while acquiring"), lock);
      lock.lock();
    }
    if (!was_held || !held_) {
      Promise<Status> none(runtime_);
      none.Set(Status::Ok());
      return none.future();
    }
    held_ = false;
    ++epoch_;
    renewing_ = false;
    token = token_;
    ended_token_ = token_;
  }
  if (observer_) observer_->HeldChanged(options_.name, false);
  Promise<Status> done(runtime_);
  SendRelease(std::move(token)).Then([done, self = shared_from_this()](const Status& s) mutable {
    if (self->observer_) self->observer_->Released(self->options_.name, s.ok());
    done.Set(s.ok() ? s
                    : s.WithContext(self->What() +
                                    ": release not confirmed, the record is left to expire"));
  });
  return done.future();
}

void LeaseCore::Shutdown() {
  std::vector<std::shared_ptr<HandlerSlot>> handlers;
  Deferred d;
  FencingToken token;
  bool release = false;
  {
    std::unique_lock lock(mu_);
    shut_down_ = true;
    handlers.swap(handlers_);
    deadline_ns_.store(kNotHeld, std::memory_order_release);
    if (op_) {
      OpPtr op = op_;
      Finish(op, CancelledError(What() + ": the Lease was destroyed"), lock);
      lock.lock();
    }
    if (held_) {
      held_ = false;
      ++epoch_;
      release = true;
      token = token_;
      ended_token_ = token_;
    }
  }
  const bool wait = HandlerSlot::MayWait(runtime_);
  for (auto& slot : handlers) slot->Deactivate(wait);
  Run(d);
  if (!release) return;
  if (observer_) observer_->HeldChanged(options_.name, false);
  SendRelease(std::move(token)).Then([observer = observer_, name = options_.name](const Status& s) {
    if (observer) observer->Released(name, s.ok());
  });
}

std::shared_ptr<HandlerSlot> LeaseCore::AddHandler(std::function<void(const LostEvent&)> fn) {
  auto slot = std::make_shared<HandlerSlot>();
  slot->fn = std::move(fn);
  slot->core = weak_from_this();
  std::lock_guard lock(mu_);
  if (shut_down_) {
    slot->active = false;
  } else {
    handlers_.push_back(slot);
  }
  return slot;
}

void LeaseCore::RemoveHandler(const HandlerSlot* slot) {
  std::shared_ptr<HandlerSlot> removed;  // destroyed after the lock
  std::lock_guard lock(mu_);
  auto it = std::find_if(handlers_.begin(), handlers_.end(),
                         [slot](const auto& s) { return s.get() == slot; });
  if (it != handlers_.end()) {
    removed = std::move(*it);
    handlers_.erase(it);
  }
}

}  // namespace detail

// --- public surface ------------------------------------------------------------

Subscription& Subscription::operator=(Subscription&& other) noexcept {
  if (this != &other) {
    Unsubscribe();
    slot_ = std::move(other.slot_);
  }
  return *this;
}

Subscription::~Subscription() { Unsubscribe(); }

void Subscription::Unsubscribe() noexcept {
  if (!slot_) return;
  auto slot = std::move(slot_);
  auto core = slot->core.lock();
  slot->Deactivate(!core || detail::HandlerSlot::MayWait(core->runtime()));
  if (core) core->RemoveHandler(slot.get());
}

Result<std::unique_ptr<Lease>> Lease::Create(std::shared_ptr<Store> store, LeaseOptions options) {
  if (!store) return InvalidArgumentError("Lease::Create: store is null");
  auto validated = ValidateLeaseOptions(std::move(options));
  if (!validated.ok()) return validated.status();
  if (Status s = store->ValidateName(validated->name); !s.ok()) return s;
  auto core = std::make_shared<detail::LeaseCore>(std::move(store), std::move(*validated));
  return std::unique_ptr<Lease>(new Lease(std::move(core)));
}

Lease::Lease(std::shared_ptr<detail::LeaseCore> core) : core_(std::move(core)) {}

Lease::~Lease() { core_->Shutdown(); }

Future<AcquireResult> Lease::StartAcquire(AcquireOptions options) {
  return core_->StartAcquire(std::move(options));
}

AcquireResult Lease::AcquireWithToken(const AcquireOptions& options) {
  if (!core_->fencing()) {
    return UnimplementedError("lease \"" + core_->options().name + "\" on " +
                              core_->store()->Describe() + ": the store issues no fencing tokens");
  }
  if (!core_->runtime()->MayBlock()) {
    return FailedPreconditionError(
        "AcquireWithToken() would block a leasehold loop thread; use StartAcquire()");
  }
  return core_->StartAcquire(options).Wait();
}

Result<bool> Lease::Acquire(const AcquireOptions& options) {
  if (!core_->runtime()->MayBlock()) {
    return FailedPreconditionError(
        "Acquire() would block a leasehold loop thread; use StartAcquire()");
  }
  Future<AcquireResult> future = core_->StartAcquire(options);
  const AcquireResult& r = future.Wait();
  if (!r.ok()) return r.status();
  return r->has_value();
}

Status Lease::Release() {
  if (!core_->runtime()->MayBlock()) {
    return FailedPreconditionError(
        "Release() would block a leasehold loop thread; use StartRelease()");
  }
  return core_->StartRelease().Wait();
}
Future<Status> Lease::StartRelease() { return core_->StartRelease(); }
bool Lease::CheckAlive() const noexcept { return core_->CheckAlive(); }
Subscription Lease::OnLost(std::function<void(const LostEvent&)> handler) {
  return Subscription(core_->AddHandler(std::move(handler)));
}
bool Lease::SupportsFencing() const { return core_->fencing(); }
std::optional<FencingToken> Lease::token() const { return core_->Token(); }
std::optional<TimePoint> Lease::safe_deadline() const noexcept { return core_->SafeDeadline(); }
const std::string& Lease::name() const noexcept { return core_->options().name; }
const std::string& Lease::identity() const noexcept { return core_->identity(); }
const LeaseOptions& Lease::options() const noexcept { return core_->options(); }
const std::shared_ptr<Store>& Lease::store() const noexcept { return core_->store(); }

Status CheckRenewing(const Lease& lease, Duration tolerance) {
  const LeaseOptions& o = lease.options();
  const std::optional<TimePoint> deadline = lease.safe_deadline();
  if (!deadline) return UnavailableError("lease " + o.name + " is not held");
  const TimePoint now = lease.store()->runtime()->clock().Now();
  if (now >= *deadline) {
    return UnavailableError("lease " + o.name +
                            " lapsed: its safe deadline passed without a renewal");
  }
  // The deadline is the last successful renewal's send time + ttl - drift.
  const Duration since = o.ttl - *o.drift_allowance - (*deadline - now);
  const Duration limit = o.renew_interval + o.request_timeout + tolerance;
  if (since > limit) {
    return UnavailableError(
        "lease " + o.name + ": renewals are failing: the last successful one was sent " +
        FormatDuration(since) + " ago, expected within " + FormatDuration(limit));
  }
  return Status::Ok();
}

}  // namespace leasehold
