// leasehold: the Lease contract.
//
// A Lease is one would-be holder of a named lease in a Store: at most one holder
// at a time, for a bounded time (the TTL), with a fencing token per tenure. A
// tenure is one period of ownership, from a successful acquire to its release or
// loss.
//
//   auto lease = leasehold::Lease::Create(store, {.name = "db-migrations",
//                                                 .owner = "host-a",
//                                                 .ttl = 15s});
//   if (!lease.ok()) ...                              // options named and explained
//   auto token = (*lease)->AcquireWithToken();
//   if (!token.ok()) ...                              // could not find out: act on it
//   if (!*token) ...                                  // someone else holds it
//   auto sub = (*lease)->OnLost([](const LostEvent& e) { /* stop writing */ });
//   resource.Write(data, (*token)->sequence);         // resource fences on it
//   while ((*lease)->CheckAlive()) { ... }            // local, no IO
//   Status s = (*lease)->Release();
//
// Guarantees (each is a test in the conformance suite, tests/conformance/):
//   * CheckAlive() is true only before the safe deadline: the local send time of
//     the last successful acquire or renewal + the TTL the store enforces - the
//     drift allowance. It reads the clock on every call, so it turns false on
//     time even if no library thread ran (a paused process sees false the moment
//     it resumes). It is never a cached flag.
//   * Renewals run in the background, for any number of leases, on the runtime's
//     shared threads (no thread per lease). Leases of one store that fall due
//     together are renewed by one Renew() call. A transient failure is retried
//     with backoff while time remains before the deadline, each attempt's
//     deadline fitted to the time left. A definitive answer (taken over,
//     deleted) ends the tenure at once.
//   * OnLost handlers run exactly once per lost tenure, with a reason, no later
//     than the safe deadline plus scheduling slack even if the store never
//     answers; never after a voluntary Release(); never under an internal lock;
//     an exception from one handler does not affect the others or the library.
//   * One acquire and one renewal at a time per Lease: concurrent Acquire calls
//     share one attempt; renewals never overlap.
//   * Release() clears local liveness before any IO and is conditional on our
//     tenure: it never frees a record that now names someone else.
//   * A tenure lost by expiry (the safe deadline passed without a confirmed
//     renewal) is given back in the background by the same conditional
//     release: the record may outlive our belief (a renewal that landed
//     unanswered, the store's clock), and others need not wait out its TTL
//     once the store can be reached again.
//   * Every request the engine sends is bounded by its deadline: a store that
//     never answers is given up on at the request's settling bound (below),
//     as if it had answered kDeadlineExceeded, and the operation goes on. No
//     store misbehaviour can wedge an acquire, a waiting acquire or renewal.
//   * A new tenure is not renewed before the continuations attached (Then())
//     to its acquire Future have run: a continuation that does not want the
//     tenure can StartRelease() it before the store ever sees it renewed.
//
// Safety assumptions:
//   * The monotonic clocks of the machines involved drift apart by at most
//     `drift_allowance` per TTL (rate, not offset: offsets do not matter).
//   * The store is correct about its own records (linearisable compare-and-swap).
//   * A request the store did not answer by its deadline takes effect, if at
//     all, no later than one request_timeout after that deadline (the
//     settling bound). Until then no new acquire of this Lease is sent.
//   * A lease bounds *when* a holder believes it holds; it cannot stop a paused
//     holder's in-flight write from landing late. Resources that must never
//     accept a stale holder's write check the fencing sequence (fencing.h).
//
// Thread-safety: every method is safe from any thread. Destroying a Lease while
// another thread is inside one of its methods is undefined.
#ifndef LEASEHOLD_LEASE_H_
#define LEASEHOLD_LEASE_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include "leasehold/clock.h"
#include "leasehold/fencing.h"
#include "leasehold/future.h"
#include "leasehold/observer.h"
#include "leasehold/status.h"
#include "leasehold/store.h"

namespace leasehold {

namespace detail {
class LeaseCore;
struct HandlerSlot;
}  // namespace detail

// Options of one Lease, validated by Lease::Create(). Zero durations mean "the
// default" where one is documented.
struct LeaseOptions {
  // Required, non-empty; the store may restrict it further (Store::ValidateName).
  std::string name{};
  // Required, non-empty: who we are. Without one every contender would "win".
  std::string owner{};
  // Required, > 0: how long a tenure lasts without renewal.
  Duration ttl{0};
  // How often to renew. Default ttl/3. Must be > 0 and at most half of
  // (ttl - drift_allowance), so that after one renewal attempt at least as much
  // time again is left to retry before the deadline.
  Duration renew_interval{0};
  // Deadline of one request to the store. Default: renew_interval. Renewal
  // attempts are cut further to the time left before the safe deadline.
  Duration request_timeout{0};
  // Attempts per non-waiting Acquire() (>= 1): every attempt that may have
  // taken effect in the store uses one -- a contended answer, an error (the
  // request may have landed), and a grant the engine had to give back (of a
  // tenure this Lease already ended, or one that arrived after its TTL). Lost
  // compare-and-swaps (kAborted) are retried at once and use none.
  // AcquireOptions::attempts overrides it per call.
  int acquire_attempts = 1;
  // The delay before the next attempt (>= 0): between contended attempts of
  // a non-waiting Acquire(); the least delay before retrying an error (which
  // backs off exponentially from there); and, for waiting acquires, the
  // polling interval when the store cannot watch (stores that can watch are
  // polled only every max(retry_delay, ttl), as a fallback).
  Duration retry_delay = std::chrono::milliseconds(100);
  // Subtracted from every deadline to cover clock-rate drift between this host
  // and the store (or other contenders). Default ttl/50 (2 %). Must be >= 0 and
  // < ttl/2.
  std::optional<Duration> drift_allowance{};
  // When true (default), the identity written to the store is
  // "<owner>#<random per-Lease-instance suffix>", so the same owner string in two
  // processes -- or a restarted process -- never shares a tenure. Turn off only
  // when `owner` is already unique per incarnation (e.g. a pod name + uid).
  bool unique_identity = true;
  // Told of acquires, renewals, losses and releases (observer.h), e.g. for
  // metrics; null: nobody is.
  std::shared_ptr<LeaseObserver> observer{};
};

// Per-call options of an acquire.
struct AcquireOptions {
  // false: give up after `attempts` attempts (see LeaseOptions::acquire_attempts).
  // true: wait until the lease is free (woken by the store's watch; polling
  // as LeaseOptions::retry_delay says, as a fallback) or until `timeout` / `stop`.
  bool wait = false;
  // Limit on the whole call, including retries; 0 = no limit when waiting,
  // otherwise the attempts' natural budget. On expiry: kDeadlineExceeded.
  Duration timeout{0};
  // Cancels the call (kCancelled).
  std::stop_token stop{};
  // Overrides LeaseOptions::acquire_attempts for this call when > 0. 1 means
  // that at most one request of this call can take effect in the store (what
  // LeaseMajority needs to reason about its attempts).
  int attempts = 0;
};

// What an OnLost handler is told.
struct LostEvent {
  LossReason reason = LossReason::kExpired;
  std::string message{};  // the store's words or the engine's, for operators
  FencingToken token{};   // of the tenure that was lost
};

// Returned by Lease::OnLost(): unregisters the handler when Unsubscribe() is
// called or the Subscription is destroyed.
class [[nodiscard]] Subscription {
 public:
  Subscription() noexcept = default;
  Subscription(Subscription&&) noexcept = default;
  Subscription& operator=(Subscription&& other) noexcept;
  ~Subscription();

  // After this returns the handler is never called again, and it is not running
  // on any other thread (a handler may unsubscribe itself). Idempotent.
  // Called on a runtime loop thread (e.g. from a Future continuation) it does
  // not wait for a run already in progress on the callback thread, since that
  // handler may be blocked on the loop.
  void Unsubscribe() noexcept;

 private:
  friend class Lease;
  explicit Subscription(std::shared_ptr<detail::HandlerSlot> slot) noexcept
      : slot_(std::move(slot)) {}
  std::shared_ptr<detail::HandlerSlot> slot_{};
};

using AcquireResult = Result<std::optional<FencingToken>>;

class Lease {
 public:
  // Validates `options` (kInvalidArgument naming the field and the value) and
  // the name against the store (Store::ValidateName). No IO.
  static Result<std::unique_ptr<Lease>> Create(std::shared_ptr<Store> store, LeaseOptions options);

  // If held, starts a release without waiting for it; the record is left for
  // expiry if that fails. Handlers are not called.
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  // Tries to become the holder. true: we hold it (CheckAlive() is true);
  // false: someone else holds it after every attempt (or until the timeout
  // when waiting is off). An error means we could not find out: the store was
  // unreachable, timed out, refused our credentials, or answered nonsense.
  // Calling it while we hold the lease returns true at once (same tenure).
  Result<bool> Acquire(const AcquireOptions& options = {});

  // As Acquire(), and returns the tenure's fencing token (std::nullopt on
  // contention). kUnimplemented if the store issues no tokens
  // (see SupportsFencing()).
  AcquireResult AcquireWithToken(const AcquireOptions& options = {});

  // Starts an acquire and returns at once. Concurrent starts while one is in
  // flight share it (the same Future). Stores without fencing complete it with
  // a token whose value is empty and sequence 0.
  Future<AcquireResult> StartAcquire(AcquireOptions options = {});

  // Drops ownership. CheckAlive() is false from the moment this is called.
  // OK when not held (no IO) and when the store confirmed; otherwise the store
  // could not be told: the record may still name us until it expires, and the
  // error says why. An acquire in flight is abandoned (and released if it lands).
  // Blocks until the store answers or the request timeout passes; refused
  // (kFailedPrecondition) on a runtime loop thread: use StartRelease() there.
  Status Release();

  // As Release(), without blocking: local liveness is cleared and renewals
  // stop before it returns; the Future completes with what Release() returns.
  Future<Status> StartRelease();

  // Do we still hold it? Local, no IO; see the guarantees above.
  bool CheckAlive() const noexcept;

  // Registers `handler` for unexpected loss of any later tenure (see LostEvent).
  // Handlers run on the runtime's callback thread.
  Subscription OnLost(std::function<void(const LostEvent&)> handler);

  // True if the store issues fencing tokens.
  bool SupportsFencing() const;

  // The current tenure's token while CheckAlive() is true.
  std::optional<FencingToken> token() const;
  // The current safe deadline while held (on the store runtime's clock).
  std::optional<TimePoint> safe_deadline() const noexcept;

  const std::string& name() const noexcept;
  // The identity written to the store (owner plus, by default, a suffix).
  const std::string& identity() const noexcept;
  // The options as validated, with defaults filled in.
  const LeaseOptions& options() const noexcept;
  const std::shared_ptr<Store>& store() const noexcept;

 private:
  explicit Lease(std::shared_ptr<detail::LeaseCore> core);
  std::shared_ptr<detail::LeaseCore> core_{};
};

// Validates and fills in defaults without creating a Lease.
Result<LeaseOptions> ValidateLeaseOptions(LeaseOptions options);

// Whether `lease` is held and its renewals keep up: a health check for
// whatever serves while holding it (LeaderElector::CheckHealth, `leasehold
// run --metrics`). kUnavailable naming the cause when it is not held, when its
// safe deadline has passed, or when its last successful renewal was sent more
// than renew_interval + request_timeout + `tolerance` ago -- renewals are
// failing, and the lease will be lost unless one gets through. Local, no IO.
Status CheckRenewing(const Lease& lease, Duration tolerance = Duration::zero());

}  // namespace leasehold

#endif  // LEASEHOLD_LEASE_H_
