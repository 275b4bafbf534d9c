// store_bench.h: what the per-store benchmark binaries (benchmarks/<store>/
// <store>_bench, driven by benchmarks/<store>/run) share: percentiles, fatal
// checks, and the two halves of the crash-failover measurement.
//
// The run scripts read the binaries' output as "key value" lines; a failed
// check prints "<tool>: <what> failed" on stderr and exits 1.
#ifndef LEASEHOLD_BENCHMARKS_STORE_BENCH_H_
#define LEASEHOLD_BENCHMARKS_STORE_BENCH_H_

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "leasehold/forwarding_store.h"
#include "leasehold/future.h"
#include "leasehold/lease.h"
#include "leasehold/runtime.h"
#include "leasehold/store.h"

namespace leasehold::bench {

// The binary's name, for messages; set once at the top of main().
inline std::string& ToolName() {
  static std::string name = "bench";
  return name;
}

[[noreturn]] inline void Die(const std::string& what) {
  std::cerr << ToolName() << ": " << what << "\n";
  std::exit(1);
}

inline void Check(bool ok, const std::string& what) {
  if (!ok) Die(what + " failed");
}

inline double Micros(Duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// The p-quantile (0..1, nearest rank below) in microseconds; 0 when empty.
inline double Percentile(std::vector<Duration> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return Micros(v[static_cast<size_t>(p * static_cast<double>(v.size() - 1))]);
}

// This process's user + system CPU time so far, in seconds.
inline double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

inline std::unique_ptr<Lease> NewLease(std::shared_ptr<Store> store, const std::string& name,
                                       const std::string& owner, Duration ttl) {
  auto l = Lease::Create(std::move(store), {.name = name, .owner = owner, .ttl = ttl});
  if (!l.ok()) Die(l.status().ToString());
  return std::move(l).value();
}

// The holder half of the crash failover: acquires (waiting up to 30 s),
// prints "held" and holds until the run script SIGKILLs the process.
[[noreturn]] inline void HoldUntilKilled(std::shared_ptr<Store> store, const std::string& name,
                                         Duration ttl) {
  auto lease = NewLease(std::move(store), name, "holder", ttl);
  auto got = lease->Acquire({.wait = true, .timeout = std::chrono::seconds(30)});
  Check(got.ok() && *got, "hold");
  std::printf("held\n");
  std::fflush(stdout);
  while (true) std::this_thread::sleep_for(std::chrono::seconds(1));
}

// The contender half: prints "waiting", waits (up to 60 s) for the lease and
// prints "acquired_at_ns N", the wall-clock time it got it (the run script
// compares it with the time of its kill).
inline int WaitAndReport(std::shared_ptr<Store> store, const std::string& name, Duration ttl) {
  auto lease = NewLease(std::move(store), name, "waiter", ttl);
  std::printf("waiting\n");
  std::fflush(stdout);
  auto got = lease->Acquire({.wait = true, .timeout = std::chrono::seconds(60)});
  const auto wall = std::chrono::system_clock::now().time_since_epoch();
  Check(got.ok() && *got, "wait");
  std::printf(
      "acquired_at_ns %lld\n",
      static_cast<long long>(std::chrono::duration_cast<std::chrono::nanoseconds>(wall).count()));
  Check(lease->Release().ok(), "release");
  return 0;
}

// The acquire+release cycle against its floor: `ops` cycles of `lease`
// (AcquireWithToken + Release) interleaved one by one with `floor()` (the
// same requests sent bare), after 50 warm-up rounds; prints cycle_p50_us,
// cycle_p99_us, floor_p50_us and floor_p99_us.
inline int CycleAgainstFloor(Lease& lease, const std::function<bool()>& floor, int ops) {
  std::vector<Duration> ours, bare;
  for (int i = -50; i < ops; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    auto got = lease.AcquireWithToken();
    Check(got.ok() && got->has_value(), "acquire");
    Check(lease.Release().ok(), "release");
    auto t1 = std::chrono::steady_clock::now();
    Check(floor(), "raw cycle");
    auto t2 = std::chrono::steady_clock::now();
    if (i >= 0) {
      ours.push_back(t1 - t0);
      bare.push_back(t2 - t1);
    }
  }
  std::printf("cycle_p50_us %.1f\ncycle_p99_us %.1f\nfloor_p50_us %.1f\nfloor_p99_us %.1f\n",
              Percentile(ours, 0.5), Percentile(ours, 0.99), Percentile(bare, 0.5),
              Percentile(bare, 0.99));
  return 0;
}

// Counts what the engine asks of the store: Renew() batches and the leases
// in them.
class CountingStore final : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;
  void Renew(std::vector<RenewRequest> batch, RenewCallback done) override {
    batches.fetch_add(1, std::memory_order_relaxed);
    renewals.fetch_add(batch.size(), std::memory_order_relaxed);
    ForwardingStore::Renew(std::move(batch), std::move(done));
  }
  std::atomic<uint64_t> batches{0};
  std::atomic<uint64_t> renewals{0};
};

// Graceful hand-off: the holder (on `holder_store`) releases while the
// waiter (on `waiter_store`, sharing nothing with it, as another process)
// waits; prints handoff_p50_us, _p99_us and _max_us of `rounds` (after five
// warm-up rounds that open the waiter's notification connection).
inline int Handoff(std::shared_ptr<Store> holder_store, std::shared_ptr<Store> waiter_store,
                   int rounds) {
  using namespace std::chrono_literals;
  auto holder = NewLease(std::move(holder_store), "handoff", "holder", 10s);
  auto waiter = NewLease(std::move(waiter_store), "handoff", "waiter", 10s);
  std::vector<Duration> d;
  for (int i = -5; i < rounds; ++i) {
    auto got = holder->Acquire();
    Check(got.ok() && *got, "holder acquire");
    auto f = waiter->StartAcquire({.wait = true, .timeout = 10s});
    std::this_thread::sleep_for(20ms);  // the waiter is waiting by now
    auto t0 = std::chrono::steady_clock::now();
    Check(holder->Release().ok(), "release");
    const auto& r = f.Wait();
    auto t1 = std::chrono::steady_clock::now();
    Check(r.ok() && r->has_value(),
          "waiter acquire (" + (r.ok() ? std::string("not granted") : r.status().ToString()) + ")");
    if (i >= 0) d.push_back(t1 - t0);
    Check(waiter->Release().ok(), "waiter release");
  }
  std::printf("handoff_p50_us %.1f\nhandoff_p99_us %.1f\nhandoff_max_us %.1f\n", Percentile(d, 0.5),
              Percentile(d, 0.99), Percentile(d, 1.0));
  return 0;
}

// Acquires `count` leases "many/<i>" through `store` (at most 500 requests
// outstanding), fatally if any is not granted.
inline std::vector<std::unique_ptr<Lease>> AcquireMany(const std::shared_ptr<Store>& store,
                                                       int count, Duration ttl) {
  std::vector<std::unique_ptr<Lease>> leases;
  std::vector<Future<AcquireResult>> futures;
  for (int i = 0; i < count; ++i) {
    leases.push_back(NewLease(store, "many/" + std::to_string(i), "bench", ttl));
    futures.push_back(leases.back()->StartAcquire());
    if (futures.size() % 500 == 0) futures.back().Wait();  // keep the queue bounded
  }
  for (auto& f : futures) {
    const auto& r = f.Wait();
    Check(r.ok() && r->has_value(), "acquire of one of many");
  }
  return leases;
}

// One subcommand: `name TARGET ARGS...` with `args` arguments after TARGET.
struct Command {
  std::string name;
  size_t args;
  std::function<int(const std::string& target, const std::vector<std::string>& args)> run;
};

// main() of a store bench: sets ToolName(), runs the subcommand argv names
// (adding `hold TARGET NAME TTL_S` and `wait TARGET NAME TTL_S` on the stores
// `open` makes), and prints a usage line naming the subcommands when argv
// matches none or a number does not parse.
inline int Main(int argc, char** argv, const std::string& tool, const std::string& target,
                std::vector<Command> commands,
                const std::function<std::shared_ptr<Store>(const std::string& target,
                                                           std::shared_ptr<Runtime>)>& open) {
  ToolName() = tool;
  for (const char* which : {"hold", "wait"}) {
    commands.push_back(
        {which, 2, [&open, which](const std::string& t, const std::vector<std::string>& a) -> int {
           const Duration ttl = std::chrono::seconds(std::stoi(a[1]));
           auto store = open(t, Runtime::Create());
           if (std::string(which) == "hold") HoldUntilKilled(store, a[0], ttl);
           return WaitAndReport(store, a[0], ttl);
         }});
  }
  const std::vector<std::string> a(argv + 1, argv + argc);
  for (const Command& c : commands) {
    if (a.size() != c.args + 2 || a[0] != c.name) continue;
    try {
      return c.run(a[1], std::vector<std::string>(a.begin() + 2, a.end()));
    } catch (const std::logic_error& e) {  // std::stoi and friends
      std::cerr << tool << ": " << c.name << ": not a number among the arguments\n";
      return 2;
    }
  }
  std::string names;
  for (const Command& c : commands) names += (names.empty() ? "" : "|") + c.name;
  std::cerr << "usage: " << tool << " " << names << " " << target << " ...\n";
  return 2;
}

}  // namespace leasehold::bench

#endif  // LEASEHOLD_BENCHMARKS_STORE_BENCH_H_
