#include "kubernetes_watch.h"

#include <chrono>
#include <condition_variable>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "lease_codec.h"

namespace leasehold::kubernetes::detail {
namespace {

// The watch stream's reader: newline-delimited watch events.
struct Reader {
  std::string buffer;
  bool woken = false;  // an event, an ERROR object or garbage arrived

  bool OnData(std::string_view chunk) {
    buffer.append(chunk);
    if (buffer.size() > (size_t{4} << 20)) return !(woken = true);
    size_t nl;
    while ((nl = buffer.find('\n')) != std::string::npos) {
      std::string line = buffer.substr(0, nl);
      buffer.erase(0, nl + 1);
      if (line.empty() || line == "\r") continue;
      Result<WatchEvent> ev = ParseWatchLine(line);
      if (ev.ok() && ev->type == "BOOKMARK") continue;
      woken = true;  // a change, an ERROR (410 Gone) or garbage: wake the waiter
      return false;
    }
    return true;
  }
};

}  // namespace

// One Open(): its stream on the mux and the waiter's callback.
struct Watches::Watch {
  std::mutex mu;
  std::condition_variable cv;
  bool cancelled = false;
  bool fired = false;
  std::thread::id running;  // the thread running on_change, if any
  uint64_t stream = 0;
  // Fire has run (and on_change returned): the watch may be forgotten, since
  // no later Cancel has anything left to stop.
  std::atomic<bool> finished{false};
  Task on_change;

  void Fire() {
    Task task;
    {
      std::lock_guard lock(mu);
      if (!cancelled && !fired) {
        fired = true;
        running = std::this_thread::get_id();
        task = std::move(on_change);
      }
    }
    if (task) {
      try {
        task();
      } catch (...) {
      }
      task = nullptr;
      std::lock_guard lock(mu);
      running = std::thread::id();
      cv.notify_all();
    }
    finished = true;
  }

  void Cancel() {
    Task dropped;
    std::unique_lock lock(mu);
    cancelled = true;
    const auto self = std::this_thread::get_id();
    cv.wait(lock, [&] { return running == std::thread::id() || running == self; });
    dropped = std::move(on_change);
  }
};

Watches::Watches(std::shared_ptr<HttpClient> http, std::shared_ptr<Runtime> runtime)
    : runtime_(std::move(runtime)), mux_(std::move(http)) {}

Watches::~Watches() { CancelAll(); }

WatchId Watches::Open(const std::string& path, Task on_change) {
  if (forbidden()) return 0;
  auto w = std::make_shared<Watch>();
  w->on_change = std::move(on_change);
  std::lock_guard lock(mu_);
  if (closing_) return 0;
  std::erase_if(watches_, [](const auto& entry) { return entry.second->finished.load(); });
  // The handlers run on the mux thread and hold the watch weakly: its owner
  // is the map (until Cancel), then the Fire on its way.
  auto reader = std::make_shared<Reader>();
  const TimePoint opened = runtime_->clock().Now();
  Result<uint64_t> stream = mux_.Open(
      path, [reader](std::string_view chunk) { return reader->OnData(chunk); },
      [reader, weak = std::weak_ptr<Watch>(w), runtime = runtime_, forbidden = forbidden_,
       opened](const Result<long>& status) {
        if (status.ok() && *status == 403) forbidden->store(true);
        std::shared_ptr<Watch> watch = weak.lock();
        if (!watch) return;
        // Wake the waiter (it reads the record and watches again) at once on
        // an event or a 410 Gone. When the watch was refused, failed or
        // simply ended, wake it no sooner than a second after the watch was
        // opened: a change may have been missed, but waking at once would
        // read and watch again in a tight loop against a failing server (or a
        // proxy that closes streams). After a 403 the next Open() declines,
        // and the waiter polls.
        auto fire = [watch = std::move(watch)] { watch->Fire(); };
        if (reader->woken || (status.ok() && *status == 410)) {
          runtime->Post(std::move(fire));
        } else {
          runtime->RunAt(opened + std::chrono::seconds(1), std::move(fire));
        }
      });
  if (!stream.ok()) return 0;  // the waiter polls
  w->stream = *stream;
  const WatchId id = ++last_;
  watches_.emplace(id, std::move(w));
  return id;
}

void Watches::Cancel(WatchId id) noexcept {
  std::shared_ptr<Watch> w;
  {
    std::lock_guard lock(mu_);
    auto it = watches_.find(id);
    if (it == watches_.end()) return;
    w = std::move(it->second);
    watches_.erase(it);
  }
  mux_.Close(w->stream);
  w->Cancel();
}

void Watches::CancelAll() {
  std::map<WatchId, std::shared_ptr<Watch>> all;
  {
    std::lock_guard lock(mu_);
    closing_ = true;
    all.swap(watches_);
  }
  for (auto& [id, w] : all) {
    mux_.Close(w->stream);
    w->Cancel();
  }
}

}  // namespace leasehold::kubernetes::detail
