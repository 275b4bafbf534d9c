// LeaseMajority. The invariants that make it safe (docs/lease-majority.md):
//
//   * A decision is written only by the answer of the attempt of the current
//     epoch that is still pending (`pending_`), or by a record observation of
//     the current epoch. Everything else is late and never decides.
//   * A tenure this member holds is renewed only while it backs a decision
//     (a win). Every other tenure -- a late win of an abandoned attempt -- is
//     released from inside the attempt's continuation, before the engine can
//     renew it (lease.h: no renewal before the continuations ran). Each
//     attempt sends at most one request that can take effect
//     (AcquireOptions::attempts = 1), so nothing inside an attempt renews an
//     unseen tenure either.
//   * No attempt of ours starts while a release or an abandoned attempt is
//     settling (`settling`), nor while a tenure of ours that backs no
//     decision may be live in the store (`no_attempt_before`): one an
//     attempt may have created unseen (it ended in an error: the request may
//     land up to one request timeout after the answer), one whose release
//     failed, or a decision's tenure lost locally. A same-identity acquire
//     would extend it, and an extended tenure looks like a decision to the
//     members that read the record.
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
        request_timeout(lease->options().request_timeout),
        fencing(lease->SupportsFencing()) {}

  Decision Decide(const PartitionView& view);
  void OnViewChangeLocked(std::string key, Sides sides, TimePoint now);
  void AbandonLocked();
  void OnAttemptTimeout(uint64_t id);
  void OnAttemptResult(uint64_t id, const AcquireResult& result);
  void OnRecord(uint64_t epoch, TimePoint sent, Result<LeaseRecord> record);
  // True when the decision's tenure is to be released now (the caller
  // calls Release(false) after unlocking); else arms the release timer.
  bool MaybeReleaseLocked(TimePoint now);
  // Starts Lease::StartRelease(); call it outside `mu` (the store may answer
  // inline), after counting it in `settling`. `late_win`: the tenure of an
  // abandoned attempt, never renewed (fail-safe on failure); otherwise a
  // decision's tenure, renewed until now.
  void Release(bool late_win);
  void OnReleased(const Status& status, TimePoint sent, bool late_win);
  // A decision's tenure that is no longer alive (lost, not released) may
  // live on in the store, renewed by a request sent before the loss.
  void NoteLostLocked(TimePoint now);
  Decision WinLocked(std::optional<FencingToken> token, std::string why);
  Decision LossLocked(std::string why);
  // The member of the current view whose address the holder identity names
  // ("<address>" or "<address>#<suffix>", lease.h); empty if none.
  std::string MemberOfLocked(const std::string& holder) const;
  // How long a tenure written by a request sent at t can live past t: the
  // request lands by its deadline plus the settling bound (two request
  // timeouts), then lives one TTL on the store's clock (drift included).
  Duration LingerAfter() const { return 2 * request_timeout + ttl + drift; }

  const std::shared_ptr<Lease> lease;
  const std::shared_ptr<Runtime> runtime;
  const Clock& clock;
  const LeaseMajorityOptions options;
  const Duration ttl;
  const Duration drift;
  const Duration request_timeout;
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
  FencingToken held_token;  // of the decision's tenure while `holding`
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
    // docs/lease-majority.md, Timings: the other side's worst-case time to
    // decide once faults stop, plus the adoption window of either side's
    // non-deciders (two reads around one unrenewed lifetime).
    const Duration drift = *lo.drift_allowance;
    o.release_after = o.stable_after + o.minority_delay + o.acquire_timeout + o.retry_interval +
                      2 * lo.request_timeout + 2 * o.poll_interval + 3 * lo.ttl + 2 * drift +
                      lo.ttl / 50;
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
    std::unique_lock lock(mu);
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
      const bool release = MaybeReleaseLocked(now);
      lock.unlock();
      if (release) Release(/*late_win=*/false);
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
      NoteLostLocked(now);
      if (pending) return Undecided("equal split: our acquire is pending");
      if (settling > 0) {
        return Undecided("equal split: waiting for an abandoned attempt (or a release) to settle");
      }
      if (now < no_attempt_before) {
        const std::string left = FormatDuration(no_attempt_before - now);
        if (!last_error.empty()) {
          return Undecided("equal split: the acquire failed: " + last_error +
                           "; the next waits until a tenure it may have written unseen has "
                           "expired (" +
                           left + ")");
        }
        return Undecided(
            "equal split: a tenure of ours that backs no decision (an abandoned attempt, a "
            "release that failed, or a lost tenure) may live in the store for " +
            left + " more");
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
    // rather than being given back where we cannot see it. One request per
    // attempt: retries are ours (retry_interval), so no request of an attempt
    // can extend a tenure an earlier one created unseen.
    Future<AcquireResult> f =
        lease->StartAcquire({.timeout = options.acquire_timeout + ttl, .attempts = 1});
    f.Then([weak = weak_from_this(), lease = lease, id](const AcquireResult& r) {
      if (auto self = weak.lock()) {
        self->OnAttemptResult(id, r);
      } else if (r.ok() && r->has_value()) {
        (void)lease->StartRelease();  // before the engine could renew it
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
  // Runs as the acquire Future's continuation: a win released from here is
  // never renewed first (lease.h).
  bool release = false;
  bool late = false;
  {
    std::lock_guard lock(mu);
    const TimePoint now = clock.Now();
    const bool won = r.ok() && r->has_value();
    const bool current = id == pending;
    if (current) {
      pending = 0;
      if (attempt_timer) runtime->CancelTimer(std::exchange(attempt_timer, 0));
    } else {
      --settling;  // an abandoned attempt's answer (AbandonLocked)
    }
    if (!r.ok()) {
      // Its one request may have landed unseen, up to the settling bound
      // after this answer: no attempt of ours may extend that tenure.
      no_attempt_before = std::max(no_attempt_before, now + LingerAfter());
    }
    if (shut_down) {
      release = won;
    } else if (current) {
      if (!r.ok()) {
        last_error = r.status().ToString();
        retry_at = now + options.retry_interval;
      } else if (won) {
        holding = true;
        held_token = **r;
        won_at = now;
        cached = WinLocked(**r, "equal split: we hold the lease: " + Counts(*sides));
      } else {
        cached = LossLocked("equal split: the lease is held by the other side: " + Counts(*sides));
      }
    } else if (won && !(holding && **r == held_token && lease->CheckAlive())) {
      // The answer of an abandoned attempt: never a decision. Unless it is
      // the decision's tenure we still hold (the engine answered a
      // same-identity acquire with it), give it back.
      release = true;
      late = true;
    }
    if (release) {
      ++settling;
      ++stats.released;
    }
  }
  if (release) Release(late);
}

bool LeaseMajority::Impl::MaybeReleaseLocked(TimePoint now) {
  if (!holding || !view_clear || shut_down) return false;
  NoteLostLocked(now);
  if (!holding) return false;  // lost meanwhile: nothing to give back
  const TimePoint due = won_at + options.release_after;
  if (now >= due) {
    holding = false;
    ++settling;
    ++stats.released;
    return true;
  }
  if (release_timer) return false;
  release_timer = runtime->RunAt(due, [weak = weak_from_this()] {
    auto self = weak.lock();
    if (!self) return;
    bool release;
    {
      std::lock_guard lock(self->mu);
      self->release_timer = 0;
      release = self->MaybeReleaseLocked(self->clock.Now());
    }
    if (release) self->Release(/*late_win=*/false);
  });
  return false;
}

void LeaseMajority::Impl::NoteLostLocked(TimePoint now) {
  if (!holding || lease->CheckAlive()) return;
  holding = false;
  // Its last renewal was sent before now and may still land.
  no_attempt_before = std::max(no_attempt_before, now + LingerAfter());
}

void LeaseMajority::Impl::Release(bool late_win) {
  const TimePoint sent = clock.Now();
  lease->StartRelease().Then([weak = weak_from_this(), sent, late_win](const Status& s) {
    if (auto self = weak.lock()) self->OnReleased(s, sent, late_win);
  });
}

void LeaseMajority::Impl::OnReleased(const Status& status, TimePoint sent, bool late_win) {
  std::lock_guard lock(mu);
  --settling;
  if (status.ok()) return;
  ++stats.failed_releases;
  // The record may name us until it expires; a renewal sent just before the
  // release may still land. Asking again before then would extend it.
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
