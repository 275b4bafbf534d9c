#include <algorithm>
#include <charconv>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "kit/lease_label.h"
#include "kit/renew_batch.h"
#include "kit/watch_registry.h"
#include "leasehold/backends/memory.h"
#include "leasehold/detail/io.h"

namespace leasehold {

struct MemoryStore::State {
  explicit State(std::shared_ptr<Runtime> runtime)
      : runtime(std::move(runtime)), clock(this->runtime->clock()), id(detail::RandomHexId()) {}

  struct Record {
    std::string holder;
    uint64_t sequence = 0;  // the token's value is derived (Token below)
    Duration ttl{};
    TimePoint expires;
    WallTime acquired_at;
    WallTime renewed_at;
  };
  const std::shared_ptr<Runtime> runtime;
  const Clock& clock;
  const std::string id;

  std::mutex mu;
  // One entry per name ever used, never erased: the fencing counter and the
  // change counter outlive the record (release, expiry, Delete).
  struct Entry {
    uint64_t sequence = 0;
    uint64_t version = 0;
    std::optional<Record> record;
  };
  std::unordered_map<std::string, Entry> names;

  // The record for `name`, live or not; null if there is none.
  // The record of `name` as a reader sees it at `now` (holder and time left
  // only while the tenure is live).
  LeaseRecord Read(const std::string& name, const Record& r, TimePoint now) {
    LeaseRecord record;
    record.name = name;
    record.token = Token(name, r.sequence);
    record.acquired_at = r.acquired_at;
    record.renewed_at = r.renewed_at;
    record.version = std::to_string(names[name].version);
    if (Live(r, now)) {
      record.holder = r.holder;
      record.remaining = r.expires - now;
    }
    return record;
  }

  Record* Find(const std::string& name) {
    auto it = names.find(name);
    return it == names.end() || !it->second.record ? nullptr : &*it->second.record;
  }
  kit::WatchRegistry watchers;
  // Only for watched names: the timer and the moment it fires.
  struct ExpiryTimer {
    TimerId id = 0;
    TimePoint at{};
  };
  std::unordered_map<std::string, ExpiryTimer> expiry_timers;
  MemoryFaults faults;
  MemoryStoreStats stats;

  bool Live(const Record& r, TimePoint now) const { return now < r.expires; }

  // Marks a change of `name` and takes its watchers (run after unlocking).
  kit::WatchRegistry::Firing ChangedLocked(const std::string& name) {
    ++names[name].version;
    return watchers.TakeName(name);
  }

  // Watchers must hear about expiry when it happens, so a watched live record
  // has a timer at its expiry. Unwatched records need none. A timer armed for
  // a later expiry (an earlier tenure with a longer TTL) is moved forward: the
  // current record's expiry is the one watchers must hear of on time.
  void ArmExpiryLocked(const std::string& name, const std::weak_ptr<State>& weak) {
    Record* rec = Find(name);
    if (!rec) return;
    if (auto it = expiry_timers.find(name); it != expiry_timers.end()) {
      if (it->second.at <= rec->expires) return;  // fires in time; re-arms if renewed
      runtime->CancelTimer(it->second.id);
      expiry_timers.erase(it);
    }
    const TimerId id = runtime->RunAt(rec->expires, [weak, name] {
      auto self = weak.lock();
      if (!self) return;
      kit::WatchRegistry::Firing notify;
      {
        std::lock_guard lock(self->mu);
        self->expiry_timers.erase(name);
        Record* rec = self->Find(name);
        if (!rec) return;
        if (self->Live(*rec, self->clock.Now())) {
          if (self->watchers.Watching(name))
            self->ArmExpiryLocked(name, weak);  // renewed meanwhile
          return;
        }
        notify = self->ChangedLocked(name);
      }
      notify.Run();
    });
    expiry_timers[name] = ExpiryTimer{id, rec->expires};
  }

  // Tokens are "memory/<store id>/<sequence>/<name>": unique per tenure and
  // per store object. Derived rather than stored, to keep records small.
  FencingToken Token(const std::string& name, uint64_t sequence) const {
    return {"memory/" + id + "/" + std::to_string(sequence) + "/" + name, sequence};
  }
  // token == Token(name, sequence), without building the string.
  bool Matches(const FencingToken& token, std::string_view name, uint64_t sequence) const {
    if (token.sequence != sequence) return false;
    std::string_view v = token.value;
    auto eat = [&v](std::string_view part) {
      if (v.substr(0, part.size()) != part) return false;
      v.remove_prefix(part.size());
      return true;
    };
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, sequence).ptr;
    return eat("memory/") && eat(id) && eat("/") && eat(std::string_view(digits, end - digits)) &&
           eat("/") && v == name;
  }

  // What an operation does under the current faults.
  enum class Plan { kApply, kFail, kHang };
  struct Decision {
    Plan plan;
    Duration latency;
    bool answer_late;
  };
  static Decision DecideLocked(OpFaults& f) {
    if (f.hang) return {Plan::kHang, Duration::zero(), false};
    if (f.unavailable) return {Plan::kFail, f.latency, f.answer_late};
    if (f.fail_next > 0) {
      --f.fail_next;
      return {Plan::kFail, f.latency, f.answer_late};
    }
    return {Plan::kApply, f.latency, f.answer_late};
  }
  // Counts a call in `calls` and decides what the faults of its kind make of
  // it. `calls` and `kind` are members of stats and faults.
  Decision Decide(uint64_t& calls, OpFaults& kind) {
    std::lock_guard lock(mu);
    ++calls;
    return DecideLocked(kind);
  }

  // Carries out `decision`: `op(answer)` applies the operation (answering only
  // if `answer`), `fail(status)` answers an error without effect. With latency,
  // the operation lands `latency` after it was sent; a caller whose deadline
  // comes first is answered kDeadlineExceeded at its deadline, and the
  // operation still lands -- as a timed-out request over a network may.
  // `subject` names what the operation is about, for messages.
  void Execute(const Decision& decision, const std::string& subject, TimePoint deadline,
               std::function<void(bool)> op, std::function<void(Status)> fail) {
    if (decision.plan == Plan::kHang) return;  // never answers, never lands
    auto unavailable = [&subject] {
      return UnavailableError(Where(subject) + ": injected fault: store unavailable");
    };
    if (decision.latency <= Duration::zero()) {
      if (decision.plan == Plan::kApply) {
        op(true);
      } else {
        fail(unavailable());
      }
      return;
    }
    const TimePoint lands = clock.Now() + decision.latency;
    const bool apply = decision.plan == Plan::kApply;
    if (lands > deadline && !decision.answer_late) {
      runtime->RunAt(deadline, [fail, what = Where(subject)] {
        fail(DeadlineExceededError(what + ": no answer before the request's deadline"));
      });
      if (apply) runtime->RunAt(lands, [op] { op(false); });
      return;
    }
    runtime->RunAt(lands, [apply, op, fail, status = unavailable()] {
      if (apply) {
        op(true);
      } else {
        fail(status);
      }
    });
  }

  std::string Describe() const { return "memory:"; }
  // "memory: lease \"jobs\"": prefixes the store's own messages.
  static std::string Where(const std::string& subject) { return "memory: " + subject; }
};

MemoryStore::MemoryStore(std::shared_ptr<Runtime> runtime)
    : Store(runtime), state_(std::make_shared<State>(std::move(runtime))) {}

MemoryStore::~MemoryStore() {
  std::vector<TimerId> timers;
  {
    std::lock_guard lock(state_->mu);
    for (const auto& [name, timer] : state_->expiry_timers) timers.push_back(timer.id);
    state_->expiry_timers.clear();
  }
  for (TimerId id : timers) state_->runtime->CancelTimer(id);
}

std::shared_ptr<MemoryStore> MemoryStore::Shared() {
  static const std::shared_ptr<MemoryStore> store = Create(Runtime::Default());
  return store;
}

std::shared_ptr<MemoryStore> MemoryStore::Create(std::shared_ptr<Runtime> runtime) {
  if (!runtime) runtime = Runtime::Default();
  return std::shared_ptr<MemoryStore>(new MemoryStore(std::move(runtime)));
}

void MemoryStore::SetFaults(const MemoryFaults& faults) {
  std::lock_guard lock(state_->mu);
  state_->faults = faults;
}

MemoryFaults MemoryStore::faults() const {
  std::lock_guard lock(state_->mu);
  return state_->faults;
}

MemoryStoreStats MemoryStore::stats() const {
  std::lock_guard lock(state_->mu);
  return state_->stats;
}

std::string MemoryStore::Describe() const { return state_->Describe(); }

StoreCapabilities MemoryStore::capabilities() const { return {.fencing = true, .watch = true}; }

void MemoryStore::Acquire(AcquireRequest request, AcquireCallback done) {
  State& s = *state_;
  const State::Decision decision = s.Decide(s.stats.acquire_calls, s.faults.acquire);
  auto state = state_;
  auto op = [state, request, done](bool answer) {
    State& s = *state;
    kit::WatchRegistry::Firing notify;
    Result<AcquireOutcome> result = InternalError("unset");
    {
      std::lock_guard lock(s.mu);
      const TimePoint now = s.clock.Now();
      State::Entry& entry = s.names[request.name];
      if (entry.record && s.Live(*entry.record, now)) {
        State::Record& r = *entry.record;
        if (r.holder == request.holder) {
          // Our own live tenure: idempotent, and it counts as a renewal.
          r.expires = now + request.ttl;
          r.ttl = request.ttl;
          r.renewed_at = s.clock.WallNow();
          result = AcquireOutcome(
              Acquired{s.Token(request.name, r.sequence), request.ttl, std::nullopt});
        } else {
          result = AcquireOutcome(Contended{r.holder, std::to_string(entry.version), std::nullopt});
        }
      } else if (s.faults.conflict_next_acquires > 0) {
        --s.faults.conflict_next_acquires;
        result = AbortedError(State::Where(kit::LeaseLabel(request.name)) +
                              ": injected fault: lost compare-and-swap");
      } else {
        const uint64_t sequence = ++entry.sequence;
        const WallTime wall = s.clock.WallNow();
        entry.record =
            State::Record{request.holder, sequence, request.ttl, now + request.ttl, wall, wall};
        notify = s.ChangedLocked(request.name);
        result =
            AcquireOutcome(Acquired{s.Token(request.name, sequence), request.ttl, std::nullopt});
      }
    }
    notify.Run();
    if (answer) done(std::move(result));
  };
  s.Execute(decision, kit::LeaseLabel(request.name), request.deadline, std::move(op),
            [done](Status status) { done(std::move(status)); });
}

void MemoryStore::Renew(std::vector<RenewRequest> batch, RenewCallback done) {
  State& s = *state_;
  State::Decision decision;
  const TimePoint deadline = kit::EarliestDeadline(batch);
  {
    std::lock_guard lock(s.mu);
    ++s.stats.renew_calls;
    s.stats.renewed_leases += batch.size();
    decision = State::DecideLocked(s.faults.renew);
  }
  const size_t n = batch.size();
  auto state = state_;
  auto requests = std::make_shared<std::vector<RenewRequest>>(std::move(batch));
  auto op = [state, requests, done](bool answer) {
    State& s = *state;
    std::vector<Result<RenewOutcome>> results;
    results.reserve(requests->size());
    {
      std::lock_guard lock(s.mu);
      const TimePoint now = s.clock.Now();
      const WallTime wall = s.clock.WallNow();
      for (const RenewRequest& q : *requests) {
        State::Record* found = s.Find(q.name);
        if (!found) {
          results.emplace_back(RenewOutcome(Lost{LossReason::kDeleted, "the record is gone"}));
          continue;
        }
        State::Record& r = *found;
        if (r.holder != q.holder || !s.Matches(q.token, q.name, r.sequence)) {
          results.emplace_back(RenewOutcome(Lost{
              LossReason::kTakenOver,
              "now held by \"" + r.holder + "\" (sequence " + std::to_string(r.sequence) + ")"}));
        } else if (!s.Live(r, now)) {
          // Never resurrect: the store already let it go.
          results.emplace_back(RenewOutcome(Lost{LossReason::kExpired, "expired in the store"}));
        } else {
          r.expires = now + q.ttl;
          r.ttl = q.ttl;
          r.renewed_at = wall;
          results.emplace_back(RenewOutcome(Renewed{q.ttl, std::nullopt}));
        }
      }
    }
    if (answer) done(std::move(results));
  };
  const std::string subject = n == 1 ? kit::LeaseLabel(requests->front().name)
                                     : "renewal of " + std::to_string(n) + " leases";
  s.Execute(decision, subject, deadline, std::move(op),
            [done, n](Status status) { done(kit::AllFailed(n, status)); });
}

void MemoryStore::Release(ReleaseRequest request, StatusCallback done) {
  State& s = *state_;
  const State::Decision decision = s.Decide(s.stats.release_calls, s.faults.release);
  auto state = state_;
  auto op = [state, request, done](bool answer) {
    State& s = *state;
    kit::WatchRegistry::Firing notify;
    {
      std::lock_guard lock(s.mu);
      State::Record* r = s.Find(request.name);
      // Conditional on our tenure: a record naming anyone else is left alone.
      if (r && r->holder == request.holder && s.Matches(request.token, request.name, r->sequence)) {
        s.names[request.name].record.reset();
        notify = s.ChangedLocked(request.name);
      }
    }
    notify.Run();
    if (answer) done(Status::Ok());
  };
  s.Execute(decision, kit::LeaseLabel(request.name), request.deadline, std::move(op),
            std::move(done));
}

void MemoryStore::Inspect(std::string name, TimePoint, InspectCallback done) {
  State& s = *state_;
  Result<LeaseRecord> result = NotFoundError(State::Where(kit::LeaseLabel(name)) + ": no record");
  {
    std::lock_guard lock(s.mu);
    ++s.stats.inspect_calls;
    if (const State::Record* found = s.Find(name)) {
      result = s.Read(name, *found, s.clock.Now());
    }
  }
  done(std::move(result));
}

void MemoryStore::List(std::string prefix, TimePoint, ListCallback done) {
  State& s = *state_;
  std::vector<LeaseRecord> records;
  {
    std::lock_guard lock(s.mu);
    const TimePoint now = s.clock.Now();
    for (const auto& [name, entry] : s.names) {
      if (entry.record && name.starts_with(prefix)) {
        records.push_back(s.Read(name, *entry.record, now));
      }
    }
  }
  std::sort(records.begin(), records.end(),
            [](const LeaseRecord& a, const LeaseRecord& b) { return a.name < b.name; });
  done(std::move(records));
}

WatchId MemoryStore::Watch(const std::string& name, const std::string& version, Task on_change) {
  State& s = *state_;
  WatchId id;
  kit::WatchRegistry::Firing already_changed;
  {
    // Under mu: a change after the check takes this watcher.
    std::lock_guard lock(s.mu);
    id = s.watchers.Add(name, version, std::move(on_change));
    const State::Record* r = s.Find(name);
    const bool live = r && s.Live(*r, s.clock.Now());
    if (!live || std::to_string(s.names[name].version) != version) {
      already_changed = s.watchers.Take({id});
    } else {
      s.ArmExpiryLocked(name, state_);
    }
  }
  already_changed.Run();
  return id;
}

void MemoryStore::CancelWatch(WatchId id) noexcept { state_->watchers.Cancel(id); }

uint64_t MemoryStore::TakeOver(const std::string& name, const std::string& holder, Duration ttl) {
  State& s = *state_;
  kit::WatchRegistry::Firing notify;
  uint64_t sequence;
  {
    std::lock_guard lock(s.mu);
    State::Entry& entry = s.names[name];
    sequence = ++entry.sequence;
    const WallTime wall = s.clock.WallNow();
    entry.record = State::Record{holder, sequence, ttl, s.clock.Now() + ttl, wall, wall};
    notify = s.ChangedLocked(name);
    if (s.watchers.Watching(name)) s.ArmExpiryLocked(name, state_);
  }
  notify.Run();
  return sequence;
}

bool MemoryStore::Delete(const std::string& name) {
  State& s = *state_;
  kit::WatchRegistry::Firing notify;
  {
    std::lock_guard lock(s.mu);
    State::Record* r = s.Find(name);
    if (!r) return false;
    s.names[name].record.reset();
    notify = s.ChangedLocked(name);
  }
  notify.Run();
  return true;
}

void MemoryStore::Break(std::string name, TimePoint, StatusCallback done) {
  Delete(name);
  done(Status::Ok());
}

bool MemoryStore::ExpireNow(const std::string& name) {
  State& s = *state_;
  kit::WatchRegistry::Firing notify;
  {
    std::lock_guard lock(s.mu);
    State::Record* r = s.Find(name);
    const TimePoint now = s.clock.Now();
    if (!r || !s.Live(*r, now)) return false;
    r->expires = now;
    notify = s.ChangedLocked(name);
  }
  notify.Run();
  return true;
}

}  // namespace leasehold
