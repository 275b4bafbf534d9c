// The leftovers of the etcd backend: keys this store may have left on one of
// its sessions without holding them (etcd_state.h), and their deletion in the
// background.
#include <algorithm>
#include <chrono>
#include <utility>

#include "etcd_state.h"
#include "etcd_txn.h"
#include "leasehold/status.h"

namespace leasehold {
namespace {

// Each delete attempt's deadline, and the backoff between attempts: from
// 100 ms, doubling, at most 2 s (a member comes back, or the client fails
// over, within a few of those).
constexpr Duration kAttemptTimeout = std::chrono::seconds(2);
constexpr Duration kFirstBackoff = std::chrono::milliseconds(100);
constexpr Duration kMaxBackoff = std::chrono::seconds(2);

// More keys than any store holds leases: past it, a leftover is left to its
// session's expiry, as before this cleanup existed.
constexpr size_t kMaxLeftovers = 65536;

// Whether another attempt can get a different answer: the transient codes,
// and an expired auth token (the transport fetches a new one).
bool Retryable(StatusCode code) {
  return IsTransient(code) || code == StatusCode::kUnauthenticated;
}

}  // namespace

void etcd::State::NoteLeftover(LeftoverId id, Leftover leftover) {
  {
    std::lock_guard lock(mu);
    if (shutting_down) return;  // the revocation deletes it
    auto it = leftovers.find(id);
    if (it == leftovers.end()) {
      if (leftovers.size() >= kMaxLeftovers) return;
      it = leftovers.emplace(id, Leftover{}).first;
    }
    // Noted again (another unanswered acquire of the key): the newer facts
    // win; a delete in flight for the older ones is answered as stale.
    it->second.holder = std::move(leftover.holder);
    it->second.session = leftover.session;
    it->second.not_before = leftover.not_before;
    it->second.attempts = 0;
    it->second.generation = ++next_generation;
    if (it->second.in_flight) return;  // its answer sweeps again
  }
  SweepAt(id, leftover.not_before);
}

void etcd::State::SweepAt(const LeftoverId& id, TimePoint when) {
  if (when <= clock.Now()) {
    SweepLeftover(id);
    return;
  }
  std::weak_ptr<State> weak = SharedFromThis();
  runtime->RunAt(when, [weak, id] {
    if (auto st = weak.lock()) st->SweepLeftover(id);
  });
}

void etcd::State::ClaimLeftover(const std::string& key, const std::string& holder, Task then) {
  {
    std::lock_guard lock(mu);
    auto it = leftovers.find({key, 0});
    if (it != leftovers.end() && it->second.holder == holder) {
      if (it->second.in_flight) {
        // Wait: the delete may land after this acquire found the key its own.
        it->second.on_answer.push_back(std::move(then));
        return;
      }
      leftovers.erase(it);
    }
  }
  then();
}

void etcd::State::SweepLeftover(const LeftoverId& id) {
  pb::TxnRequest txn;
  uint64_t generation;
  {
    std::lock_guard lock(mu);
    if (shutting_down) return;
    auto it = leftovers.find(id);
    if (it == leftovers.end() || it->second.in_flight) return;
    Leftover& l = it->second;
    if (l.not_before > clock.Now()) return;  // noted again meanwhile: its own timer sweeps
    if (id.second == 0) {
      // A session that expired took its keys with it.
      if (!SessionForId(l.session)) {
        leftovers.erase(it);
        return;
      }
      txn = etcd::LeftoverTxn(id.first, l.holder, l.session);
    } else {
      txn = etcd::ReleaseTxn(id.first, id.second);
    }
    l.in_flight = true;
    ++l.attempts;
    generation = l.generation;
  }
  std::weak_ptr<State> weak = SharedFromThis();
  Txn("delete " + etcd::Quote(id.first) + ", left behind by an unconfirmed " +
          (id.second == 0 ? "acquire" : "release"),
      std::move(txn), clock.Now() + kAttemptTimeout,
      [weak, id, generation](Result<pb::TxnResponse> r) {
        if (auto st = weak.lock()) st->OnLeftoverAnswer(id, generation, r.status());
      });
}

void etcd::State::OnLeftoverAnswer(const LeftoverId& id, uint64_t generation,
                                   const Status& answer) {
  std::vector<Task> waiting;
  bool again = false;
  TimePoint when{};
  {
    std::lock_guard lock(mu);
    auto it = leftovers.find(id);
    if (it == leftovers.end()) return;
    Leftover& l = it->second;
    l.in_flight = false;
    waiting = std::move(l.on_answer);
    l.on_answer.clear();
    if (!waiting.empty() && id.second == 0) {
      // An acquire that waited for this answer finds the key itself from now
      // on: the leftover is its own again.
      leftovers.erase(it);
    } else if (l.generation != generation) {
      again = true;  // noted again meanwhile: sweep the newer facts
      when = l.not_before;
    } else if (answer.ok() || !Retryable(answer.code()) || shutting_down) {
      // Deleted, or not ours to delete any more (the compare failed): done.
      leftovers.erase(it);
    } else {
      again = true;
      Duration backoff = kFirstBackoff;
      for (int i = 1; i < l.attempts && backoff < kMaxBackoff; ++i) backoff *= 2;
      when = clock.Now() + std::min(backoff, kMaxBackoff);
    }
  }
  for (auto& task : waiting) task();
  if (again) SweepAt(id, when);
}

}  // namespace leasehold
