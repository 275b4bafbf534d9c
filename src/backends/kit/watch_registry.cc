#include "kit/watch_registry.h"

#include <mutex>
#include <unordered_map>
#include <utility>

namespace leasehold::kit {

struct WatchRegistry::Firing::Core {
  struct Entry {
    std::string name;
    std::string version;
    Task on_change;
    bool taken = false;  // in a Firing: no longer waits, not yet started
  };

  // Moves the callback of `id` out and forgets the watch; an empty Task if
  // the watch is unknown (fired, cancelled). The caller destroys it unlocked.
  // `found` (if given) tells whether the watch was still there.
  Task Remove(WatchId id, bool* found = nullptr) {
    Task task;
    std::lock_guard lock(mu);
    auto it = entries.find(id);
    if (it == entries.end()) return task;
    if (found) *found = true;
    task = std::move(it->second.on_change);
    entries.erase(it);
    return task;
  }

  mutable std::mutex mu;
  WatchId last = 0;
  std::unordered_map<WatchId, Entry> entries;
};

WatchRegistry::Firing::Firing(std::shared_ptr<Core> core) : core_(std::move(core)) {}

WatchRegistry::Firing::Firing(Firing&& other) noexcept
    : core_(std::move(other.core_)), ids_(std::exchange(other.ids_, {})) {}

WatchRegistry::Firing& WatchRegistry::Firing::operator=(Firing&& other) noexcept {
  if (this != &other) {
    Drop();
    core_ = std::move(other.core_);
    ids_ = std::exchange(other.ids_, {});
  }
  return *this;
}

WatchRegistry::Firing::~Firing() { Drop(); }

void WatchRegistry::Firing::Run() {
  const std::vector<WatchId> ids = std::exchange(ids_, {});
  for (WatchId id : ids) {
    // Removing the entry is the decision to start: a Cancel from now on finds
    // nothing, and one before it removed the entry first.
    Task task = core_->Remove(id);
    if (task) task();
  }
}

void WatchRegistry::Firing::Drop() noexcept {
  for (WatchId id : std::exchange(ids_, {})) (void)core_->Remove(id);
}

WatchRegistry::WatchRegistry() : core_(std::make_shared<Firing::Core>()) {}

// Callbacks still registered die with the core, which holds no lock then.
WatchRegistry::~WatchRegistry() = default;

WatchId WatchRegistry::Add(std::string name, std::string version, Task on_change) {
  std::lock_guard lock(core_->mu);
  const WatchId id = ++core_->last;
  core_->entries.emplace(
      id, Firing::Core::Entry{std::move(name), std::move(version), std::move(on_change)});
  return id;
}

WatchRegistry::Firing WatchRegistry::TakeName(const std::string& name) {
  return TakeWaiting([&name](const std::string& watched) { return watched == name; });
}

WatchRegistry::Firing WatchRegistry::Take(const std::vector<WatchId>& ids) {
  Firing firing(core_);
  std::lock_guard lock(core_->mu);
  for (WatchId id : ids) {
    auto it = core_->entries.find(id);
    if (it == core_->entries.end() || it->second.taken) continue;
    it->second.taken = true;
    firing.ids_.push_back(id);
  }
  return firing;
}

WatchRegistry::Firing WatchRegistry::TakeAll() {
  return TakeWaiting([](const std::string&) { return true; });
}

WatchRegistry::Firing WatchRegistry::TakeWaiting(
    const std::function<bool(const std::string& name)>& wanted) {
  Firing firing(core_);
  std::lock_guard lock(core_->mu);
  for (auto& [id, entry] : core_->entries) {
    if (!entry.taken && wanted(entry.name)) {
      entry.taken = true;
      firing.ids_.push_back(id);
    }
  }
  return firing;
}

bool WatchRegistry::Cancel(WatchId id) noexcept {
  bool found = false;
  (void)core_->Remove(id, &found);
  return found;
}

bool WatchRegistry::Watching(const std::string& name) const {
  std::lock_guard lock(core_->mu);
  for (const auto& [id, entry] : core_->entries) {
    if (!entry.taken && entry.name == name) return true;
  }
  return false;
}

bool WatchRegistry::empty() const {
  std::lock_guard lock(core_->mu);
  for (const auto& [id, entry] : core_->entries) {
    if (!entry.taken) return false;
  }
  return true;
}

std::vector<WatchRegistry::Watcher> WatchRegistry::Snapshot() const {
  std::vector<Watcher> out;
  std::lock_guard lock(core_->mu);
  for (const auto& [id, entry] : core_->entries) {
    if (!entry.taken) out.push_back({id, entry.name, entry.version});
  }
  return out;
}

}  // namespace leasehold::kit
