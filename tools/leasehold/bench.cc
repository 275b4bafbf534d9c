// `leasehold bench`: what a lease costs on a store, measured through the same
// Lease API applications use, on the real runtime.
//
//   cycle     Acquire() + Release() of an uncontended lease, --ops times.
//   hand-off  one contender holds, the other waits (AcquireOptions::wait); from
//             the start of the holder's Release() until the waiter's Future is
//             ready: what a graceful hand-off costs, watch/poll latency included.
//   raw       (SQLite only) the floor: a one-row, single-statement UPDATE loop on
//             a scratch database next to the store's file, with the store's
//             pragmas (WAL, synchronous=FULL), interleaved with the cycles so both
//             see the same disk and the same neighbours.
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#include <vector>

#include "cli.h"
#include "leasehold/lease.h"

namespace leasehold::cli {
namespace {

using std::chrono::duration;

constexpr char kCycleName[] = "leasehold-bench/cycle";
constexpr char kHandoffName[] = "leasehold-bench/handoff";
constexpr Duration kBenchTtl = std::chrono::seconds(15);
// Long enough for the waiter to see the lease held and arm its watch.
constexpr auto kWaiterSettle = std::chrono::milliseconds(20);
constexpr Duration kHandoffTimeout = std::chrono::seconds(10);

double Us(Duration d) { return duration<double, std::micro>(d).count(); }
double Round1(double v) { return std::round(v * 10) / 10; }

// Nearest-rank percentile of `samples` in microseconds. REQUIRES: non-empty.
double PercentileUs(std::vector<Duration> samples, double p) {
  std::sort(samples.begin(), samples.end());
  const size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(samples.size())));
  return Us(samples[std::clamp<size_t>(rank, 1, samples.size()) - 1]);
}

// The raw SQLite baseline: a scratch database with one row, updated by one
// prepared statement per sample. Removes its files when destroyed.
class RawUpdateLoop {
 public:
  static Result<std::unique_ptr<RawUpdateLoop>> Open(const std::string& store_path) {
    std::unique_ptr<RawUpdateLoop> loop(new RawUpdateLoop);
    loop->path_ = store_path.substr(0, store_path.rfind('/') + 1) + ".leasehold-bench-raw-" +
                  std::to_string(getpid()) + ".db";
    auto fail = [&](const std::string& what) {
      return UnavailableError("raw SQLite baseline " + loop->path_ + ": " + what + ": " +
                              (loop->db_ ? sqlite3_errmsg(loop->db_) : "cannot open"));
    };
    if (sqlite3_open_v2(loop->path_.c_str(), &loop->db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                        nullptr) != SQLITE_OK) {
      return fail("open");
    }
    if (sqlite3_exec(loop->db_,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v INTEGER NOT NULL);"
                     "INSERT OR REPLACE INTO t(id, v) VALUES(1, 0);",
                     nullptr, nullptr, nullptr) != SQLITE_OK) {
      return fail("set up");
    }
    if (sqlite3_prepare_v2(loop->db_, "UPDATE t SET v = v + 1 WHERE id = 1", -1, &loop->update_,
                           nullptr) != SQLITE_OK) {
      return fail("prepare");
    }
    return loop;
  }
  ~RawUpdateLoop() {
    sqlite3_finalize(update_);
    sqlite3_close_v2(db_);
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) unlink((path_ + suffix).c_str());
  }
  RawUpdateLoop(const RawUpdateLoop&) = delete;
  RawUpdateLoop& operator=(const RawUpdateLoop&) = delete;

  // One autocommitted UPDATE: one durable commit.
  Status Step() {
    const int rc = sqlite3_step(update_);
    sqlite3_reset(update_);
    if (rc == SQLITE_DONE) return Status::Ok();
    return UnavailableError("raw SQLite baseline " + path_ + ": update: " + sqlite3_errmsg(db_));
  }

 private:
  RawUpdateLoop() = default;
  std::string path_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* update_ = nullptr;
};

struct Measured {
  std::vector<Duration> cycles;
  Duration cycles_total{0};
  std::vector<Duration> raw;
  std::vector<Duration> handoffs;
};

Status MeasureCycles(Lease& lease, RawUpdateLoop* raw, int ops, const Clock& clock, Measured& m) {
  const int warmup = std::min(ops, 10);
  for (int i = -warmup; i < ops; ++i) {
    if (raw) {
      const TimePoint r0 = clock.Now();
      if (Status s = raw->Step(); !s.ok()) return s;
      if (i >= 0) m.raw.push_back(clock.Now() - r0);
    }
    const TimePoint t0 = clock.Now();
    auto acquired = lease.Acquire();
    if (!acquired.ok()) return acquired.status().WithContext("acquire");
    if (!*acquired) {
      return FailedPreconditionError("lease \"" + lease.name() +
                                     "\" is held by someone else (another bench running?)");
    }
    if (Status s = lease.Release(); !s.ok()) return s.WithContext("release");
    const Duration d = clock.Now() - t0;
    if (i >= 0) {
      m.cycles.push_back(d);
      m.cycles_total += d;
    }
  }
  return Status::Ok();
}

Status MeasureHandoffs(Lease& holder, Lease& waiter, int rounds, const Clock& clock, Measured& m) {
  for (int i = 0; i < rounds; ++i) {
    auto held = holder.Acquire();
    if (!held.ok()) return held.status().WithContext("hand-off: holder acquire");
    if (!*held) return FailedPreconditionError("hand-off lease held by someone else");
    auto done_at = std::make_shared<std::atomic<TimePoint::rep>>(0);
    auto pending = waiter.StartAcquire({.wait = true, .timeout = kHandoffTimeout});
    // The callback is the moment the waiter learns it holds the lease. It may
    // run after Wait() below has returned (on the thread that completed the
    // future): the measurement waits for it rather than reading a 0.
    pending.Then([done_at, &clock](const AcquireResult&) {
      done_at->store(clock.Now().time_since_epoch().count());
      done_at->notify_all();
    });
    std::this_thread::sleep_for(kWaiterSettle);
    if (pending.ready()) {
      const AcquireResult& early = pending.Wait();
      return early.ok() ? InternalError("hand-off: the waiter acquired while the holder held")
                        : early.status().WithContext("hand-off: waiter");
    }
    const TimePoint t0 = clock.Now();
    if (Status s = holder.Release(); !s.ok()) return s.WithContext("hand-off: release");
    const AcquireResult& got = pending.Wait();
    if (!got.ok()) return got.status().WithContext("hand-off: waiter");
    if (!got->has_value()) return InternalError("hand-off: the waiter gave up");
    done_at->wait(0);
    m.handoffs.push_back(TimePoint(Duration(done_at->load())) - t0);
    if (Status s = waiter.Release(); !s.ok()) return s.WithContext("hand-off: waiter release");
  }
  return Status::Ok();
}

}  // namespace

int BenchCommand(const BenchArgs& args, std::ostream& out, std::ostream& err) {
  if (args.ops < 1) {
    err << "leasehold bench: --ops must be >= 1\n";
    return kExitUsage;
  }
  auto spec = ParseStoreUrl(args.store_url);
  if (!spec.ok()) {
    err << "leasehold: " << spec.status().message() << "\n";
    return kExitUsage;
  }
  CommandRuntime runtime;
  const Clock& clock = runtime.get()->clock();
  auto store = OpenStore(*spec, runtime.get());
  if (!store.ok()) {
    err << "leasehold: " << store.status().message() << "\n";
    return store.status().code() == StatusCode::kUnimplemented ? kExitUnavailable
                                                               : ExitCodeFor(store.status());
  }
  // The waiter gets a store object of its own where the store allows it (its
  // own SQLite connection, as another process would have); the memory store is
  // per object, so both contenders share it.
  std::shared_ptr<Store> waiter_store = *store;
  if (spec->kind != StoreSpec::Kind::kMemory) {
    auto second = OpenStore(*spec, runtime.get());
    if (!second.ok()) {
      err << "leasehold: " << second.status().message() << "\n";
      return ExitCodeFor(second.status());
    }
    waiter_store = *second;
  }
  auto fail = [&](const Status& s) {
    err << "leasehold bench: " << (*store)->Describe() << ": " << s.message() << "\n";
    return ExitCodeFor(s);
  };

  std::unique_ptr<RawUpdateLoop> raw;
  if (spec->kind == StoreSpec::Kind::kSqlite) {
    auto opened = RawUpdateLoop::Open(spec->path);
    if (!opened.ok()) return fail(opened.status());
    raw = std::move(*opened);
  }
  auto cycle = Lease::Create(*store, {.name = kCycleName, .owner = "bench", .ttl = kBenchTtl});
  auto holder =
      Lease::Create(*store, {.name = kHandoffName, .owner = "bench-holder", .ttl = kBenchTtl});
  auto waiter = Lease::Create(waiter_store,
                              {.name = kHandoffName, .owner = "bench-waiter", .ttl = kBenchTtl});
  for (const auto* l : {&cycle, &holder, &waiter}) {
    if (!l->ok()) return fail(l->status());
  }

  Measured m;
  if (Status s = MeasureCycles(**cycle, raw.get(), args.ops, clock, m); !s.ok()) return fail(s);
  const int rounds = std::clamp(args.ops / 10, 1, 50);
  if (Status s = MeasureHandoffs(**holder, **waiter, rounds, clock, m); !s.ok()) return fail(s);
  raw.reset();  // removes the scratch database

  const double cycle_p50 = PercentileUs(m.cycles, 0.50);
  const double cycle_p99 = PercentileUs(m.cycles, 0.99);
  const double ops_per_s =
      static_cast<double>(m.cycles.size()) / duration<double>(m.cycles_total).count();
  const double handoff_p50 = PercentileUs(m.handoffs, 0.50);
  // A plain double and a flag: GCC's -O2 flow analysis misreads an
  // optional<double> here as maybe-uninitialized.
  const bool has_raw = !m.raw.empty();
  const double raw_p50 = has_raw ? PercentileUs(m.raw, 0.50) : 0.0;

  if (args.json) {
    nlohmann::json j;
    j["store"] = (*store)->Describe();
    j["ops"] = args.ops;
    j["cycle_p50_us"] = Round1(cycle_p50);
    j["cycle_p99_us"] = Round1(cycle_p99);
    j["ops_per_s"] = Round1(ops_per_s);
    j["handoff_p50_us"] = Round1(handoff_p50);
    if (has_raw) {
      j["raw_update_p50_us"] = Round1(raw_p50);
      j["cycle_vs_raw"] = std::round(cycle_p50 / raw_p50 * 100) / 100;
    }
    out << j.dump() << "\n";
    return kExitOk;
  }
  char line[160];
  auto row = [&](const char* label, double value, const char* unit) {
    std::snprintf(line, sizeof line, "%-16s %12.1f %s\n", label, value, unit);
    out << line;
  };
  out << "store            " << (*store)->Describe() << "\n";
  out << "cycles           " << args.ops << " acquire+release\n";
  row("cycle p50", cycle_p50, "us");
  row("cycle p99", cycle_p99, "us");
  row("cycles/s", ops_per_s, "per second");
  row("hand-off p50", handoff_p50,
      ("us over " + std::to_string(m.handoffs.size()) + " hand-offs").c_str());
  if (has_raw) {
    row("raw UPDATE p50", raw_p50, "us (one-row UPDATE, WAL, synchronous=FULL)");
    row("cycle / raw", cycle_p50 / raw_p50, "(p50 ratio)");
  }
  return kExitOk;
}

}  // namespace leasehold::cli
