// leasehold: the storage seam -- what a backend implements.
//
// The engine (Lease, in lease.h) owns the algorithm: timing, the safe deadline,
// renewal scheduling and batching, retries within the remaining budget, loss
// detection, callbacks, single-flight, waiting. A Store owns only storage: one
// compare-and-swap per operation against a record, plus optional change
// notification. A backend therefore gets every guarantee of the contract by
// implementing four small asynchronous operations.
//
// Who judges expiry is the store's business, and both kinds fit:
//   * server-judged (etcd leases, Redis PX, PostgreSQL now(), the memory and
//     SQLite stores): the store expires a record TTL after it processed the
//     write, which is after the engine sent it. The engine's deadline -- send
//     time + TTL - drift allowance -- therefore ends before the store's.
//   * client-judged (Kubernetes Lease objects): a contender takes a foreign
//     record over only after observing it unchanged for its duration on its own
//     monotonic clock, starting no earlier than the holder's write landed. The
//     store keeps those observations and says how long is left in
//     Contended::retry_after.
//
// Contract for implementations:
//   * Each operation calls its callback exactly once, from any thread, possibly
//     before the operation returns, and never while holding a lock of the store's
//     own (the engine may call the store again from inside the callback).
//   * Every operation carries an absolute deadline on runtime()->clock(); answer
//     kDeadlineExceeded rather than blocking past it. A store that blocks must do
//     its IO on runtime()->PostBlocking (never on a loop thread).
//   * Contention is a value (Contended), not an error. A lost compare-and-swap
//     that the engine should simply retry is kAborted.
//   * Renew and Release are conditional on the tenure (holder identity and token):
//     they never extend, clear or delete a record that names anyone else, and a
//     renewal never resurrects a record that the store already considers expired.
//   * Errors carry a message naming the store (Describe()) and the lease; no
//     secret (token, password) ever appears in one.
//
// Thread-safety: every method may be called from any thread, concurrently.
#ifndef LEASEHOLD_STORE_H_
#define LEASEHOLD_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "leasehold/clock.h"
#include "leasehold/fencing.h"
#include "leasehold/runtime.h"
#include "leasehold/status.h"

namespace leasehold {

// Why a tenure ended without a voluntary release.
enum class LossReason {
  kExpired,       // the safe deadline passed without a successful renewal
  kTakenOver,     // the store names another holder (or another tenure of ours)
  kDeleted,       // the record is gone
  kUnauthorized,  // the store refused our credentials or permissions
  kBackendError,  // the store answered something that rules out renewing
};

// "expired", "taken over", "deleted", "unauthorized", "backend error".
std::string_view LossReasonName(LossReason reason) noexcept;

// One acquire attempt.
struct AcquireRequest {
  std::string name{};
  std::string holder{};  // the identity to write into the record
  Duration ttl{};
  TimePoint deadline{};  // answer by then
};

// The store granted the lease.
struct Acquired {
  FencingToken token{};
  // The TTL the store will enforce (a store may round, e.g. to whole seconds);
  // the engine computes the deadline from it. Must be > 0.
  Duration ttl{};
  // Set when the proof of liveness was sent earlier than this request (e.g. a
  // shared session's keepalive); the engine anchors at the earlier of the two.
  std::optional<TimePoint> anchor{};
};

// Someone else holds it.
struct Contended {
  std::string holder{};  // who, for display; may be empty if the store cannot tell
  std::string version;   // opaque observation to watch from (may be empty)
  // When the store could grant it at the earliest if nothing changes (e.g. the
  // rest of a client-judged observation window); unset if it cannot tell.
  std::optional<Duration> retry_after{};
};

using AcquireOutcome = std::variant<Acquired, Contended>;

struct RenewRequest {
  std::string name{};
  std::string holder{};
  FencingToken token{};
  Duration ttl{};
  TimePoint deadline{};
};

// The tenure goes on.
struct Renewed {
  Duration ttl{};                     // as in Acquired
  std::optional<TimePoint> anchor{};  // as in Acquired
};

// Definitive answer: the tenure is over (not a transient failure).
struct Lost {
  LossReason reason = LossReason::kTakenOver;
  std::string message{};
};

using RenewOutcome = std::variant<Renewed, Lost>;

struct ReleaseRequest {
  std::string name{};
  std::string holder{};
  FencingToken token{};
  TimePoint deadline{};
};

// What a store knows about one lease, for operators (CLI status/watch).
struct LeaseRecord {
  std::string name{};
  std::string holder{};  // empty when free
  FencingToken token;    // of the current (or last) tenure
  // Time left before the store would consider it free, as far as this client
  // can tell; unset when free or unknown.
  std::optional<Duration> remaining{};
  WallTime acquired_at{};
  WallTime renewed_at{};
  std::string version{};
};

struct StoreCapabilities {
  bool fencing = true;  // issues FencingTokens with ordered sequences
  bool watch = false;   // implements Watch()
};

using AcquireCallback = std::function<void(Result<AcquireOutcome>)>;
using RenewCallback = std::function<void(std::vector<Result<RenewOutcome>>)>;
using StatusCallback = std::function<void(Status)>;
using InspectCallback = std::function<void(Result<LeaseRecord>)>;
using ListCallback = std::function<void(Result<std::vector<LeaseRecord>>)>;
using WatchId = uint64_t;

class Store {
 public:
  virtual ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // The runtime whose clock judges deadlines for this store and its leases.
  const std::shared_ptr<Runtime>& runtime() const noexcept { return runtime_; }

  // A short description for messages, e.g. "memory:" or "etcd://h1:2379/app";
  // never contains secrets.
  virtual std::string Describe() const = 0;
  virtual StoreCapabilities capabilities() const = 0;

  // Checks that `name` can be stored, before any request. Default: non-empty,
  // at most 253 bytes, no NUL.
  virtual Status ValidateName(std::string_view name) const;

  // One attempt to create or take over the record for `request.name`.
  virtual void Acquire(AcquireRequest request, AcquireCallback done) = 0;

  // Renews every request in `batch` (any number >= 1, distinct names). `done`
  // gets one result per request, in order. An error Result is transient for that
  // lease (the engine retries while time remains); Lost is definitive.
  virtual void Renew(std::vector<RenewRequest> batch, RenewCallback done) = 0;

  // Clears the record only if it still names this tenure. OK also when the
  // record is already gone or names someone else (nothing of ours is left).
  virtual void Release(ReleaseRequest request, StatusCallback done) = 0;

  // Reads the record (kNotFound when there is none).
  virtual void Inspect(std::string name, TimePoint deadline, InspectCallback done) = 0;

  // Operator's tool: makes the lease free whoever holds it, keeping its
  // sequence, so the next acquire gets a higher one and fenced resources
  // reject the broken holder. OK also when nobody held it. Default:
  // kUnimplemented.
  virtual void Break(std::string name, TimePoint deadline, StatusCallback done);

  // Operator's tool: every record whose name starts with `prefix` (all of
  // them when it is empty), sorted by name (bytewise), each as Inspect would
  // read it -- free records that keep a sequence included, with an empty
  // holder. Reads only; a listing is not a snapshot of one instant on every
  // store. A record that cannot be read as a lease (hand-edited, hostile)
  // fails the whole listing with an error naming it, rather than being
  // skipped. Default: kUnimplemented.
  virtual void List(std::string prefix, TimePoint deadline, ListCallback done);

  // Calls `on_change` once, from any thread, when the record for `name` may have
  // changed after the observation `version` (released, deleted, expired, taken
  // over). Returns 0 if the store cannot watch; the engine then polls. A store
  // may call `on_change` spuriously; it must not miss a change after `version`.
  virtual WatchId Watch(const std::string& name, const std::string& version, Task on_change);
  // After this returns, `on_change` of that watch will not start.
  virtual void CancelWatch(WatchId id) noexcept;

  // The store that holds the records: this one, or -- for a decorator
  // (ForwardingStore) -- the store it wraps. Leases whose stores have the
  // same underlying store share their wake-ups (one runtime timer), whatever
  // decorators they reach it through. Must not change over the store's
  // life, and a decorator must keep the store it returns alive.
  virtual const Store& Underlying() const noexcept { return *this; }

 protected:
  explicit Store(std::shared_ptr<Runtime> runtime);

 private:
  std::shared_ptr<Runtime> runtime_{};
};

}  // namespace leasehold

#endif  // LEASEHOLD_STORE_H_
