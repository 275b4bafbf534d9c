// The only file in leasehold that reads the system clocks.
#include "leasehold/clock.h"

namespace leasehold {
namespace {

class SystemClock final : public Clock {
 public:
  TimePoint Now() const noexcept override { return std::chrono::steady_clock::now(); }
  WallTime WallNow() const noexcept override { return std::chrono::system_clock::now(); }
};

// 2026-01-01T00:00:00Z: a fixed, readable wall time for fake clocks.
constexpr auto kFakeWallEpoch = WallTime(std::chrono::seconds(1767225600));

}  // namespace

const Clock& RealClock() noexcept {
  static const SystemClock clock;
  return clock;
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
