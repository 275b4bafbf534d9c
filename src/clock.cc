// The only file in leasehold that reads the system clocks; and FormatDuration.
#include "leasehold/clock.h"

#include <time.h>

#include <cstdio>
#include <string>

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

std::string FormatDuration(Duration d) {
  // Magnitude as unsigned, so that Duration::min() is not undefined.
  const bool negative = d.count() < 0;
  const unsigned long long ns = negative ? 0ULL - static_cast<unsigned long long>(d.count())
                                         : static_cast<unsigned long long>(d.count());
  if (ns == 0) return "0s";
  struct Unit {
    unsigned long long size;
    const char* name;
  };
  static constexpr Unit kUnits[] = {
      {1'000'000'000ULL, "s"}, {1'000'000ULL, "ms"}, {1'000ULL, "us"}, {1ULL, "ns"}};
  for (const Unit& unit : kUnits) {
    if (ns < unit.size && unit.size != 1) continue;
    // Up to three decimals, trailing zeros dropped: 1.5s, 250ms, 12600s.
    const unsigned long long whole = ns / unit.size;
    const unsigned long long milli = (ns % unit.size) * 1000 / unit.size;
    std::string out = negative ? "-" : "";
    out += std::to_string(whole);
    if (milli != 0) {
      char frac[24];
      std::snprintf(frac, sizeof frac, ".%03llu", milli);
      std::string f(frac);
      while (f.back() == '0') f.pop_back();
      out += f;
    }
    return out + unit.name;
  }
  return "0s";
}

}  // namespace leasehold
