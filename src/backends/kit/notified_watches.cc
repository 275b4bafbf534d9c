#include "kit/notified_watches.h"

#include <utility>

namespace leasehold::kit {

uint64_t NotifiedWatches::Heard() {
  std::lock_guard lock(mu_);
  return heard_;
}

void NotifiedWatches::Fire(WatchRegistry::Firing firing) {
  if (firing.empty()) return;
  // Never on the listener's thread: an on_change may drop the last
  // reference to the store, whose destructor joins that thread.
  auto shared = std::make_shared<WatchRegistry::Firing>(std::move(firing));
  runtime_->PostCallback([shared] { shared->Run(); });
}

void NotifiedWatches::OnUp() {
  WatchRegistry::Firing firing;
  {
    std::lock_guard lock(mu_);
    listening_since_ = ++heard_;
    last_heard_.clear();  // every earlier read predates this subscription
    firing = registry_.TakeAll();
  }
  Fire(std::move(firing));
}

void NotifiedWatches::OnNotify(const std::string& name) {
  WatchRegistry::Firing firing;
  {
    std::lock_guard lock(mu_);
    last_heard_[name] = ++heard_;
    firing = registry_.TakeName(name);
  }
  Fire(std::move(firing));
}

void NotifiedWatches::OnDown() {
  WatchRegistry::Firing firing;
  {
    std::lock_guard lock(mu_);
    listening_since_.reset();
    firing = registry_.TakeAll();  // they read again, and poll until we hear again
  }
  Fire(std::move(firing));
}

NotifiedWatches::Added NotifiedWatches::Watch(const std::string& name, const std::string& version,
                                              uint64_t heard_before, Task on_change) {
  Added added;
  WatchRegistry::Firing firing;
  {
    std::lock_guard lock(mu_);
    added.id = registry_.Add(name, version, std::move(on_change));
    if (!listening_since_) {
      added.start_polling = !std::exchange(polling_, true);  // deaf: poll until we hear again
    } else {
      // A notification heard after the read that `version` came from, or a
      // read older than the subscription, may be a change this watcher
      // missed.
      auto it = last_heard_.find(name);
      if (*listening_since_ > heard_before ||
          (it != last_heard_.end() && it->second > heard_before)) {
        firing = registry_.Take({added.id});
      }
    }
  }
  Fire(std::move(firing));
  return added;
}

bool NotifiedWatches::Polled(const std::vector<WatchId>& changed) {
  WatchRegistry::Firing firing;
  bool more;
  {
    std::lock_guard lock(mu_);
    firing = registry_.Take(changed);
    more = !registry_.empty() && !listening_since_;
    polling_ = more;
  }
  Fire(std::move(firing));
  return more;
}

}  // namespace leasehold::kit
