// Benchmarks of the leasehold core on the real threaded runtime
// (Runtime::Create()) and the in-memory store. Each cost is reported next to
// its floor, so that docs can quote ratios that survive a change of machine:
//
//   BM_SteadyClockNow             floor of CheckAlive: one monotonic clock read
//   BM_CheckAlive                 Lease::CheckAlive() on a held lease
//   BM_MemoryStoreRawCycle        floor of the cycle: MemoryStore::Acquire and
//                                 Release called directly, inline callbacks
//   BM_MemoryAcquireReleaseCycle  Lease::Acquire() + Lease::Release()
//   .../observer:N                the same with LeaseOptions::observer (and
//   BM_CheckAlive/observer:N      CheckAlive): 0 none, 1 a LeaseObserver that
//                                 does nothing (the seam's own cost), 2 the
//                                 Prometheus adapter (with LEASEHOLD_HAVE_PROMETHEUS)
//   BM_HeldLeasesSteadyState      100,000 held leases (TTL 15 s): heap bytes per
//                                 lease and the CPU the renewals cost
//
// LEASEHOLD_BENCH_SMOKE=1 (set by `ctest -L benchmark`) shrinks the scale
// benchmark to 2,000 leases and a 2 s window.
#include <benchmark/benchmark.h>
#include <malloc.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "leasehold/backends/memory.h"
#include "leasehold/lease.h"
#include "leasehold/observer.h"
#ifdef LEASEHOLD_HAVE_PROMETHEUS
#include "leasehold/observers/prometheus.h"
#endif

namespace leasehold {
namespace {

using namespace std::chrono_literals;

bool SmokeMode() {
  const char* v = std::getenv("LEASEHOLD_BENCH_SMOKE");
  return v != nullptr && *v != '\0' && std::string_view(v) != "0";
}

// User + system CPU of the whole process (every thread), in seconds.
double ProcessCpuSeconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto seconds = [](const timeval& tv) { return tv.tv_sec + tv.tv_usec / 1e6; };
  return seconds(ru.ru_utime) + seconds(ru.ru_stime);
}

// Bytes handed out by malloc, all arenas: small chunks (uordblks) plus the
// large ones malloc serves with mmap (hblkhd), e.g. the bucket arrays of big
// hash maps and the runtime's timer heap.
size_t HeapInUse() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

// The observer of the benchmark's `observer` argument (see the top).
std::shared_ptr<LeaseObserver> Observer(int64_t kind) {
  if (kind == 1) return std::make_shared<LeaseObserver>();
#ifdef LEASEHOLD_HAVE_PROMETHEUS
  if (kind == 2) {
    return std::make_shared<PrometheusObserver>(std::make_shared<prometheus::Registry>());
  }
#endif
  return nullptr;
}

std::unique_ptr<Lease> MakeLease(benchmark::State& state, std::shared_ptr<Store> store,
                                 std::string name, Duration ttl,
                                 std::shared_ptr<LeaseObserver> observer = nullptr) {
  auto lease = Lease::Create(
      std::move(store),
      {.name = std::move(name), .owner = "bench", .ttl = ttl, .observer = std::move(observer)});
  if (!lease.ok()) {
    state.SkipWithError(lease.status().ToString().c_str());
    return nullptr;
  }
  return std::move(*lease);
}

// --- CheckAlive -------------------------------------------------------------

void BM_SteadyClockNow(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(std::chrono::steady_clock::now());
}
BENCHMARK(BM_SteadyClockNow);

void BM_CheckAlive(benchmark::State& state) {
  auto runtime = Runtime::Create();
  auto store = MemoryStore::Create(runtime);
  auto lease = MakeLease(state, store, "bench-check-alive", 15s, Observer(state.range(0)));
  if (!lease) return;
  if (auto held = lease->Acquire(); !held.ok() || !*held) {
    state.SkipWithError(held.ok() ? "not acquired" : held.status().ToString().c_str());
    return;
  }
  for (auto _ : state) benchmark::DoNotOptimize(lease->CheckAlive());
  if (!lease->CheckAlive()) state.SkipWithError("the lease was lost during the benchmark");
}
#ifdef LEASEHOLD_HAVE_PROMETHEUS
constexpr int64_t kObservers = 2;
#else
constexpr int64_t kObservers = 1;
#endif
BENCHMARK(BM_CheckAlive)->ArgName("observer")->DenseRange(0, kObservers);

// --- acquire + release ---------------------------------------------------------

void BM_MemoryStoreRawCycle(benchmark::State& state) {
  auto runtime = Runtime::Create();
  auto store = MemoryStore::Create(runtime);
  const Clock& clock = runtime->clock();
  const std::string name = "bench-cycle";
  const std::string holder = "bench#000000000000";
  for (auto _ : state) {
    std::optional<FencingToken> token;
    store->Acquire({name, holder, 15s, clock.Now() + 1s}, [&token](Result<AcquireOutcome> r) {
      if (r.ok() && std::holds_alternative<Acquired>(*r)) token = std::get<Acquired>(*r).token;
    });
    if (!token) {  // the memory store answers inline when no fault is set
      state.SkipWithError("raw acquire did not succeed inline");
      break;
    }
    bool released = false;
    store->Release({name, holder, *token, clock.Now() + 1s},
                   [&released](Status s) { released = s.ok(); });
    if (!released) {
      state.SkipWithError("raw release did not succeed inline");
      break;
    }
  }
}
BENCHMARK(BM_MemoryStoreRawCycle);

void BM_MemoryAcquireReleaseCycle(benchmark::State& state) {
  auto runtime = Runtime::Create();
  auto store = MemoryStore::Create(runtime);
  auto lease = MakeLease(state, store, "bench-cycle", 15s, Observer(state.range(0)));
  if (!lease) return;
  for (auto _ : state) {
    auto held = lease->Acquire();
    if (!held.ok() || !*held) {
      state.SkipWithError(held.ok() ? "not acquired" : held.status().ToString().c_str());
      break;
    }
    if (Status s = lease->Release(); !s.ok()) {
      state.SkipWithError(s.ToString().c_str());
      break;
    }
  }
}
BENCHMARK(BM_MemoryAcquireReleaseCycle)->ArgName("observer")->DenseRange(0, kObservers);

// --- many held leases ----------------------------------------------------------

// N leases, each its own name, all held by this process with TTL 15 s: heap
// bytes per lease -- split into the Lease object (engine state) and what
// holding adds (timers, tokens, the store's record) -- and
// the CPU of the steady state (renewals every 5 s, batched per store), measured
// as process CPU time over a wall-clock window. Fails if any lease is not alive
// at the end: a benchmark of renewals that fall behind must not report a number.
void BM_HeldLeasesSteadyState(benchmark::State& state) {
  const bool smoke = SmokeMode();
  const size_t n = smoke ? 2'000 : 100'000;
  const Duration window = smoke ? Duration(2s) : Duration(20s);
  const Duration ttl = 15s;

  auto runtime = Runtime::Create();
  auto store = MemoryStore::Create(runtime);
  std::vector<std::unique_ptr<Lease>> leases;
  leases.reserve(n);  // the caller's own bookkeeping: outside the measurement

  // Create every Lease first, then acquire them all: the heap grows by the
  // Lease objects first, then by what holding costs (timers, tokens, records).
  const size_t heap_before = HeapInUse();
  char name[32];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(name, sizeof name, "lease-%06zu", i);
    auto lease = MakeLease(state, store, name, ttl);
    if (!lease) return;
    leases.push_back(std::move(lease));
  }
  const size_t heap_created = HeapInUse();
  const auto acquire_start = std::chrono::steady_clock::now();
  for (const auto& lease : leases) {
    auto held = lease->Acquire();
    if (!held.ok() || !*held) {
      state.SkipWithError(held.ok() ? "not acquired" : held.status().ToString().c_str());
      return;
    }
  }
  const std::chrono::duration<double> acquire_time =
      std::chrono::steady_clock::now() - acquire_start;
  const size_t heap_held = HeapInUse();

  // Steady state: the last lease acquired has had its first renewal. The smoke
  // run's window is shorter than a renewal interval, so it is centred on the
  // first round of renewals instead, to still see every lease renewed once.
  const Duration renew_interval = leases.back()->options().renew_interval;
  std::this_thread::sleep_for(smoke ? renew_interval - window / 2 : renew_interval);

  MemoryStoreStats stats_start, stats_end;
  double cpu = 0, wall = 0;
  for (auto _ : state) {
    stats_start = store->stats();
    const double cpu_start = ProcessCpuSeconds();
    const auto wall_start = std::chrono::steady_clock::now();
    std::this_thread::sleep_for(window);
    cpu = ProcessCpuSeconds() - cpu_start;
    wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    stats_end = store->stats();
  }

  size_t not_alive = 0;
  for (const auto& lease : leases) not_alive += lease->CheckAlive() ? 0 : 1;
  const size_t heap_steady = HeapInUse();

  const double renewed = static_cast<double>(stats_end.renewed_leases - stats_start.renewed_leases);
  const double calls = static_cast<double>(stats_end.renew_calls - stats_start.renew_calls);
  // Bytes are counted in KiB ("1.2k" in the output is 1.2 KiB).
  auto per_lease = [n](size_t after, size_t before) {
    return benchmark::Counter(
        (static_cast<double>(after) - static_cast<double>(before)) / static_cast<double>(n),
        benchmark::Counter::kDefaults, benchmark::Counter::OneK::kIs1024);
  };
  state.counters["leases"] = static_cast<double>(n);
  state.counters["bytes_per_lease"] = per_lease(heap_held, heap_before);
  state.counters["bytes_per_lease_object"] = per_lease(heap_created, heap_before);
  state.counters["bytes_per_lease_holding"] = per_lease(heap_held, heap_created);
  state.counters["bytes_per_lease_end"] = per_lease(heap_steady, heap_before);
  state.counters["cpu_percent_of_core"] = 100.0 * cpu / wall;
  state.counters["renewals_per_s"] = renewed / wall;
  state.counters["renew_calls_per_s"] = calls / wall;
  state.counters["leases_per_call"] = calls > 0 ? renewed / calls : 0.0;
  state.counters["cpu_us_per_renewal"] = renewed > 0 ? 1e6 * cpu / renewed : 0.0;
  state.counters["acquire_us_per_lease"] = 1e6 * acquire_time.count() / static_cast<double>(n);
  if (renewed == 0) state.SkipWithError("no renewal happened during the window");
  if (not_alive > 0) {
    const std::string error = std::to_string(not_alive) + " of " + std::to_string(n) +
                              " leases were not alive at the end: renewals fell behind";
    state.SkipWithError(error.c_str());
  }
  // Teardown (100,000 releases) happens here, after the measurement.
}
BENCHMARK(BM_HeldLeasesSteadyState)
    ->Iterations(1)
    ->UseRealTime()
    ->MeasureProcessCPUTime()
    ->Unit(benchmark::kSecond);

}  // namespace
}  // namespace leasehold

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("leasehold_bench_smoke", leasehold::SmokeMode()
                                                           ? "1 (2,000 leases, 2 s window)"
                                                           : "0 (100,000 leases, 20 s window)");
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
