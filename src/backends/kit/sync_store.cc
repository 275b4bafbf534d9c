#include "kit/sync_store.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <mutex>
#include <string_view>
#include <unordered_set>

#include "kit/lease_label.h"
#include "kit/renew_batch.h"

namespace leasehold::kit {
namespace {

// The answer of an operation that did not run: `status` for each of its `n`
// results.
template <typename R>
R Failed(const Status& status, size_t n);
template <>
Status Failed<Status>(const Status& status, size_t) {
  return status;
}
template <>
Result<AcquireOutcome> Failed<Result<AcquireOutcome>>(const Status& status, size_t) {
  return status;
}
template <>
Result<LeaseRecord> Failed<Result<LeaseRecord>>(const Status& status, size_t) {
  return status;
}
template <>
Result<std::vector<LeaseRecord>> Failed<Result<std::vector<LeaseRecord>>>(const Status& status,
                                                                          size_t) {
  return status;
}
template <>
std::vector<Result<RenewOutcome>> Failed<std::vector<Result<RenewOutcome>>>(const Status& status,
                                                                            size_t n) {
  return AllFailed(n, status);
}

template <typename R>
using Op = std::function<R(SyncOps&, SyncCall&)>;

// One operation of `n` results: checks the deadline, runs `op` where blocking
// is allowed, and either answers or -- when the operation asked for it and
// there is time -- runs it again at the time it named.
template <typename R>
void Run(std::shared_ptr<Runtime> runtime, std::shared_ptr<SyncOps> ops, SyncCall call, size_t n,
         Op<R> op, std::function<void(R)> done) {
  Runtime& where = *runtime;
  RunBlocking(where, [runtime = std::move(runtime), ops = std::move(ops), call = std::move(call), n,
                      op = std::move(op), done = std::move(done)]() mutable {
    if (Result<Duration> left = call.Left(runtime->clock(), ops->describe()); !left.ok()) {
      done(Failed<R>(left.status(), n));
      return;
    }
    call.rerun_at.reset();
    R answer = op(*ops, call);
    if (call.rerun_at && *call.rerun_at < call.deadline) {
      const TimePoint when = *call.rerun_at;
      ++call.attempt;
      Runtime& timers = *runtime;
      timers.RunAt(when, [runtime, ops, call, n, op, done]() mutable {
        Run<R>(std::move(runtime), std::move(ops), std::move(call), n, std::move(op),
               std::move(done));
      });
      return;
    }
    done(std::move(answer));
  });
}

Status DeadlinePassed(const std::string& describe, const std::string& what) {
  return DeadlineExceededError(describe + ": " + what + ": deadline passed before the request ran");
}

std::string RenewWhat(const std::vector<RenewRequest>& batch) {
  return batch.size() == 1 ? "renew " + LeaseLabel(batch.front().name)
                           : "renew " + std::to_string(batch.size()) + " leases";
}

}  // namespace

class RenewCombiner {
 public:
  struct Waiting {
    std::vector<RenewRequest> batch;
    RenewCallback done;
  };
  std::mutex mu;
  bool out = false;             // a combined call is being made
  std::deque<Waiting> waiting;  // batches for the next call, in arrival order
};

std::shared_ptr<RenewCombiner> NewRenewCombiner() { return std::make_shared<RenewCombiner>(); }

namespace {

using Answer = std::vector<Result<RenewOutcome>>;

// Takes the waiting batches, in order, up to the first that names a lease
// already taken (a store renews each name once per call).
std::vector<RenewCombiner::Waiting> TakeWaiting(RenewCombiner& c) {
  std::vector<RenewCombiner::Waiting> taken;
  if (c.waiting.size() == 1) {  // the usual case: no names to compare
    taken.push_back(std::move(c.waiting.front()));
    c.waiting.pop_front();
    return taken;
  }
  std::unordered_set<std::string_view> names;  // views into batches held in `taken`
  while (!c.waiting.empty()) {
    const std::vector<RenewRequest>& next = c.waiting.front().batch;
    const bool clash = std::any_of(next.begin(), next.end(),
                                   [&](const RenewRequest& r) { return names.contains(r.name); });
    if (clash) break;
    for (const RenewRequest& r : next) names.insert(r.name);
    taken.push_back(std::move(c.waiting.front()));
    c.waiting.pop_front();
  }
  return taken;
}

// One combined call: the batches waiting now, less the requests whose
// deadline has passed; when it is answered, the next call (if batches came
// meanwhile) is posted before the answers go out.
void CombinedCall(std::shared_ptr<Runtime> runtime, std::shared_ptr<SyncOps> ops,
                  std::shared_ptr<RenewCombiner> combiner) {
  std::vector<RenewCombiner::Waiting> taken;
  {
    std::lock_guard lock(combiner->mu);
    taken = TakeWaiting(*combiner);
    if (taken.empty()) {
      combiner->out = false;
      return;
    }
  }
  const TimePoint now = runtime->clock().Now();
  std::vector<RenewRequest> live;
  std::vector<std::pair<size_t, size_t>> from;  // (batch, request) of each live request
  std::vector<Answer> answers(taken.size());
  for (size_t i = 0; i < taken.size(); ++i) {
    std::vector<RenewRequest>& batch = taken[i].batch;
    answers[i].assign(batch.size(), Result<RenewOutcome>(InternalError("not renewed")));
    for (size_t j = 0; j < batch.size(); ++j) {
      if (batch[j].deadline <= now) {
        answers[i][j] = DeadlinePassed(ops->describe(), RenewWhat({batch[j]}));
      } else {
        live.push_back(std::move(batch[j]));
        from.emplace_back(i, j);
      }
    }
  }
  auto finish = [runtime, ops, combiner, taken = std::move(taken), answers = std::move(answers),
                 from](Answer got) mutable {
    if (got.size() == from.size()) {
      for (size_t k = 0; k < from.size(); ++k) {
        answers[from[k].first][from[k].second] = std::move(got[k]);
      }
    } else {
      const Status bad =
          InternalError(ops->describe() + ": answered " + std::to_string(got.size()) +
                        " results to a batch of " + std::to_string(from.size()) + " renewals");
      for (const auto& [i, j] : from) answers[i][j] = bad;
    }
    bool more;
    {
      std::lock_guard lock(combiner->mu);
      more = !combiner->waiting.empty();
      if (!more) combiner->out = false;
    }
    if (more)
      runtime->PostBlocking([runtime, ops, combiner] { CombinedCall(runtime, ops, combiner); });
    for (size_t i = 0; i < taken.size(); ++i) taken[i].done(std::move(answers[i]));
  };
  if (live.empty()) {
    finish({});
    return;
  }
  SyncCall call{.what = RenewWhat(live), .deadline = EarliestDeadline(live)};
  const size_t n = live.size();
  Run<Answer>(
      std::move(runtime), std::move(ops), std::move(call), n,
      [live = std::move(live)](SyncOps& o, SyncCall& c) { return o.Renew(live, c); },
      std::move(finish));
}

// A batch renewed one call per request (SyncPolicy::renew_one_by_one).
struct OneByOne {
  std::mutex mu;
  std::vector<RenewRequest> batch;
  std::vector<Result<RenewOutcome>> results;
  size_t next = 0;  // the next request to send
  size_t left;      // requests not yet answered
  RenewCallback done;
};

// Sends the batch's next request, if one is left; its answer sends the one
// after. Each of max_parallel chains of calls is one such sequence.
void RenewNextOneByOne(std::shared_ptr<Runtime> runtime, std::shared_ptr<SyncOps> ops,
                       std::shared_ptr<OneByOne> state) {
  using Answer = std::vector<Result<RenewOutcome>>;
  std::vector<RenewRequest> one;
  size_t i;
  {
    std::lock_guard lock(state->mu);
    if (state->next == state->batch.size()) return;
    i = state->next++;
    one.push_back(std::move(state->batch[i]));
  }
  SyncCall call{.what = RenewWhat(one), .deadline = one.front().deadline};
  Runtime& lane = *runtime;
  lane.PostBlocking([runtime = std::move(runtime), ops = std::move(ops), state, i,
                     call = std::move(call), one = std::move(one)]() mutable {
    Run<Answer>(
        runtime, ops, std::move(call), 1,
        [one = std::move(one)](SyncOps& o, SyncCall& c) { return o.Renew(one, c); },
        [runtime, ops, state, i](Answer answer) {
          bool last;
          {
            std::lock_guard lock(state->mu);
            if (answer.size() == 1) {
              state->results[i] = std::move(answer.front());
            } else {
              state->results[i] =
                  InternalError("the store answered " + std::to_string(answer.size()) +
                                " results for one renewal");
            }
            last = --state->left == 0;
          }
          if (last) {
            state->done(std::move(state->results));
          } else {
            RenewNextOneByOne(runtime, ops, state);
          }
        });
  });
}

}  // namespace

void CombinedRenew(const std::shared_ptr<Runtime>& runtime, std::shared_ptr<SyncOps> ops,
                   const std::shared_ptr<RenewCombiner>& combiner, std::vector<RenewRequest> batch,
                   RenewCallback done) {
  if (batch.empty()) {
    done({});
    return;
  }
  {
    std::lock_guard lock(combiner->mu);
    combiner->waiting.push_back({std::move(batch), std::move(done)});
    if (combiner->out) return;
    combiner->out = true;
  }
  RunBlocking(*runtime,
              [runtime, ops = std::move(ops), combiner] { CombinedCall(runtime, ops, combiner); });
}

Result<Duration> SyncCall::Left(const Clock& clock, const std::string& describe) const {
  const Duration left = deadline - clock.Now();
  if (left > Duration::zero()) return left;
  return DeadlinePassed(describe, what);
}

void RunBlocking(Runtime& runtime, Task fn) {
  if (runtime.MayBlock()) {
    fn();
  } else {
    runtime.PostBlocking(std::move(fn));
  }
}

void SyncAcquire(const std::shared_ptr<Runtime>& runtime, std::shared_ptr<SyncOps> ops,
                 AcquireRequest request, AcquireCallback done) {
  SyncCall call{.what = "acquire " + LeaseLabel(request.name), .deadline = request.deadline};
  Run<Result<AcquireOutcome>>(
      runtime, std::move(ops), std::move(call), 1,
      [request = std::move(request)](SyncOps& o, SyncCall& c) { return o.Acquire(request, c); },
      std::move(done));
}

void SyncRenew(const std::shared_ptr<Runtime>& runtime, std::shared_ptr<SyncOps> ops,
               SyncPolicy policy, std::vector<RenewRequest> batch, RenewCallback done) {
  using Answer = std::vector<Result<RenewOutcome>>;
  if (batch.empty()) {
    done({});
    return;
  }
  if (!policy.renew_one_by_one || batch.size() == 1) {
    SyncCall call{.what = RenewWhat(batch), .deadline = EarliestDeadline(batch)};
    const size_t n = batch.size();
    Run<Answer>(
        runtime, std::move(ops), std::move(call), n,
        [batch = std::move(batch)](SyncOps& o, SyncCall& c) { return o.Renew(batch, c); },
        std::move(done));
    return;
  }
  // One call per request, side by side on the blocking lane, at most
  // max_parallel at once. The last answer answers the batch.
  auto state = std::make_shared<OneByOne>();
  const size_t n = batch.size();
  state->results.assign(n, Result<RenewOutcome>(InternalError("not run")));
  state->batch = std::move(batch);
  state->left = n;
  state->done = std::move(done);
  const size_t chains = policy.max_parallel == 0 ? n : std::min(n, policy.max_parallel);
  for (size_t c = 0; c < chains; ++c) RenewNextOneByOne(runtime, ops, state);
}

void SyncRelease(const std::shared_ptr<Runtime>& runtime, std::shared_ptr<SyncOps> ops,
                 ReleaseRequest request, StatusCallback done) {
  SyncCall call{.what = "release " + LeaseLabel(request.name), .deadline = request.deadline};
  Run<Status>(
      runtime, std::move(ops), std::move(call), 1,
      [request = std::move(request)](SyncOps& o, SyncCall& c) { return o.Release(request, c); },
      std::move(done));
}

void SyncInspect(const std::shared_ptr<Runtime>& runtime, std::shared_ptr<SyncOps> ops,
                 std::string name, TimePoint deadline, InspectCallback done) {
  SyncCall call{.what = "inspect " + LeaseLabel(name), .deadline = deadline};
  Run<Result<LeaseRecord>>(
      runtime, std::move(ops), std::move(call), 1,
      [name = std::move(name)](SyncOps& o, SyncCall& c) { return o.Inspect(name, c); },
      std::move(done));
}

void SyncBreak(const std::shared_ptr<Runtime>& runtime, std::shared_ptr<SyncOps> ops,
               std::string name, TimePoint deadline, StatusCallback done) {
  SyncCall call{.what = "break " + LeaseLabel(name), .deadline = deadline};
  Run<Status>(
      runtime, std::move(ops), std::move(call), 1,
      [name = std::move(name)](SyncOps& o, SyncCall& c) { return o.Break(name, c); },
      std::move(done));
}

void SyncList(const std::shared_ptr<Runtime>& runtime, std::shared_ptr<SyncOps> ops,
              std::string prefix, TimePoint deadline, ListCallback done) {
  std::string what = "list leases";
  if (!prefix.empty()) what += " starting with \"" + prefix + "\"";
  SyncCall call{.what = std::move(what), .deadline = deadline};
  Run<Result<std::vector<LeaseRecord>>>(
      runtime, std::move(ops), std::move(call), 1,
      [prefix = std::move(prefix)](SyncOps& o, SyncCall& c) { return o.List(prefix, c); },
      std::move(done));
}

Result<std::vector<LeaseRecord>> SyncOps::List(const std::string&, SyncCall&) {
  return UnimplementedError(describe() + ": listing leases is not supported");
}

}  // namespace leasehold::kit
