// leasehold::kit::SyncStore: a Store made of synchronous code.
//
// Most client libraries block (SQLite, libcurl, libpq, hiredis). A backend
// built on one writes each operation as a plain function that does its IO and
// returns the answer (SyncOps), and SyncStore turns that into the
// asynchronous Store the engine talks to, with one policy for every such
// backend:
//
//   * Where it runs (RunBlocking): on the calling thread when that thread may
//     block (Runtime::MayBlock: any thread but a loop thread), else on the
//     runtime's blocking lane. So a loop thread never waits for IO, and a
//     caller that may block gets its answer without a thread hop.
//   * The deadline: an operation whose deadline has passed when it would
//     start answers kDeadlineExceeded ("<store>: acquire lease "x": deadline
//     passed before the request ran") without running. The operation fits
//     its own waits (busy timeouts, HTTP timeouts) into what is left
//     (SyncCall::Left, the same check and message, e.g. after waiting for a
//     lock of its own).
//   * A server that says "try again at T" (Retry-After): the operation calls
//     SyncCall::RerunAt(T); the adapter then runs it again from the start at
//     T on the runtime's timers -- no thread sleeps -- when T is before the
//     deadline, and otherwise delivers the answer it returned.
//   * Renewal batches: in one call (SyncOps::Renew gets the whole batch: one
//     transaction), or, for stores that write one record per request
//     (renew_one_by_one), one call per request, run side by side on the
//     blocking lane (at most max_parallel at once) and answered together, in
//     order.
//   * Combined renewals (SyncStore, whole batches): one renewal call per
//     store at a time. Batches that come while one is out wait and go
//     together, as one call, when it is answered. A store with one connection
//     would otherwise queue them one round trip each: under load (10,000
//     leases, a slow server, a sanitized build) the queue grows faster than
//     it drains and renewals run past their deadlines -- every lease lost
//     although the server answers every call. Combined, the calls per second
//     fall as round trips lengthen, and a renewal waits at most for the call
//     before it. A request whose deadline passed while it waited is answered
//     kDeadlineExceeded alone; a batch naming a lease already in the call
//     waits for the next. The call runs by its earliest deadline: if that
//     cuts it short, its other requests fail with it and the engine retries
//     them within their own leases' budgets.
//
// Threads: a SyncStore reserves one blocking-lane thread (its connection's)
// for as long as it is open (Runtime::ReserveBlocking), so a process of many
// stores has a thread for each store's request in flight.
//
// The SyncOps object is shared with the queued work: a store destroyed while
// an operation waits for the blocking lane or a rerun does not pull it away.
//
// Thread-safety: SyncOps methods are called from many threads at once; the
// store serialises what its client library needs serialised.
#ifndef LEASEHOLD_SRC_BACKENDS_KIT_SYNC_STORE_H_
#define LEASEHOLD_SRC_BACKENDS_KIT_SYNC_STORE_H_

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "leasehold/clock.h"
#include "leasehold/runtime.h"
#include "leasehold/status.h"
#include "leasehold/store.h"

namespace leasehold::kit {

// One run of a synchronous operation.
struct SyncCall {
  std::string what;    // e.g. `acquire lease "jobs"`: for messages
  TimePoint deadline;  // the request's, on the runtime's clock
  int attempt = 0;     // 0, then 1, 2, ... for reruns asked by RerunAt

  // Asks for the whole operation to run again, from the start, at `when`
  // instead of answering. Honoured only when `when` is before the deadline;
  // otherwise the operation's answer is delivered. The operation must be safe
  // to repeat (each of its writes conditional on what it read).
  void RerunAt(TimePoint when) { rerun_at = when; }
  std::optional<TimePoint> rerun_at{};

  // What is left of the deadline on `clock`; kDeadlineExceeded naming the
  // store (`describe`) and `what` when nothing is.
  Result<Duration> Left(const Clock& clock, const std::string& describe) const;
};

// A store's operations as synchronous code. Each runs on a thread that may
// block and answers within call.Left(); the messages of its errors name the
// store and the lease (call.what helps).
class SyncOps {
 public:
  virtual ~SyncOps() = default;
  // Describe() of the store, for the adapter's own messages.
  virtual const std::string& describe() const noexcept = 0;
  virtual Result<AcquireOutcome> Acquire(const AcquireRequest& request, SyncCall& call) = 0;
  // One result per request, in order; a batch of one request when the store
  // renews one by one.
  virtual std::vector<Result<RenewOutcome>> Renew(const std::vector<RenewRequest>& batch,
                                                  SyncCall& call) = 0;
  virtual Status Release(const ReleaseRequest& request, SyncCall& call) = 0;
  virtual Result<LeaseRecord> Inspect(const std::string& name, SyncCall& call) = 0;
  virtual Status Break(const std::string& name, SyncCall& call) = 0;
  // Store::List. Default: kUnimplemented.
  virtual Result<std::vector<LeaseRecord>> List(const std::string& prefix, SyncCall& call);
};

struct SyncPolicy {
  // Renew each request of a batch in a call of its own, side by side.
  bool renew_one_by_one = false;
  // With renew_one_by_one: at most this many of a batch's calls out at once
  // (0: no limit beyond the blocking lane's). Each call out holds a
  // connection, so this bounds the connections a store opens: unbounded, a
  // batch of hundreds fans out to as many new TLS handshakes at once, which
  // on a loaded machine time out before any is answered.
  size_t max_parallel = 0;
};

// Runs `fn` where blocking is allowed: the calling thread if it may block,
// else the blocking lane.
void RunBlocking(Runtime& runtime, Task fn);

// The adapter's operations, for SyncStore (and for tests of the policy).
void SyncAcquire(const std::shared_ptr<Runtime>& runtime, std::shared_ptr<SyncOps> ops,
                 AcquireRequest request, AcquireCallback done);
void SyncRenew(const std::shared_ptr<Runtime>& runtime, std::shared_ptr<SyncOps> ops,
               SyncPolicy policy, std::vector<RenewRequest> batch, RenewCallback done);
void SyncRelease(const std::shared_ptr<Runtime>& runtime, std::shared_ptr<SyncOps> ops,
                 ReleaseRequest request, StatusCallback done);
void SyncInspect(const std::shared_ptr<Runtime>& runtime, std::shared_ptr<SyncOps> ops,
                 std::string name, TimePoint deadline, InspectCallback done);
void SyncBreak(const std::shared_ptr<Runtime>& runtime, std::shared_ptr<SyncOps> ops,
               std::string name, TimePoint deadline, StatusCallback done);
void SyncList(const std::shared_ptr<Runtime>& runtime, std::shared_ptr<SyncOps> ops,
              std::string prefix, TimePoint deadline, ListCallback done);

// The renewal batches of one store waiting to be combined (CombinedRenew).
class RenewCombiner;
std::shared_ptr<RenewCombiner> NewRenewCombiner();

// SyncRenew of a whole batch, combined with the other batches `combiner`
// holds: see "Combined renewals" above.
void CombinedRenew(const std::shared_ptr<Runtime>& runtime, std::shared_ptr<SyncOps> ops,
                   const std::shared_ptr<RenewCombiner>& combiner, std::vector<RenewRequest> batch,
                   RenewCallback done);

// The six request/answer operations of Store, served by `ops`. `Base` is
// Store or a backend's public class (which derives from Store and leaves
// these to its implementation); the backend still implements Describe,
// capabilities and, if it can, Watch/CancelWatch.
template <typename Base = Store>
class SyncStore : public Base {
 public:
  void Acquire(AcquireRequest request, AcquireCallback done) final {
    SyncAcquire(this->runtime(), ops_, std::move(request), std::move(done));
  }
  void Renew(std::vector<RenewRequest> batch, RenewCallback done) final {
    if (policy_.renew_one_by_one) {
      SyncRenew(this->runtime(), ops_, policy_, std::move(batch), std::move(done));
    } else {
      CombinedRenew(this->runtime(), ops_, renewals_, std::move(batch), std::move(done));
    }
  }
  void Release(ReleaseRequest request, StatusCallback done) final {
    SyncRelease(this->runtime(), ops_, std::move(request), std::move(done));
  }
  void Inspect(std::string name, TimePoint deadline, InspectCallback done) final {
    SyncInspect(this->runtime(), ops_, std::move(name), deadline, std::move(done));
  }
  void Break(std::string name, TimePoint deadline, StatusCallback done) final {
    SyncBreak(this->runtime(), ops_, std::move(name), deadline, std::move(done));
  }
  void List(std::string prefix, TimePoint deadline, ListCallback done) final {
    SyncList(this->runtime(), ops_, std::move(prefix), deadline, std::move(done));
  }

 protected:
  SyncStore(std::shared_ptr<Runtime> runtime, std::shared_ptr<SyncOps> ops, SyncPolicy policy = {})
      : Base(std::move(runtime)),
        ops_(std::move(ops)),
        policy_(policy),
        renewals_(NewRenewCombiner()) {
    this->runtime()->ReserveBlocking(1);
  }
  ~SyncStore() override { this->runtime()->ReserveBlocking(-1); }

 private:
  const std::shared_ptr<SyncOps> ops_;
  const SyncPolicy policy_;
  const std::shared_ptr<RenewCombiner> renewals_;
};

// A SyncStore whose operations object also watches: `Ops` is a SyncOps with
//   WatchId Watch(const std::string& name, const std::string& version, Task);
//   void CancelWatch(WatchId) noexcept;
// (e.g. a WatchRegistry fed by polling or by the server's notifications).
// The store fences and watches; Describe() is the ops' describe().
template <typename Base, typename Ops>
class WatchingSyncStore final : public SyncStore<Base> {
 public:
  WatchingSyncStore(std::shared_ptr<Runtime> runtime, std::shared_ptr<Ops> ops)
      : SyncStore<Base>(std::move(runtime), ops), ops_(std::move(ops)) {}

  std::string Describe() const override { return ops_->describe(); }
  StoreCapabilities capabilities() const override { return {.fencing = true, .watch = true}; }
  WatchId Watch(const std::string& name, const std::string& version, Task on_change) override {
    return ops_->Watch(name, version, std::move(on_change));
  }
  void CancelWatch(WatchId id) noexcept override { ops_->CancelWatch(id); }

 private:
  const std::shared_ptr<Ops> ops_;
};

}  // namespace leasehold::kit

#endif  // LEASEHOLD_SRC_BACKENDS_KIT_SYNC_STORE_H_
