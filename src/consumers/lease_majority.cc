// LeaseMajority. The invariants that make it safe (docs/lease-majority.md):
//
//   * A decision is written only by the answer of the attempt of the current
//     epoch that is still pending (`pending_`), or by a record observation of
//     the current epoch. Everything else is late and never decides.
//   * A tenure this member holds is renewed only while it backs a decision
//     (a win). Every other tenure -- a late win of an abandoned attempt -- is
//     released at once, and no attempt of ours starts while a release or an
//     abandoned attempt is settling (`settling_`), nor while a tenure whose
//     release failed may still be live (`no_attempt_before_`): a same-identity
//     acquire would extend it, and an extended tenure looks like a decision
//     to the members that read the record.
//   * Hence "the same tenure is still live later than it could have lived
//     without a renewal" proves its holder won: that is what non-deciders
//     adopt.
#include "leasehold/lease_majority.h"

#include <algorithm>
#include <mutex>
#include <optional>
#include <sstream>
#include <utility>

namespace leasehold {

namespace {

std::string Fingerprint(const PartitionView& view) {
  std::vector<const Member*> members;
  members.reserve(view.members.size());
  for (const Member& m : view.members) members.push_back(&m);
  std::sort(members.begin(), members.end(),
            [](const Member* a, const Member* b) { return a->address < b->address; });
  std::ostringstream out;
  out << view.self.size() << ':' << view.self << '|';
  for (const Member* m : members) {
    out << m->address.size() << ':' << m->address << '/' << static_cast<int>(m->status) << '/'
        << (view.unreachable.count(m->address) ? 'u' : 'r');
    for (const std::string& role : m->roles) out << role.size() << ':' << role;
    out << ';';
  }
  return out.str();
}

Decision Undecided(std::string why) {
  Decision d;
  d.kind = DecisionKind::kNoDecision;
  d.explanation = std::move(why);
  return d;
}

std::string Counts(const Sides& s) {
  return std::to_string(s.own_counted) + " counted members here, " +
         std::to_string(s.other_counted) + " unreachable";
}

}  // namespace

struct LeaseMajority::Impl : std::enable_shared_from_this<LeaseMajority::Impl> {
  Impl(std::shared_ptr<Lease> l, LeaseMajorityOptions o)
      : lease(std::move(l)),
        runtime(lease->store()->runtime()),
        clock(runtime->clock()),
        options(std::move(o)),
        ttl(lease->options().ttl),
        drift(lease->options().drift_allowance.value_or(Duration::zero())),
        fencing(lease->SupportsFencing()) {}

  Decision Decide(const PartitionView& view);
  void OnViewChangeLocked(std::string key, Sides sides, TimePoint now);
  void AbandonLocked();
  void OnAttemptTimeout(uint64_t id);
  void OnAttemptResult(uint64_t id, const AcquireResult& result);
  void OnRecord(uint64_t epoch, TimePoint sent, Result<LeaseRecord> record);
  void MaybeReleaseLocked(TimePoint now);
  // Starts Lease::Release() on the blocking lane (it waits for the store).
  // `late_win`: releasing the tenure of an abandoned attempt (fail-safe on
  // failure) rather than a decision's tenure whose job is done.
  void StartReleaseLocked(TimePoint now, bool late_win);
  void OnReleased(const Status& status, TimePoint sent, bool late_win);
  Decision WinLocked(std::optional<FencingToken> token, std::string why);
  Decision LossLocked(std::string why);
  // The member of the current view whose address the holder identity names
  // ("<address>" or "<address>#<suffix>", lease.h); empty if none.
  std::string MemberOfLocked(const std::string& holder) const;
  Duration LingerAfter() const { return ttl + drift; }

  const std::shared_ptr<Lease> lease;
  const std::shared_ptr<Runtime> runtime;
  const Clock& clock;
  const LeaseMajorityOptions options;
  const Duration ttl;
  const Duration drift;
  const bool fencing;

  mutable std::mutex mu;
  bool shut_down = false;
  // The current view.
  std::string key;
  uint64_t epoch = 0;
  TimePoint stable_since{};
  std::optional<Sides> sides;
  bool view_clear = false;  // nobody unreachable in the current view
  std::optional<Decision> cached;
  std::optional<std::string> refused_key;  // fail-safe: no decision for this view
  // Attempts.
  uint64_t last_attempt = 0;
  uint64_t pending = 0;  // the current epoch's attempt awaiting its answer
  TimerId attempt_timer = 0;
  int settling = 0;  // abandoned attempts and releases in flight
  TimePoint no_attempt_before{};
  TimePoint retry_at{};
  std::string last_error;
  // The tenure that backs a win.
  bool holding = false;
  TimePoint won_at{};
  TimerId release_timer = 0;
  // Non-deciders: what the record showed.
  struct Observation {
    FencingToken token;
    std::string holder;
    TimePoint proof_at;  // still live when read at or after this: renewed since
  };
  bool read_in_flight = false;
  TimePoint next_read_at{};
  std::optional<Observation> observed;
  LeaseMajorityStats stats;
};

Result<std::unique_ptr<LeaseMajority>> LeaseMajority::Create(std::shared_ptr<Lease> lease,
                                                             LeaseMajorityOptions o) {
  if (!lease) return InvalidArgumentError("LeaseMajority: lease is null");
  auto negative = [](const char* field, Duration d) -> Status {
    if (d < Duration::zero()) {
      return InvalidArgumentError(std::string("LeaseMajority: ") + field + " must be >= 0, got " +
                                  FormatDuration(d));
    }
    return Status::Ok();
  };
  for (const auto& [field, d] : {std::pair<const char*, Duration>{"stable_after", o.stable_after},
                                 {"minority_delay", o.minority_delay},
                                 {"acquire_timeout", o.acquire_timeout},
                                 {"retry_interval", o.retry_interval},
                                 {"poll_interval", o.poll_interval},
                                 {"release_after", o.release_after}}) {
    if (Status s = negative(field, d); !s.ok()) return s;
  }
  const LeaseOptions& lo = lease->options();
  if (o.acquire_timeout == Duration::zero()) o.acquire_timeout = 2 * lo.request_timeout;
  if (o.retry_interval == Duration::zero()) o.retry_interval = lo.request_timeout;
  if (o.poll_interval == Duration::zero()) o.poll_interval = lo.renew_interval;
  if (o.release_after == Duration::zero()) {
    o.release_after = o.stable_after + o.minority_delay + 2 * o.acquire_timeout + 2 * lo.ttl;
  }
  auto impl = std::make_shared<Impl>(std::move(lease), std::move(o));
  return std::unique_ptr<LeaseMajority>(new LeaseMajority(std::move(impl)));
}

LeaseMajority::LeaseMajority(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

LeaseMajority::~LeaseMajority() {
  std::vector<TimerId> timers;
  {
    std::lock_guard lock(impl_->mu);
    impl_->shut_down = true;
    for (TimerId* t : {&impl_->attempt_timer, &impl_->release_timer}) {
      if (*t) timers.push_back(std::exchange(*t, 0));
    }
  }
  for (TimerId t : timers) impl_->runtime->CancelTimer(t);
}

Decision LeaseMajority::Decide(const PartitionView& view) { return impl_->Decide(view); }
const LeaseMajorityOptions& LeaseMajority::options() const noexcept { return impl_->options; }
LeaseMajorityStats LeaseMajority::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

Decision LeaseMajority::Impl::Decide(const PartitionView& view) {
  SidesResult split = SplitView(view, options.role);
  if (!split.sides) {
    Decision d;
    d.kind = DecisionKind::kInvalidView;
    d.explanation = "invalid view: " + split.error;
    return d;
  }
  if (view.self != lease->options().owner) {
    Decision d;
    d.kind = DecisionKind::kInvalidView;
    d.explanation = "invalid view: self \"" + view.self + "\" is not the lease's owner \"" +
                    lease->options().owner + "\"";
    return d;
  }
  std::string k = Fingerprint(view);
  enum class Action { kAcquire, kRead } action;
  uint64_t id = 0;
  uint64_t my_epoch = 0;
  TimePoint now;
  {
    std::lock_guard lock(mu);
    now = clock.Now();
    if (k != key) OnViewChangeLocked(std::move(k), std::move(*split.sides), now);
    if (refused_key && *refused_key == key) {
      return Undecided(
          "fail-safe: the release of an abandoned attempt's tenure was not confirmed; no decision "
          "until the view changes");
    }
    if (cached) return *cached;
    const Sides& s = *sides;
    if (s.other.empty()) {
      view_clear = true;
      MaybeReleaseLocked(now);
      Decision d;
      d.kind = DecisionKind::kNothingToDecide;
      d.explanation = "nobody is unreachable";
      return d;
    }
    view_clear = false;
    if (now < stable_since + options.stable_after) {
      return Undecided("waiting for the view to be stable for " +
                       FormatDuration(options.stable_after) + ": " +
                       FormatDuration(stable_since + options.stable_after - now) + " left");
    }
    if (s.own_counted > s.other_counted) {
      cached = Decision{DecisionKind::kDownUnreachable, s.other, std::nullopt,
                        "strict majority: " + Counts(s)};
      return *cached;
    }
    if (s.own_counted < s.other_counted) {
      cached = Decision{DecisionKind::kDownOwnSide, s.own, std::nullopt,
                        "strict minority: " + Counts(s)};
      return *cached;
    }
    if (s.own_counted == 0) {
      return Undecided("no member counts on either side (role \"" + options.role + "\")");
    }
    if (s.own_lowest == view.self) {
      // The decider of our side.
      if (pending) return Undecided("equal split: our acquire is pending");
      if (settling > 0) {
        return Undecided("equal split: waiting for an abandoned attempt (or a release) to settle");
      }
      if (now < no_attempt_before) {
        return Undecided("equal split: a tenure of ours whose release failed may live until " +
                         FormatDuration(no_attempt_before - now) + " from now");
      }
      if (now < retry_at) return Undecided("equal split: the acquire failed: " + last_error);
      if (s.own.size() < s.other.size()) {
        const TimePoint start = stable_since + options.stable_after + options.minority_delay;
        if (now < start) {
          return Undecided("equal split, fewer members here: waiting " +
                           FormatDuration(start - now) + " before trying the lease");
        }
      }
      id = ++last_attempt;
      pending = id;
      ++stats.attempts;
      attempt_timer = runtime->RunAt(now + options.acquire_timeout, [weak = weak_from_this(), id] {
        if (auto self = weak.lock()) self->OnAttemptTimeout(id);
      });
      action = Action::kAcquire;
    } else {
      // Not the decider: adopt what the record proves.
      if (read_in_flight || now < next_read_at) {
        return Undecided("equal split: waiting for our side's decider \"" + s.own_lowest +
                         "\" (reading the lease record)");
      }
      read_in_flight = true;
      ++stats.record_reads;
      action = Action::kRead;
    }
    my_epoch = epoch;
  }
  // Outside the lock: both may answer inline.
  if (action == Action::kAcquire) {
    // The engine keeps the attempt open one TTL past our own timeout, so that
    // a late win reaches us (we release it and see whether that worked)
    // rather than being given back where we cannot see it.
    Future<AcquireResult> f = lease->StartAcquire({.timeout = options.acquire_timeout + ttl});
    f.Then([weak = weak_from_this(), lease = lease, rt = runtime, id](const AcquireResult& r) {
      if (auto self = weak.lock()) {
        self->OnAttemptResult(id, r);
      } else if (r.ok() && r->has_value()) {
        rt->PostBlocking([lease] { (void)lease->Release(); });
      }
    });
  } else {
    lease->store()->Inspect(lease->name(), now + lease->options().request_timeout,
                            [weak = weak_from_this(), my_epoch, now](Result<LeaseRecord> r) {
                              if (auto self = weak.lock())
                                self->OnRecord(my_epoch, now, std::move(r));
                            });
  }
  std::lock_guard lock(mu);
  if (epoch == my_epoch && cached) return *cached;
  if (action == Action::kAcquire && epoch == my_epoch && pending != id && !last_error.empty()) {
    return Undecided("equal split: the acquire failed: " + last_error);  // answered at once
  }
  return Undecided(action == Action::kAcquire ? "equal split: acquire started"
                                              : "equal split: reading the lease record");
}

void LeaseMajority::Impl::OnViewChangeLocked(std::string k, Sides s, TimePoint now) {
  key = std::move(k);
  ++epoch;
  stable_since = now;
  sides = std::move(s);
  cached.reset();
  refused_key.reset();
  if (pending) AbandonLocked();
  retry_at = TimePoint{};
  last_error.clear();
  observed.reset();
  read_in_flight = false;  // an answer of the old epoch is ignored
  next_read_at = TimePoint{};
}

void LeaseMajority::Impl::AbandonLocked() {
  // Its answer, whenever it comes, is late (OnAttemptResult).
  pending = 0;
  ++settling;
  ++stats.abandoned;
  if (attempt_timer) runtime->CancelTimer(std::exchange(attempt_timer, 0));
}

void LeaseMajority::Impl::OnAttemptTimeout(uint64_t id) {
  std::lock_guard lock(mu);
  if (pending != id) return;
  attempt_timer = 0;
  last_error = "no answer within acquire_timeout " + FormatDuration(options.acquire_timeout);
  retry_at = clock.Now() + options.retry_interval;
  AbandonLocked();
}

Decision LeaseMajority::Impl::WinLocked(std::optional<FencingToken> token, std::string why) {
  Decision d{DecisionKind::kDownUnreachable, sides->other, std::nullopt, std::move(why)};
  if (fencing) d.token = std::move(token);
  return d;
}

Decision LeaseMajority::Impl::LossLocked(std::string why) {
  return Decision{DecisionKind::kDownOwnSide, sides->own, std::nullopt, std::move(why)};
}

void LeaseMajority::Impl::OnAttemptResult(uint64_t id, const AcquireResult& r) {
  std::lock_guard lock(mu);
  const TimePoint now = clock.Now();
  const bool won = r.ok() && r->has_value();
  if (shut_down) {
    if (won) StartReleaseLocked(now, /*late_win=*/false);
    return;
  }
  if (id == pending) {
    pending = 0;
    if (attempt_timer) runtime->CancelTimer(std::exchange(attempt_timer, 0));
    if (!r.ok()) {
      last_error = r.status().ToString();
      retry_at = now + options.retry_interval;
      if (r.status().code() == StatusCode::kDeadlineExceeded) {
        // It may have landed, unseen, and been given back by the engine
        // without us seeing whether that worked.
        no_attempt_before = std::max(no_attempt_before, now + LingerAfter());
      }
      return;
    }
    if (won) {
      holding = true;
      won_at = now;
      cached = WinLocked(**r, "equal split: we hold the lease: " + Counts(*sides));
    } else {
      cached = LossLocked("equal split: the lease is held by the other side: " + Counts(*sides));
    }
    return;
  }
  // The answer of an abandoned attempt: never a decision.
  if (won && !(holding && lease->CheckAlive())) {
    StartReleaseLocked(now, /*late_win=*/true);  // takes over this settling slot
    --settling;
    return;
  }
  --settling;
  if (!r.ok() && r.status().code() == StatusCode::kDeadlineExceeded) {
    no_attempt_before = std::max(no_attempt_before, now + LingerAfter());
  }
}

void LeaseMajority::Impl::MaybeReleaseLocked(TimePoint now) {
  if (!holding || !view_clear || shut_down) return;
  if (!lease->CheckAlive()) {
    holding = false;  // lost meanwhile: nothing to give back
    return;
  }
  const TimePoint due = won_at + options.release_after;
  if (now >= due) {
    holding = false;
    StartReleaseLocked(now, /*late_win=*/false);
    return;
  }
  if (release_timer) return;
  release_timer = runtime->RunAt(due, [weak = weak_from_this()] {
    auto self = weak.lock();
    if (!self) return;
    std::lock_guard lock(self->mu);
    self->release_timer = 0;
    self->MaybeReleaseLocked(self->clock.Now());
  });
}

void LeaseMajority::Impl::StartReleaseLocked(TimePoint now, bool late_win) {
  ++settling;
  ++stats.released;
  // Lease::Release() waits for the store: never on a loop thread, never here.
  runtime->PostBlocking([weak = weak_from_this(), lease = lease, now, late_win] {
    Status s = lease->Release();
    if (auto self = weak.lock()) self->OnReleased(s, now, late_win);
  });
}

void LeaseMajority::Impl::OnReleased(const Status& status, TimePoint sent, bool late_win) {
  std::lock_guard lock(mu);
  --settling;
  if (status.ok()) return;
  ++stats.failed_releases;
  // The record may name us until it expires unrenewed; asking again before
  // then would extend it.
  no_attempt_before = std::max(no_attempt_before, sent + LingerAfter());
  if (late_win) refused_key = key;
}

std::string LeaseMajority::Impl::MemberOfLocked(const std::string& holder) const {
  std::string best;
  auto consider = [&](const std::string& address) {
    const bool match =
        holder == address || (holder.size() > address.size() && holder[address.size()] == '#' &&
                              holder.compare(0, address.size(), address) == 0);
    if (match && address.size() > best.size()) best = address;
  };
  for (const auto& a : sides->own) consider(a);
  for (const auto& a : sides->other) consider(a);
  return best;
}

void LeaseMajority::Impl::OnRecord(uint64_t my_epoch, TimePoint sent, Result<LeaseRecord> r) {
  std::lock_guard lock(mu);
  if (my_epoch != epoch || shut_down) return;
  read_in_flight = false;
  const TimePoint now = clock.Now();
  next_read_at = now + options.poll_interval;
  if (cached) return;
  if (!r.ok() || r->holder.empty() || !r->remaining) {
    if (!r.ok() && r.status().code() != StatusCode::kNotFound) return;  // keep what we saw
    observed.reset();
    return;
  }
  if (!observed || observed->token != r->token || observed->holder != r->holder) {
    // Without a renewal this tenure is gone by proof_at (store time runs at
    // most the drift allowance faster or slower than ours).
    const Duration remaining = *r->remaining;
    observed = Observation{r->token, r->holder,
                           now + remaining + drift + remaining / 50 + std::chrono::milliseconds(1)};
    next_read_at = observed->proof_at;
    return;
  }
  if (sent < observed->proof_at) {
    next_read_at = observed->proof_at;
    return;
  }
  const std::string member = MemberOfLocked(r->holder);
  if (sides->own.count(member)) {
    cached = WinLocked(r->token, "equal split: adopted: \"" + r->holder +
                                     "\" of our side holds the lease and renews it");
  } else if (sides->other.count(member)) {
    cached = LossLocked("equal split: adopted: \"" + r->holder +
                        "\" of the other side holds the lease and renews it");
  }
}

}  // namespace leasehold
