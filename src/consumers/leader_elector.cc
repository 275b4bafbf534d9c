// LeaderElector: a waiting acquire, an OnLost handler, and a periodic read of
// the record for on_new_leader. Ordering of callbacks comes from the runtime's
// single callback lane: on_started_leading is posted when the win is seen, the
// Lease posts OnLost (our handler, which runs on_stopped_leading) only after
// that, so "started" always precedes "stopped" for one tenure.
#include "leasehold/leader_elector.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace leasehold {

struct LeaderElector::Impl : std::enable_shared_from_this<LeaderElector::Impl> {
  Impl(std::shared_ptr<Lease> l, LeaderElectorOptions o)
      : lease(std::move(l)),
        runtime(lease->store()->runtime()),
        clock(runtime->clock()),
        options(std::move(o)) {}

  void Campaign();
  void OnCampaign(const AcquireResult& r);
  void RunLeading(const FencingToken& token, std::stop_token stop, bool announce);
  void OnLost();
  void Observe();
  // `sent`: when the read was sent. Observations are ordered by it.
  void OnRecord(TimePoint sent, Result<LeaseRecord> r);
  void ScheduleLocked(TimerId& timer, void (Impl::*method)());
  void Shutdown();
  void FinishShutdown(bool was_leading, bool on_callback_lane);
  void Announce(const std::string& identity);
  Duration StalenessBound() const {
    return options.retry_period + lease->options().request_timeout;
  }

  const std::shared_ptr<Lease> lease;
  const std::shared_ptr<Runtime> runtime;
  const Clock& clock;
  const LeaderElectorOptions options;

  mutable std::mutex mu;
  std::condition_variable cv;
  bool started = false;
  bool stopped = false;
  bool campaigning = false;
  std::stop_source campaign_stop;
  bool leading = false;
  std::atomic<bool> leading_flag{false};
  std::stop_source term_stop;
  int leading_callbacks = 0;  // on_started_leading posted or running, not returned
  std::thread::id callback_thread{};
  bool finish_after_callback = false;
  bool finish_was_leading = false;
  std::optional<std::string> leader;
  // What `leader` is as of: the send time of the read that saw it, or the
  // moment we won or lost. A read sent earlier never replaces it.
  TimePoint leader_as_of{};
  TimerId retry_timer = 0;
  TimerId observe_timer = 0;
  Subscription lost;
};

Result<std::unique_ptr<LeaderElector>> LeaderElector::Create(std::shared_ptr<Lease> lease,
                                                             LeaderElectorOptions options) {
  if (!lease) return InvalidArgumentError("LeaderElector: lease is null");
  const Duration ttl = lease->options().ttl;
  if (options.retry_period <= Duration::zero() || options.retry_period >= ttl) {
    return InvalidArgumentError(
        "LeaderElector: retry_period must be > 0 and below the lease's ttl (" +
        FormatDuration(ttl) + "), got " + FormatDuration(options.retry_period));
  }
  if (options.health_tolerance < Duration::zero()) {
    return InvalidArgumentError("LeaderElector: health_tolerance must be >= 0, got " +
                                FormatDuration(options.health_tolerance));
  }
  auto impl = std::make_shared<Impl>(std::move(lease), std::move(options));
  impl->lost = impl->lease->OnLost([weak = std::weak_ptr<Impl>(impl)](const LostEvent&) {
    if (auto self = weak.lock()) self->OnLost();
  });
  return std::unique_ptr<LeaderElector>(new LeaderElector(std::move(impl)));
}

LeaderElector::LeaderElector(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
LeaderElector::~LeaderElector() { impl_->Shutdown(); }

void LeaderElector::Start() {
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->started || impl_->stopped) return;
    impl_->started = true;
  }
  impl_->Campaign();
  impl_->Observe();
}

void LeaderElector::Shutdown() { impl_->Shutdown(); }
bool LeaderElector::IsLeader() const noexcept {
  return impl_->leading_flag.load(std::memory_order_acquire) && impl_->lease->CheckAlive();
}

std::optional<std::string> LeaderElector::CurrentLeader() const {
  if (IsLeader()) return impl_->lease->identity();
  const Duration bound = impl_->StalenessBound();
  std::lock_guard lock(impl_->mu);
  // Never older than the bound: a standby that cannot read says it does not know.
  if (impl_->clock.Now() - impl_->leader_as_of > bound) return std::nullopt;
  return impl_->leader;
}

Status LeaderElector::CheckHealth() const {
  if (!impl_->leading_flag.load(std::memory_order_acquire)) return Status::Ok();
  Status s = CheckRenewing(*impl_->lease, impl_->options.health_tolerance);
  if (s.ok()) return s;
  return Status(s.code(), "leader election: " + std::string(s.message()));
}

void LeaderElector::Impl::ScheduleLocked(TimerId& timer, void (Impl::*method)()) {
  if (timer) runtime->CancelTimer(timer);
  timer = runtime->RunAt(clock.Now() + options.retry_period, [weak = weak_from_this(), method] {
    if (auto self = weak.lock()) ((*self).*method)();
  });
}

void LeaderElector::Impl::Campaign() {
  AcquireOptions ao;
  {
    std::lock_guard lock(mu);
    retry_timer = 0;
    if (stopped || leading || campaigning) return;
    campaigning = true;
    ao.wait = true;
    ao.stop = campaign_stop.get_token();
  }
  lease->StartAcquire(std::move(ao))
      .Then([weak = weak_from_this(), lease = lease](const AcquireResult& r) {
        if (auto self = weak.lock()) {
          self->OnCampaign(r);
        } else if (r.ok() && r->has_value()) {
          (void)lease->StartRelease();
        }
      });
}

void LeaderElector::Impl::OnCampaign(const AcquireResult& r) {
  std::unique_lock lock(mu);
  campaigning = false;
  const bool won = r.ok() && r->has_value();
  if (stopped) {
    lock.unlock();
    if (won) (void)lease->StartRelease();
    return;
  }
  if (!won || !lease->CheckAlive()) {
    ScheduleLocked(retry_timer, &Impl::Campaign);
    return;
  }
  leading = true;
  leading_flag.store(true, std::memory_order_release);
  term_stop = std::stop_source();
  ++leading_callbacks;
  const bool announce = leader != lease->identity();
  leader = lease->identity();
  leader_as_of = clock.Now();
  FencingToken token = **r;
  runtime->PostCallback([self = shared_from_this(), token = std::move(token),
                         stop = term_stop.get_token(),
                         announce] { self->RunLeading(token, stop, announce); });
}

void LeaderElector::Impl::RunLeading(const FencingToken& token, std::stop_token stop,
                                     bool announce) {
  if (announce) Announce(lease->identity());
  {
    std::lock_guard lock(mu);
    callback_thread = std::this_thread::get_id();
  }
  if (options.callbacks.on_started_leading) {
    try {
      options.callbacks.on_started_leading(token, stop);
    } catch (...) {  // contained: the elector's bookkeeping must go on
    }
  }
  bool finish = false;
  bool was_leading = false;
  {
    std::lock_guard lock(mu);
    callback_thread = {};
    --leading_callbacks;
    if (leading_callbacks == 0 && finish_after_callback) {
      finish = true;
      finish_after_callback = false;
      was_leading = finish_was_leading;
    }
  }
  cv.notify_all();
  if (finish) FinishShutdown(was_leading, /*on_callback_lane=*/true);
}

void LeaderElector::Impl::Announce(const std::string& identity) {
  if (!options.callbacks.on_new_leader) return;
  {
    std::lock_guard lock(mu);
    if (stopped) return;  // no callback after Shutdown()
    callback_thread = std::this_thread::get_id();
  }
  try {
    options.callbacks.on_new_leader(identity);
  } catch (...) {
  }
  std::lock_guard lock(mu);
  callback_thread = {};
}

void LeaderElector::Impl::OnLost() {  // callback lane
  std::stop_source stop;
  {
    std::lock_guard lock(mu);
    if (!leading || stopped) return;
    leading = false;
    leading_flag.store(false, std::memory_order_release);
    // Who leads now is unknown until a read sent from now on tells.
    leader.reset();
    leader_as_of = clock.Now();
    stop = term_stop;
    callback_thread = std::this_thread::get_id();
  }
  stop.request_stop();
  if (options.callbacks.on_stopped_leading) {
    try {
      options.callbacks.on_stopped_leading();
    } catch (...) {
    }
  }
  {
    std::lock_guard lock(mu);
    callback_thread = {};
  }
  if (options.recampaign) Campaign();
}

void LeaderElector::Impl::Observe() {
  {
    std::lock_guard lock(mu);
    if (stopped) return;
    ScheduleLocked(observe_timer, &Impl::Observe);
  }
  const TimePoint sent = clock.Now();
  lease->store()->Inspect(lease->name(), sent + lease->options().request_timeout,
                          [weak = weak_from_this(), sent](Result<LeaseRecord> r) {
                            if (auto self = weak.lock()) self->OnRecord(sent, std::move(r));
                          });
}

void LeaderElector::Impl::OnRecord(TimePoint sent, Result<LeaseRecord> r) {
  std::optional<std::string> seen;
  if (r.ok()) {
    if (!r->holder.empty()) seen = r->holder;
  } else if (r.status().code() != StatusCode::kNotFound) {
    return;  // could not find out: keep what we know (CurrentLeader() ages it out)
  }
  std::lock_guard lock(mu);
  // Ours while leading; and a read sent before what we already know (our own
  // win or loss, or a later read) is older news, whenever it arrives.
  if (stopped || leading || sent < leader_as_of) return;
  leader_as_of = sent;
  if (seen == leader) return;
  leader = seen;
  if (seen) {
    runtime->PostCallback([self = shared_from_this(), id = *seen] { self->Announce(id); });
  }
}

void LeaderElector::Impl::Shutdown() {
  std::vector<TimerId> timers;
  bool was_leading;
  bool wait_for_callback;
  bool can_wait;
  bool on_lane;
  std::stop_source stop;
  {
    std::lock_guard lock(mu);
    if (stopped) return;
    stopped = true;
    for (TimerId* t : {&retry_timer, &observe_timer}) {
      if (*t) timers.push_back(std::exchange(*t, 0));
    }
    was_leading = leading;
    leading = false;
    leading_flag.store(false, std::memory_order_release);
    stop = term_stop;
    wait_for_callback = leading_callbacks > 0;
    on_lane = callback_thread == std::this_thread::get_id();
    can_wait = !on_lane && runtime->MayBlock();
    if (wait_for_callback && !can_wait) {
      finish_after_callback = true;
      finish_was_leading = was_leading;
    }
  }
  for (TimerId t : timers) runtime->CancelTimer(t);
  campaign_stop.request_stop();
  if (was_leading) stop.request_stop();
  if (wait_for_callback && !can_wait) return;  // RunLeading finishes
  if (wait_for_callback) {
    const auto returned = [this] {
      std::lock_guard lock(mu);
      return leading_callbacks == 0;
    };
    if (!runtime->DriveUntil(returned)) {
      std::unique_lock lock(mu);
      cv.wait(lock, [this] { return leading_callbacks == 0; });
    }
  }
  FinishShutdown(was_leading, on_lane);
}

void LeaderElector::Impl::FinishShutdown(bool was_leading, bool on_callback_lane) {
  lost.Unsubscribe();
  // Also abandons a campaign still in flight (the engine gives back its win).
  (void)lease->Release();
  if (!was_leading || !options.callbacks.on_stopped_leading) return;
  if (on_callback_lane) {
    try {
      options.callbacks.on_stopped_leading();
    } catch (...) {
    }
    return;
  }
  // On the callback lane as always, and done before Shutdown() returns: no
  // callback runs after it.
  auto done = std::make_shared<std::atomic<bool>>(false);
  runtime->PostCallback([self = shared_from_this(), done] {
    try {
      self->options.callbacks.on_stopped_leading();
    } catch (...) {
    }
    done->store(true);
    std::lock_guard lock(self->mu);
    self->cv.notify_all();
  });
  if (!runtime->DriveUntil([&done] { return done->load(); })) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&done] { return done->load(); });
  }
}

}  // namespace leasehold
