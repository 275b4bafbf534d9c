// leasehold: the runtime every lease and store runs on.
//
// A Runtime owns the threads that do leasehold's background work for any number
// of leases: there is no thread per lease. It has four lanes:
//
//   loop       timers and the engine's short state-machine steps (never blocks).
//              Renewal timers, safe-deadline timers and retry backoff all fire
//              here, so OnLost is on time even while a store does not answer.
//   callbacks  user handlers (OnLost, consumers' callbacks), one at a time, in
//              order, on a thread of their own: a slow handler never delays a
//              deadline, and no handler ever runs under an internal lock.
//   blocking   a small pool for stores whose client libraries block
//              (SQLite, libcurl); started on first use.
//   waiting    Future<T>::Wait() from user threads.
//
// Two implementations:
//   Runtime::Create()/Default()  real threads and the real clock.
//   SimulatedRuntime             everything runs on the thread that waits, time is
//                                a FakeClock that jumps to the next timer when
//                                nothing else can run (discrete-event simulation).
//                                Tests of timing behaviour use it and never sleep.
//
// Stores and leases hold a std::shared_ptr<Runtime>; the threads stop and are
// joined when the last reference goes away. The task that completes an
// operation may hold references (to the store, the lease, the runtime) for a
// moment after the caller has been told: a program about to exit should drop
// its leases and stores and then hand its runtime to ShutDown(), which joins
// the threads on the calling thread once they have let go.
//
// Thread-safety: all methods are safe from any thread, except where noted on
// SimulatedRuntime.
#ifndef LEASEHOLD_RUNTIME_H_
#define LEASEHOLD_RUNTIME_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

#include "leasehold/clock.h"

namespace leasehold {

using Task = std::function<void()>;
using TimerId = uint64_t;

struct RuntimeOptions {
  // Threads in the blocking lane (used only by stores whose client libraries
  // block: each request out holds one for its round trip), at most -- or, if
  // more, as many as the open stores have reserved (ReserveBlocking): one
  // per connection that can have a request out. They are started on demand
  // -- when a task would wait and no thread is idle -- and kept. 0 is taken
  // as 1.
  size_t blocking_threads = 64;
};

class Runtime {
 public:
  virtual ~Runtime() = default;

  // The process-wide default runtime (real clock), created on first use.
  static std::shared_ptr<Runtime> Default();
  // A runtime of its own on the real clock. blocking_threads == 0 is taken
  // as 1. If the last reference is dropped by a task on one of its own
  // threads, that thread finishes the tasks it had already taken, then exits.
  static std::shared_ptr<Runtime> Create(RuntimeOptions options = {});

  virtual const Clock& clock() const noexcept = 0;

  // Runs `task` on the loop lane, soon. Tasks must not block.
  virtual void Post(Task task) = 0;
  // Runs `task` on the loop lane once clock().Now() >= when. Returns an id for
  // CancelTimer. Timers due at the same instant run in the order they were set.
  virtual TimerId RunAt(TimePoint when, Task task) = 0;
  // After this returns, the timer's task will not start. A task already running
  // is not waited for. Unknown or fired ids are ignored.
  virtual void CancelTimer(TimerId id) noexcept = 0;
  // Runs `task` on the callbacks lane. Exceptions escaping `task` are caught
  // and dropped (handlers must not take the library down).
  virtual void PostCallback(Task task) = 0;
  // Runs `task` on the blocking lane.
  virtual void PostBlocking(Task task) = 0;

  // For stores whose client library blocks: a store reserves, while it is
  // open, one blocking-lane thread per request it can have out at once (its
  // connections), and withdraws them (a negative `delta`) when it closes.
  // The lane may grow to the larger of RuntimeOptions::blocking_threads and
  // the live reservations, so that many single-connection stores -- one per
  // database, or one per process a test plays -- never queue their renewals
  // behind a fixed ceiling, each waiting for another store's round trip
  // until it has missed its deadline. Reserved threads are still started
  // only when a task would wait. The default does nothing (a runtime that
  // runs blocking tasks inline needs no threads).
  virtual void ReserveBlocking(std::ptrdiff_t delta) noexcept { (void)delta; }

  // True when the calling thread is one of this runtime's loop threads: code
  // that would block there must use PostBlocking instead.
  virtual bool OnLoopThread() const noexcept = 0;

  // True when the calling thread may block waiting for a Future of this
  // runtime: a threaded runtime says false on its loop threads (the wait
  // would stall, or deadlock, the loop); a simulated runtime says true, since
  // there Future::Wait() runs the simulation itself. Blocking calls of the
  // library (Lease::Acquire, Release, ...) check it and refuse otherwise.
  virtual bool MayBlock() const noexcept = 0;

  // For Future<T>::Wait(): a simulated runtime runs the simulation on the
  // calling thread until `done()` is true or nothing is left to run, and
  // returns true. A threaded runtime returns false at once: the caller blocks
  // on its own condition variable while the runtime's threads make progress.
  virtual bool DriveUntil(const std::function<bool()>& done) = 0;
};

// Destroys `runtime` on the calling thread -- its threads stop and are joined
// there -- as soon as the caller holds the only reference to it, waiting at
// most `patience` for the tasks that completed the last operations to drop
// theirs. Returns true if it was destroyed here; false if references remained
// after `patience` (leases or stores still alive elsewhere), in which case only
// the caller's reference is dropped. Never call it from a task of `runtime`.
//
// Why: without it, the last reference can be dropped by a runtime thread a
// moment after main() has returned, and that thread then runs through exit()
// -- static destructors, OpenSSL's cleanup -- instead of being joined.
bool ShutDown(std::shared_ptr<Runtime> runtime, Duration patience = std::chrono::seconds(5));

// Discrete-event runtime for tests: deterministic and sleep-free.
//
// Nothing runs in the background. Work runs when the test calls RunFor(),
// RunUntilIdle() or blocks in a Future (e.g. Lease::Acquire()); then posted
// tasks and callbacks run in order and, when none is left, the clock jumps to
// the earliest timer. Blocking-lane tasks also run inline (stores run their IO
// "instantly" in simulated time).
//
// Operations still in flight when a test stops running the simulation (e.g.
// a store answer delayed by injected latency) keep their callbacks -- and
// through them the leases, stores and this runtime -- alive: run the
// simulation until they land (RunFor) before dropping it, as a real runtime
// would.
//
// Thread-safety: Post/RunAt/CancelTimer/PostCallback are safe from any thread,
// but only one thread at a time may run the simulation.
class SimulatedRuntime final : public Runtime {
 public:
  static std::shared_ptr<SimulatedRuntime> Create();
  ~SimulatedRuntime() override;

  FakeClock& fake_clock() noexcept;

  // Runs everything due now, then keeps advancing to the next timer until
  // `d` has passed; the clock ends exactly d later than it started -- unless
  // a task it runs blocks in Future::Wait() (e.g. Lease::Release() called
  // from a simulated task), which drives the simulation itself, as far as
  // that wait needs, possibly past the end. Library code never does that
  // (consumers use StartRelease()); tests that do should expect it.
  void RunFor(Duration d);
  // Runs everything due now without moving the clock.
  void RunUntilIdle();
  // Number of timers pending (for tests that check nothing leaks).
  size_t pending_timers() const;

  const Clock& clock() const noexcept override;
  void Post(Task task) override;
  TimerId RunAt(TimePoint when, Task task) override;
  void CancelTimer(TimerId id) noexcept override;
  void PostCallback(Task task) override;
  void PostBlocking(Task task) override;
  bool OnLoopThread() const noexcept override;
  bool MayBlock() const noexcept override;
  bool DriveUntil(const std::function<bool()>& done) override;

 private:
  struct Impl;
  SimulatedRuntime();
  std::unique_ptr<Impl> impl_{};
};

}  // namespace leasehold

#endif  // LEASEHOLD_RUNTIME_H_
