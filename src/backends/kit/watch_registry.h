// leasehold::kit::WatchRegistry: the watches of one store -- which name each
// watcher waits on, and the one place where a change, or a cancel, decides
// whether a watcher's on_change starts.
//
// It keeps Store's watch contract (include/leasehold/store.h) for the store:
//   * on_change runs at most once;
//   * after Cancel(id) returns, on_change of that watch will not start.
//
// A store uses it in three steps:
//   1. Watch():  id = registry.Add(name, version, on_change), under whatever
//      lock of the store's makes "check the version, then register" atomic
//      with the store's changes.
//   2. A change: firing = registry.TakeName(name) (or Take(ids), TakeAll()),
//      possibly under the store's own lock. Taken watchers no longer match
//      later changes, and no longer count in Watching() or empty().
//   3. firing.Run() once the store holds none of its locks (on_change may call
//      the store again). Run starts each taken on_change that was not
//      cancelled meanwhile.
// Starting an on_change and Cancel() decide under the registry's mutex, so a
// Cancel that returns before Run reaches a watcher keeps it from starting, and
// a Cancel from inside an on_change (which has started) is a no-op. Cancel never
// waits for an on_change that is running: it may be called from a callback, or
// under a lock that a callback takes.
//
// Callbacks are destroyed outside the registry's mutex: destroying a
// callback's captures may call into the store (e.g. a lease's destructor
// cancelling its watch).
//
// Thread-safety: every method of WatchRegistry and Firing may be called from
// any thread, concurrently (a Firing itself is used by one thread at a time).
// The registry's mutex is a leaf: a store may call the registry while holding
// its own locks, and the registry never calls out while holding its mutex.
#ifndef LEASEHOLD_SRC_BACKENDS_KIT_WATCH_REGISTRY_H_
#define LEASEHOLD_SRC_BACKENDS_KIT_WATCH_REGISTRY_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "leasehold/runtime.h"
#include "leasehold/store.h"

namespace leasehold::kit {

class WatchRegistry {
 public:
  // A watcher waiting for a change, as Snapshot() reports it.
  struct Watcher {
    WatchId id = 0;
    std::string name;
    std::string version;  // the observation it watches from, as given to Add
  };

  // Watchers taken for a change, to be started by Run(). Move-only. A Firing
  // destroyed (or assigned to) before Run() drops what it holds: those
  // on_change never start.
  class Firing {
   public:
    Firing() = default;
    Firing(Firing&& other) noexcept;
    Firing& operator=(Firing&& other) noexcept;
    ~Firing();

    // Starts, in the order taken, each on_change not cancelled since it was
    // taken; then the Firing is empty. Call it without holding the store's
    // locks.
    void Run();
    bool empty() const noexcept { return ids_.empty(); }
    size_t size() const noexcept { return ids_.size(); }

   private:
    friend class WatchRegistry;
    struct Core;
    explicit Firing(std::shared_ptr<Core> core);
    void Drop() noexcept;

    std::shared_ptr<Core> core_;
    std::vector<WatchId> ids_;
  };

  WatchRegistry();
  ~WatchRegistry();
  WatchRegistry(const WatchRegistry&) = delete;
  WatchRegistry& operator=(const WatchRegistry&) = delete;

  // Registers a watcher of `name` and returns its id: never 0, never reused
  // by this registry.
  WatchId Add(std::string name, std::string version, Task on_change);

  // Takes every waiting watcher of `name`.
  Firing TakeName(const std::string& name);
  // Takes the watchers among `ids` that still wait (others are skipped).
  Firing Take(const std::vector<WatchId>& ids);
  // Takes every waiting watcher (e.g. when the store's watch stream ends).
  Firing TakeAll();

  // The watch will not start once this returns. True if this call is what
  // kept it from starting (it was waiting, or taken and not yet started);
  // false for an unknown, started or already cancelled id.
  bool Cancel(WatchId id) noexcept;

  // Whether any watcher waits on `name`.
  bool Watching(const std::string& name) const;
  // Whether no watcher waits at all.
  bool empty() const;
  // The waiting watchers (without their callbacks), e.g. for a store that
  // polls the names watched.
  std::vector<Watcher> Snapshot() const;

 private:
  // Takes the waiting watchers whose name is `wanted`.
  Firing TakeWaiting(const std::function<bool(const std::string& name)>& wanted);

  const std::shared_ptr<Firing::Core> core_;
};

}  // namespace leasehold::kit

#endif  // LEASEHOLD_SRC_BACKENDS_KIT_WATCH_REGISTRY_H_
