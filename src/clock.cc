// The only file in leasehold that reads the system clocks.
#include "leasehold/clock.h"

#include <time.h>

namespace leasehold {
namespace {

// CLOCK_BOOTTIME rather than steady_clock's CLOCK_MONOTONIC: both are
// monotonic and shared by every process of the host, but CLOCK_MONOTONIC
// stops while the host is suspended. A remote store (or another host) keeps
// time meanwhile, so a holder that resumed after a suspend longer than its TTL
// must see its deadline as passed -- and on one host, a store judging expiry on
// this clock agrees with every process about it.
class SystemClock final : public Clock {
 public:
  TimePoint Now() const noexcept override {
    timespec ts;
    clock_gettime(CLOCK_BOOTTIME, &ts);
    return TimePoint(std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec));
  }
  WallTime WallNow() const noexcept override { return std::chrono::system_clock::now(); }
};

// 2026-01-01T00:00:00Z: a fixed, readable wall time for fake clocks.
constexpr auto kFakeWallEpoch = WallTime(std::chrono::seconds(1767225600));

}  // namespace

const Clock& RealClock() noexcept {
  // Never destroyed: a runtime still alive when the process exits (one a
  // leaked lease keeps) reads the clock from its threads while exit() runs
  // the static destructors.
  static const SystemClock* const clock = new SystemClock;
  return *clock;
}

WallTime FakeClock::WallNow() const noexcept {
  return kFakeWallEpoch + std::chrono::duration_cast<WallTime::duration>(
                              Duration(now_ns_.load(std::memory_order_acquire) - kStartNs));
}

void FakeClock::AdvanceTo(TimePoint t) noexcept {
  int64_t target = std::chrono::duration_cast<Duration>(t.time_since_epoch()).count();
  int64_t current = now_ns_.load(std::memory_order_acquire);
  while (current < target &&
         !now_ns_.compare_exchange_weak(current, target, std::memory_order_acq_rel)) {
  }
}

}  // namespace leasehold
