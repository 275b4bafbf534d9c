// failover_demo: three contenders for one lease, on the real threaded runtime
// and the in-memory store, with a TTL of 1 s. It takes about two seconds.
//
//   1. alpha acquires "nightly-report"; bravo and charlie wait for it.
//   2. alpha works: every write to the report carries its fencing sequence, and
//      the report (the resource) admits only the highest sequence it has seen.
//   3. alpha's renewals are cut: the store stops answering them, as in a network
//      partition. alpha's CheckAlive() turns false at its safe deadline, with no
//      answer from anyone, and its OnLost handler runs. The store expires the
//      record a little later (the drift allowance) and tells the waiting
//      contenders, one of which takes over.
//   4. alpha -- think of a process that was paused mid-write -- writes with its
//      old sequence: the report's Fence rejects it.
//   5. The new holder releases; the last contender takes over at once.
//
// Exits non-zero if an invariant fails: two holders alive at once, sequences
// not strictly increasing, the stale write admitted, OnLost not run exactly
// once for alpha (and never for a holder that released).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "leasehold/backends/memory.h"
#include "leasehold/lease.h"

namespace {

using namespace std::chrono_literals;
using leasehold::AcquireResult;
using leasehold::Duration;
using leasehold::Future;
using leasehold::Lease;
using leasehold::LostEvent;
using leasehold::MemoryStore;
using leasehold::Status;
using leasehold::TimePoint;

constexpr char kLeaseName[] = "nightly-report";
constexpr Duration kTtl = 1s;

[[gnu::format(printf, 1, 2)]] std::string Format(const char* format, ...) {
  char buf[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(buf, sizeof buf, format, args);
  va_end(args);
  return buf;
}

double Ms(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Relative times for the printout. Every time in this demo is read from the
// runtime's clock, the one the library judges deadlines with.
class Timeline {
 public:
  explicit Timeline(const leasehold::Clock& clock) : clock_(clock), start_(clock.Now()) {}

  TimePoint Now() const { return clock_.Now(); }
  double At(TimePoint t) const { return Ms(t - start_); }

  void Print(TimePoint t, const std::string& who, const std::string& what) const {
    std::printf("t=%7.1fms  %-8s %s\n", At(t), who.c_str(), what.c_str());
    std::fflush(stdout);
  }

 private:
  const leasehold::Clock& clock_;
  const TimePoint start_;
};

// The resource the holders write to. It keeps the highest fencing sequence it
// has admitted and refuses writes of older tenures; the check and the write
// happen under one lock, so no stale write can slip in between.
class Report {
 public:
  Status Write(uint64_t sequence, std::string row) {
    std::lock_guard lock(mu_);
    Status admitted = fence_.Admit(sequence);
    if (admitted.ok()) rows_.push_back(std::move(row));
    return admitted;
  }
  uint64_t highest() const { return fence_.highest(); }
  size_t rows() const {
    std::lock_guard lock(mu_);
    return rows_.size();
  }

 private:
  mutable std::mutex mu_;
  leasehold::Fence fence_;
  std::vector<std::string> rows_;
};

// One would-be holder: its Lease, its OnLost record, its acquire in progress.
struct Contender {
  std::string name;
  std::unique_ptr<Lease> lease;
  leasehold::Subscription on_lost;  // declared after `lease`: unsubscribed first
  Future<AcquireResult> acquire;
  uint64_t sequence = 0;  // of the tenure it won

  // Written on the runtime's threads.
  std::mutex mu;
  std::optional<TimePoint> acquired_at;
  std::optional<TimePoint> lost_at;
  std::optional<LostEvent> lost;
  int lost_count = 0;

  std::optional<TimePoint> AcquiredAt() {
    std::lock_guard lock(mu);
    return acquired_at;
  }
  std::optional<TimePoint> LostAt() {
    std::lock_guard lock(mu);
    return lost_at;
  }
};

std::unique_ptr<Contender> MakeContender(const std::shared_ptr<MemoryStore>& store,
                                         const Timeline& timeline, std::string name) {
  auto lease = Lease::Create(store, {.name = kLeaseName, .owner = name, .ttl = kTtl});
  if (!lease.ok()) {
    std::fprintf(stderr, "failover_demo: %s\n", lease.status().ToString().c_str());
    std::exit(2);
  }
  auto c = std::make_unique<Contender>();
  c->name = std::move(name);
  c->lease = std::move(*lease);
  // Runs on the runtime's callback thread: record, never block.
  c->on_lost = c->lease->OnLost([self = c.get(), &timeline](const LostEvent& event) {
    std::lock_guard lock(self->mu);
    ++self->lost_count;
    if (!self->lost_at) {
      self->lost_at = timeline.Now();
      self->lost = event;
    }
  });
  return c;
}

// Starts a waiting acquire and records when it completes.
void StartWaiting(Contender& c, const Timeline& timeline) {
  c.acquire = c.lease->StartAcquire({.wait = true, .timeout = 10s});
  // Continuations run on the thread that completes the acquire: short, no IO.
  c.acquire.Then([&c, &timeline](const AcquireResult& r) {
    if (!r.ok() || !r->has_value()) return;
    std::lock_guard lock(c.mu);
    c.acquired_at = timeline.Now();
  });
}

// The holder of the record as the store sees it, for the printout.
std::string HolderInStore(MemoryStore& store) {
  leasehold::Promise<leasehold::Result<leasehold::LeaseRecord>> answer(store.runtime());
  store.Inspect(
      kLeaseName, store.runtime()->clock().Now() + 1s,
      [answer](leasehold::Result<leasehold::LeaseRecord> r) mutable { answer.Set(std::move(r)); });
  const auto& record = answer.future().Wait();
  if (!record.ok()) return record.status().ToString();
  return record->holder.empty() ? "nobody" : record->holder;
}

// Waits for every OnLost handler already posted to have run: the callback lane
// runs tasks in order.
void DrainCallbacks(const std::shared_ptr<leasehold::Runtime>& runtime) {
  leasehold::Promise<bool> drained(runtime);
  runtime->PostCallback([drained]() mutable { drained.Set(true); });
  drained.future().Wait();
}

// Polls CheckAlive() of every contender from a thread of its own, as an outside
// observer would, and remembers any instant at which two were alive.
class OverlapMonitor {
 public:
  explicit OverlapMonitor(std::vector<Contender*> contenders, const Timeline& timeline)
      : contenders_(std::move(contenders)),
        timeline_(timeline),
        thread_([this](std::stop_token stop) { Run(stop); }) {}

  // Stops polling; returns a description of the first overlap, if any.
  std::optional<std::string> Finish(long* checks) {
    thread_.request_stop();
    thread_.join();
    *checks = checks_;
    return overlap_;
  }

 private:
  // Reads every lease twice per sweep, in the same order: a1 b1 c1 a2 b2 c2.
  // Each Lease here holds at most one tenure, so its liveness is one interval
  // of time; if x1 and x2 are true, x was alive throughout, and a later y1 that
  // is true proves an overlap -- however long the thread was preempted.
  void Run(std::stop_token stop) {
    const size_t n = contenders_.size();
    std::vector<char> alive(2 * n);
    while (!stop.stop_requested()) {
      for (size_t i = 0; i < 2 * n; ++i) alive[i] = contenders_[i % n]->lease->CheckAlive();
      ++checks_;
      for (size_t x = 0; x < n && !overlap_; ++x) {
        for (size_t y = x + 1; y < n && !overlap_; ++y) {
          if (alive[x] && alive[y] && alive[n + x]) {
            overlap_ =
                Format("at t=%.1fms %s and %s were alive at once", timeline_.At(timeline_.Now()),
                       contenders_[x]->name.c_str(), contenders_[y]->name.c_str());
          }
        }
      }
      std::this_thread::sleep_for(50us);
    }
  }

  const std::vector<Contender*> contenders_;
  const Timeline& timeline_;
  long checks_ = 0;
  std::optional<std::string> overlap_;
  std::jthread thread_;  // last: starts after the fields above exist
};

// Polls `done` every 200us until it is true or `limit` has passed.
template <typename F>
bool PollUntil(const Timeline& timeline, TimePoint limit, F done) {
  while (!done()) {
    if (timeline.Now() >= limit) return false;
    std::this_thread::sleep_for(200us);
  }
  return true;
}

}  // namespace

int main() {
  auto runtime = leasehold::Runtime::Create();
  auto store = MemoryStore::Create(runtime);
  const Timeline timeline(runtime->clock());
  Report report;
  std::vector<std::string> failures;
  auto expect = [&failures](bool ok, std::string what) {
    if (!ok) failures.push_back(std::move(what));
    return ok;
  };

  auto alpha_owner = MakeContender(store, timeline, "alpha");
  auto bravo_owner = MakeContender(store, timeline, "bravo");
  auto charlie_owner = MakeContender(store, timeline, "charlie");
  Contender& alpha = *alpha_owner;
  const Duration renew_interval = alpha.lease->options().renew_interval;
  const Duration drift = *alpha.lease->options().drift_allowance;
  std::printf(
      "leasehold failover demo: lease \"%s\" on %s, TTL %s (renewed every %s, "
      "drift allowance %s)\n\n",
      kLeaseName, store->Describe().c_str(), leasehold::FormatDuration(kTtl).c_str(),
      leasehold::FormatDuration(renew_interval).c_str(), leasehold::FormatDuration(drift).c_str());

  // 1. alpha first; then bravo and charlie wait (woken by the store's watch).
  StartWaiting(alpha, timeline);
  const AcquireResult& first = alpha.acquire.Wait();
  if (!first.ok() || !first->has_value()) {
    std::fprintf(stderr, "failover_demo: alpha could not acquire: %s\n",
                 first.ok() ? "held by someone else" : first.status().ToString().c_str());
    return 1;
  }
  alpha.sequence = (*first)->sequence;
  timeline.Print(
      *alpha.AcquiredAt(), "alpha",
      Format("acquired  sequence=%llu", static_cast<unsigned long long>(alpha.sequence)));
  for (Contender* c : {bravo_owner.get(), charlie_owner.get()}) {
    StartWaiting(*c, timeline);
    timeline.Print(timeline.Now(), c->name, "waiting   (held by " + HolderInStore(*store) + ")");
  }
  OverlapMonitor monitor({&alpha, bravo_owner.get(), charlie_owner.get()}, timeline);

  // 2. alpha works. A holder checks CheckAlive() before each write and sends
  //    its sequence with it.
  auto work = [&](Contender& c) {
    const TimePoint t = timeline.Now();
    Status s = report.Write(c.sequence, "a row by " + c.name);
    const auto deadline = c.lease->safe_deadline();
    timeline.Print(t, c.name,
                   Format("wrote row %zu with sequence %llu: %s  (safe deadline t=%.1fms)",
                          report.rows(), static_cast<unsigned long long>(c.sequence),
                          s.ok() ? "admitted" : s.ToString().c_str(),
                          deadline ? timeline.At(*deadline) : -1.0));
    expect(s.ok(), c.name + "'s write as the holder was refused: " + s.ToString());
  };
  for (int i = 0; i < 3; ++i) {
    if (i > 0) std::this_thread::sleep_for(250ms);
    if (alpha.lease->CheckAlive()) work(alpha);
  }

  // 3. The partition: the store stops answering renewals. (The fault applies to
  //    every lease of the store; alpha is the only one renewing.)
  std::this_thread::sleep_for(50ms);
  store->SetFaults({.renew = {.hang = true}});
  const TimePoint cut = timeline.Now();
  timeline.Print(cut, "--", "renewals of alpha cut (network partition: the store never answers)");

  // alpha keeps working while CheckAlive() says so; we watch for the moment it
  // turns false and compare it with the safe deadline alpha last reported.
  std::optional<TimePoint> alpha_deadline = alpha.lease->safe_deadline();
  std::optional<TimePoint> alpha_dead_at;
  TimePoint next_write = cut + 250ms;
  Contender* successor = nullptr;
  const bool failed_over = PollUntil(timeline, cut + kTtl + 2s, [&] {
    if (!alpha_dead_at) {
      const auto deadline = alpha.lease->safe_deadline();
      if (alpha.lease->CheckAlive()) {
        alpha_deadline = deadline;
        if (timeline.Now() >= next_write) {
          work(alpha);
          next_write += 250ms;
        }
      } else {
        alpha_dead_at = timeline.Now();
      }
    }
    for (Contender* c : {bravo_owner.get(), charlie_owner.get()}) {
      if (!successor && c->AcquiredAt()) successor = c;
    }
    return alpha_dead_at && successor && alpha.LostAt();
  });
  if (!failed_over) {
    std::printf(
        "FAILED: no failover within TTL + 2s of the cut (alpha %s, OnLost %s, "
        "successor %s)\n",
        alpha_dead_at ? "not alive" : "still alive", alpha.LostAt() ? "ran" : "not run",
        successor ? successor->name.c_str() : "none");
    store->SetFaults({});
    return 1;
  }
  Contender& next = *successor;
  Contender& last = &next == bravo_owner.get() ? *charlie_owner : *bravo_owner;
  const AcquireResult& taken = next.acquire.Wait();
  next.sequence = (*taken)->sequence;
  // The new holder renews through the same store: heal the partition now,
  // long before its first renewal (renew_interval after it acquired).
  store->SetFaults({});
  const TimePoint healed = timeline.Now();

  // The three events happened on three threads; print them in time order.
  struct Event {
    TimePoint at;
    std::string who, what;
  };
  std::vector<Event> events;
  events.push_back({*alpha_dead_at, "alpha",
                    Format("CheckAlive() seen false at safe deadline %+.2fms (polled every 0.2ms)",
                           Ms(*alpha_dead_at - *alpha_deadline))});
  {
    std::lock_guard lock(alpha.mu);
    events.push_back({*alpha.lost_at, "alpha",
                      Format("LOST      reason=%s  (OnLost ran at safe deadline %+.2fms)",
                             std::string(leasehold::LossReasonName(alpha.lost->reason)).c_str(),
                             Ms(*alpha.lost_at - *alpha_deadline))});
  }
  const TimePoint next_at = *next.AcquiredAt();
  events.push_back({next_at, next.name,
                    Format("acquired  sequence=%llu  failover %.0fms after the cut; "
                           "%.1fms after alpha's safe deadline",
                           static_cast<unsigned long long>(next.sequence), Ms(next_at - cut),
                           Ms(next_at - *alpha_deadline))});
  events.push_back({healed, "--", "partition healed"});
  std::sort(events.begin(), events.end(),
            [](const Event& a, const Event& b) { return a.at < b.at; });
  for (const Event& e : events) timeline.Print(e.at, e.who, e.what);

  // 4. The new holder writes; then alpha's stale write arrives and is refused.
  work(next);
  const TimePoint stale_at = timeline.Now();
  Status stale = report.Write(alpha.sequence, "a stale row by alpha");
  timeline.Print(stale_at, "alpha",
                 stale.ok() ? Format("write with sequence %llu ADMITTED (fence broken!)",
                                     static_cast<unsigned long long>(alpha.sequence))
                            : Format("write with sequence %llu REJECTED by fence (highest %llu)",
                                     static_cast<unsigned long long>(alpha.sequence),
                                     static_cast<unsigned long long>(report.highest())));
  expect(!stale.ok(), "the fence admitted alpha's stale write");

  // 5. The new holder works across one renewal (the partition is healed), then
  //    hands over gracefully: the last contender is woken by the store's watch.
  std::this_thread::sleep_for(renew_interval + 50ms);
  if (expect(next.lease->CheckAlive(), next.name + " lost the lease after the partition healed")) {
    work(next);
  }
  const TimePoint release_at = timeline.Now();
  Status released = next.lease->Release();
  timeline.Print(release_at, next.name,
                 released.ok() ? "released" : "release failed: " + released.ToString());
  expect(released.ok(), next.name + "'s release failed: " + released.ToString());
  if (!PollUntil(timeline, release_at + 2s, [&] { return last.AcquiredAt().has_value(); })) {
    std::printf("FAILED: %s did not take over within 2s of the release\n", last.name.c_str());
    return 1;
  }
  const AcquireResult& handed = last.acquire.Wait();
  last.sequence = (*handed)->sequence;
  const TimePoint last_at = *last.AcquiredAt();
  timeline.Print(last_at, last.name,
                 Format("acquired  sequence=%llu  hand-off %.2fms",
                        static_cast<unsigned long long>(last.sequence), Ms(last_at - release_at)));
  work(last);
  Status last_released = last.lease->Release();
  timeline.Print(timeline.Now(), last.name, "released");
  expect(last_released.ok(), last.name + "'s release failed: " + last_released.ToString());

  // Invariants.
  DrainCallbacks(runtime);
  long checks = 0;
  const std::optional<std::string> overlap = monitor.Finish(&checks);
  expect(!overlap, "two holders alive at once: " + overlap.value_or(""));
  const bool increasing = alpha.sequence < next.sequence && next.sequence < last.sequence;
  expect(increasing, "sequences not strictly increasing");
  int lost[3];
  int i = 0;
  for (Contender* c : {&alpha, &next, &last}) {
    std::lock_guard lock(c->mu);
    lost[i++] = c->lost_count;
  }
  expect(lost[0] == 1, Format("OnLost ran %d times for alpha (expected exactly once)", lost[0]));
  expect(lost[1] == 0 && lost[2] == 0, "OnLost ran for a holder that released");
  expect(alpha.lost && alpha.lost->reason == leasehold::LossReason::kExpired,
         "alpha's loss reason is not \"expired\"");

  const Duration failover = next_at - cut;
  const Duration margin = next_at - *alpha_deadline;
  const std::string sequences =
      Format("sequences %llu < %llu < %llu", static_cast<unsigned long long>(alpha.sequence),
             static_cast<unsigned long long>(next.sequence),
             static_cast<unsigned long long>(last.sequence));
  std::printf("\nSummary\n");
  std::printf("  %-29s %6.1fms  TTL %s: between TTL - renew interval (%s) and TTL\n",
              "failover after the cut", Ms(failover), leasehold::FormatDuration(kTtl).c_str(),
              leasehold::FormatDuration(kTtl - renew_interval).c_str());
  std::printf(
      "  %-29s %6.1fms  alpha stopped before the store freed the record "
      "(drift allowance %s)\n",
      "alpha's deadline -> takeover", Ms(margin), leasehold::FormatDuration(drift).c_str());
  std::printf("  %-29s %6.2fms  the store's watch woke the waiting contender\n",
              "hand-off on release", Ms(last_at - release_at));
  std::printf("  %-29s strictly increasing: %s\n", sequences.c_str(), increasing ? "yes" : "no");
  std::printf("  %-29s %s\n", "stale write rejected", stale.ok() ? "no" : "yes");
  std::printf("  %-29s alpha %d, %s %d, %s %d\n", "OnLost runs", lost[0], next.name.c_str(),
              lost[1], last.name.c_str(), lost[2]);
  std::printf("  %-29s %s (%ld checks)\n", "two holders alive at once", overlap ? "YES" : "never",
              checks);
  std::printf("  %-29s %zu\n", "rows in the report", report.rows());
  if (!failures.empty()) {
    for (const std::string& f : failures) std::printf("FAILED: %s\n", f.c_str());
    return 1;
  }
  std::printf("\nOK: every invariant held.\n");
  return 0;
}
