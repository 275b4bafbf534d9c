// leasehold: time.
//
// Every timing decision in leasehold goes through a Clock: the safe deadline,
// renewal scheduling, retry backoff, acquire timeouts, the memory store's expiry.
// Safety uses the monotonic Now() only. WallNow() exists to write human-readable
// times into records; it is never trusted for safety.
//
// RealClock() is the only place in the library that reads the system clocks.
// FakeClock moves only when told, so tests of timing behaviour are exact and
// never sleep (see SimulatedRuntime in runtime.h, which advances it).
//
// Safety assumption: the monotonic clocks of the machines involved run at rates
// that differ by at most LeaseOptions::drift_allowance over one TTL. Nothing is
// assumed about their offsets.
//
// Thread-safety: all methods are safe from any thread.
#ifndef LEASEHOLD_CLOCK_H_
#define LEASEHOLD_CLOCK_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace leasehold {

using Duration = std::chrono::nanoseconds;
// A point on a monotonic timeline. Only differences between points read from the
// same Clock mean anything (RealClock's timeline is CLOCK_BOOTTIME, not
// steady_clock's: do not compare its points with steady_clock::now()).
using TimePoint = std::chrono::steady_clock::time_point;
using WallTime = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic: never decreases. Must be cheap (it is read by CheckAlive()).
  virtual TimePoint Now() const noexcept = 0;
  // Wall-clock time, for display and for fields other programs read.
  virtual WallTime WallNow() const noexcept = 0;
};

// The process-wide real clock. Now() is CLOCK_BOOTTIME: monotonic, the same
// for every process of the host, and -- unlike steady_clock -- it keeps
// counting while the host is suspended, so a lease held across a suspend
// longer than its TTL is seen as lost on resume, as it is by everyone else.
// WallNow() is system_clock.
const Clock& RealClock() noexcept;

// A clock that moves only when Advance()/AdvanceTo() is called. Its wall time
// moves in step with its monotonic time.
class FakeClock final : public Clock {
 public:
  // Starts at a fixed, arbitrary point (so tests print stable times).
  FakeClock() noexcept = default;

  TimePoint Now() const noexcept override {
    return TimePoint(Duration(now_ns_.load(std::memory_order_acquire)));
  }
  WallTime WallNow() const noexcept override;

  // REQUIRES: d >= 0.
  void Advance(Duration d) noexcept { now_ns_.fetch_add(d.count(), std::memory_order_acq_rel); }
  // Moves to t if t is later than Now(); never moves backwards.
  void AdvanceTo(TimePoint t) noexcept;

 private:
  // One hour after the epoch of the steady timeline: leaves room below for
  // "long ago" arithmetic in tests without going negative.
  static constexpr int64_t kStartNs = int64_t{3600} * 1000 * 1000 * 1000;
  std::atomic<int64_t> now_ns_{kStartNs};
};

// "1.5s", "250ms", "40us", "0s": for messages.
std::string FormatDuration(Duration d);

}  // namespace leasehold

#endif  // LEASEHOLD_CLOCK_H_
