// leasehold: the result of an operation started without blocking the caller.
//
// Why not std::future: a std::future cannot run a continuation when it becomes
// ready, so a consumer such as LeaseMajority -- which is asked for a decision
// over and over and must neither block nor start a second acquire -- would have
// to poll it; and its get() would block forever under a SimulatedRuntime, where
// time only moves while somebody drives the simulation. Why not a bare callback:
// "is an attempt still pending, and what did it return?" would then be
// bookkeeping every consumer repeats. Future<T> is the small shape that does both:
// ready() to poll, Then() for a continuation, Wait() (or WaitFor, bounded) to
// block (driving a simulated runtime), and it is copyable so several waiters can share one
// operation (single-flight acquire hands every concurrent caller the same Future).
//
// Thread-safety: all methods are safe from any thread. Continuations run on the
// thread that completes the operation (usually a runtime loop thread) or, when
// already ready, on the thread calling Then(); they must be short and must not
// block. Wait() returns once the value is set, which may be before the
// continuations have run: a waiter that needs a continuation's effect waits
// for that effect itself.
#ifndef LEASEHOLD_FUTURE_H_
#define LEASEHOLD_FUTURE_H_

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "leasehold/runtime.h"

namespace leasehold {

template <typename T>
class Promise;

template <typename T>
class Future {
 public:
  // An invalid Future (valid() is false); every other method requires valid().
  Future() = default;

  bool valid() const noexcept { return state_ != nullptr; }

  // True once the operation has completed. Never blocks.
  bool ready() const {
    std::lock_guard lock(state_->mu);
    return state_->value.has_value();
  }

  // Blocks until the operation has completed and returns its value. Under a
  // SimulatedRuntime this runs the simulation on the calling thread.
  // Throws std::logic_error if a simulation runs out of work first (an engine
  // bug: every operation leasehold starts has a timer that completes it).
  const T& Wait() const {
    State& s = *state_;
    if (s.runtime && s.runtime->DriveUntil([&s] {
          std::lock_guard lock(s.mu);
          return s.value.has_value();
        })) {
      std::lock_guard lock(s.mu);
      if (!s.value)
        throw std::logic_error("leasehold: simulation ran dry before a Future completed");
      return *s.value;
    }
    std::unique_lock lock(s.mu);
    s.cv.wait(lock, [&s] { return s.value.has_value(); });
    return *s.value;
  }

  // Blocks until the operation has completed or `patience` has passed on the
  // runtime's clock (the real clock without a runtime); returns ready(). Under
  // a SimulatedRuntime this runs the simulation, which may jump past the end
  // of `patience` to its next timer.
  bool WaitFor(Duration patience) const {
    State& s = *state_;
    if (s.runtime) {
      const TimePoint until = s.runtime->clock().Now() + patience;
      if (s.runtime->DriveUntil([&s, &until] {
            if (s.runtime->clock().Now() >= until) return true;
            std::lock_guard lock(s.mu);
            return s.value.has_value();
          })) {
        return ready();
      }
    }
    std::unique_lock lock(s.mu);
    return s.cv.wait_for(lock, patience, [&s] { return s.value.has_value(); });
  }

  // Runs `f(value)` once the operation completes (at once if it has).
  void Then(std::function<void(const T&)> f) const {
    {
      std::lock_guard lock(state_->mu);
      if (!state_->value) {
        state_->continuations.push_back(std::move(f));
        return;
      }
    }
    f(*state_->value);  // value is immutable once set
  }

 private:
  friend class Promise<T>;
  struct State {
    std::shared_ptr<Runtime> runtime;
    std::mutex mu;
    std::condition_variable cv;
    std::optional<T> value;
    std::vector<std::function<void(const T&)>> continuations;
  };
  explicit Future(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

// The producing side of a Future. Copyable; the first Set() wins.
template <typename T>
class Promise {
 public:
  // `runtime` lets Future::Wait() drive a simulated runtime; may be null.
  explicit Promise(std::shared_ptr<Runtime> runtime)
      : state_(std::make_shared<typename Future<T>::State>()) {
    state_->runtime = std::move(runtime);
  }

  Future<T> future() const { return Future<T>(state_); }

  // Completes the Future and runs its continuations on this thread. Returns
  // false (and drops `value`) if it was already completed.
  bool Set(T value) {
    // Our own reference: a waiter woken below may drop its Future (and the
    // last other reference) before notify_all() returns.
    const std::shared_ptr<typename Future<T>::State> state = state_;
    std::vector<std::function<void(const T&)>> continuations;
    {
      std::lock_guard lock(state->mu);
      if (state->value) return false;
      state->value.emplace(std::move(value));
      continuations.swap(state->continuations);
    }
    state->cv.notify_all();
    for (auto& f : continuations) f(*state->value);
    return true;
  }

  bool is_set() const {
    std::lock_guard lock(state_->mu);
    return state_->value.has_value();
  }

 private:
  std::shared_ptr<typename Future<T>::State> state_;
};

}  // namespace leasehold

#endif  // LEASEHOLD_FUTURE_H_
