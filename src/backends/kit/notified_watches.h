// leasehold::kit::NotifiedWatches: watches woken by a server's change
// notifications (PostgreSQL LISTEN/NOTIFY, Redis pub/sub), polled while
// nobody listens.
//
// The store keeps one listening connection; its listener reports three
// events here: OnUp (subscribed: from now on every change is heard),
// OnNotify(name) (a change of `name` was heard) and OnDown (the connection
// is gone: changes may go unheard). Watchers are fired on the runtime's
// callback lane, never on the listener's thread.
//
// Never missing a change between a contender's read and its wait: before
// reading a record the store takes Heard() (a count of everything heard so
// far) and carries it in the version it gives the engine. Watch() then fires
// at once if anything for that name -- or a new subscription, after which
// earlier reads are stale -- was heard after that read. Between reads and
// notifications there is no other ordering to trust: a change committed
// before the read is in the read; one committed after it is notified after
// the subscription started, so it counts above `heard_before`.
//
// While deaf (before the first OnUp, after OnDown), a Watch() asks the store
// to poll: the store reads the watched records every poll interval
// (Snapshot()) and reports which changed (Polled()), until the listener is up
// again; OnUp and OnDown fire every watcher (they read again).
//
// Thread-safety: every method may be called from any thread. The mutex is a
// leaf: callbacks run after it is released, on the runtime's callback lane.
#ifndef LEASEHOLD_SRC_BACKENDS_KIT_NOTIFIED_WATCHES_H_
#define LEASEHOLD_SRC_BACKENDS_KIT_NOTIFIED_WATCHES_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kit/watch_registry.h"
#include "kit/watch_version.h"
#include "leasehold/runtime.h"
#include "leasehold/store.h"

namespace leasehold::kit {

class NotifiedWatches {
 public:
  explicit NotifiedWatches(std::shared_ptr<Runtime> runtime) : runtime_(std::move(runtime)) {}

  // How much has been heard so far: take it before a read, and pass it to
  // Watch() with the version that read returned.
  uint64_t Heard();

  // The listener's events.
  void OnUp();
  void OnNotify(const std::string& name);
  void OnDown();

  struct Added {
    WatchId id = 0;
    // The store must start polling (Snapshot/Polled every interval): nobody
    // listens and no poll is scheduled yet.
    bool start_polling = false;
  };
  // Registers `on_change` for `name`, last read as `version` when Heard()
  // was `heard_before`; fires it at once when a change may have been missed.
  Added Watch(const std::string& name, const std::string& version, uint64_t heard_before,
              Task on_change);
  void Cancel(WatchId id) noexcept { registry_.Cancel(id); }

  // Polling: the watchers waiting now, then the ids among them whose record
  // changed (or could not be read). Returns whether to poll again (someone
  // still waits and nobody listens).
  std::vector<WatchRegistry::Watcher> Snapshot() const { return registry_.Snapshot(); }
  bool Polled(const std::vector<WatchId>& changed);

 private:
  void Fire(WatchRegistry::Firing firing);

  const std::shared_ptr<Runtime> runtime_;
  WatchRegistry registry_;
  std::mutex mu_;       // orders "check what was heard, then register" against "hear, then take"
  uint64_t heard_ = 0;  // notifications and subscriptions
  std::optional<uint64_t> listening_since_;               // heard_ at the last OnUp; unset: deaf
  std::unordered_map<std::string, uint64_t> last_heard_;  // name -> heard_ at its last notification
  bool polling_ = false;
};

// Polling while deaf: from `rt`'s timers, every `interval`, runs
// (owner->*poll)() on the blocking lane (it reads the watched records and
// reports them through Polled()) as long as it returns true and the owner
// (held weakly: a poll never keeps its store alive) exists.
template <typename Owner>
void PollEvery(const std::shared_ptr<Runtime>& rt, Duration interval, std::weak_ptr<Owner> owner,
               bool (Owner::*poll)()) {
  // The runtime is held weakly too: a pending timer that held it would keep
  // the runtime (and whatever its queues hold) alive forever.
  std::weak_ptr<Runtime> weak_rt = rt;
  rt->RunAt(rt->clock().Now() + interval, [weak_rt, interval, owner, poll] {
    auto rt = weak_rt.lock();
    if (!rt || owner.expired()) return;
    rt->PostBlocking([weak_rt, interval, owner, poll] {
      auto self = owner.lock();
      if (!self || !((*self).*poll)()) return;
      if (auto rt = weak_rt.lock()) PollEvery(rt, interval, owner, poll);
    });
  });
}

}  // namespace leasehold::kit

#endif  // LEASEHOLD_SRC_BACKENDS_KIT_NOTIFIED_WATCHES_H_
