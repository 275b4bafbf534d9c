#include "kubernetes_watch.h"

#include <chrono>
#include <map>
#include <mutex>
#include <string_view>
#include <utility>

#include "kit/watch_registry.h"
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

struct Watches::Shared {
  kit::WatchRegistry registry;
  std::mutex mu;
  std::map<WatchId, uint64_t> streams;  // the mux stream of each waiting watch
  bool closing = false;

  // Starts the waiter of `id` (unless cancelled); its stream has ended.
  void Fire(WatchId id) {
    {
      std::lock_guard lock(mu);
      streams.erase(id);
    }
    registry.Take({id}).Run();
  }
};

Watches::Watches(std::shared_ptr<HttpClient> http, std::shared_ptr<Runtime> runtime)
    : runtime_(std::move(runtime)), shared_(std::make_shared<Shared>()), mux_(std::move(http)) {}

Watches::~Watches() { CancelAll(); }

WatchId Watches::Open(const std::string& path, Task on_change) {
  if (forbidden()) return 0;
  // Under the lock, so that the stream's wake-up (which takes it) cannot
  // forget the stream before it is recorded.
  std::lock_guard lock(shared_->mu);
  if (shared_->closing) return 0;
  const WatchId id = shared_->registry.Add(path, "", std::move(on_change));
  auto reader = std::make_shared<Reader>();
  const TimePoint opened = runtime_->clock().Now();
  // The handlers run on the mux thread; the wake-up runs on the runtime --
  // never on the mux thread, since a callback may end the store.
  Result<uint64_t> stream = mux_.Open(
      path, [reader](std::string_view chunk) { return reader->OnData(chunk); },
      [reader, weak = std::weak_ptr<Shared>(shared_), id, runtime = runtime_,
       forbidden = forbidden_, opened](const Result<long>& status) {
        if (status.ok() && *status == 403) forbidden->store(true);
        // Wake the waiter (it reads the record and watches again) at once on
        // an event or a 410 Gone. When the watch was refused, failed or
        // simply ended, wake it no sooner than a second after the watch was
        // opened: a change may have been missed, but waking at once would
        // read and watch again in a tight loop against a failing server (or a
        // proxy that closes streams). After a 403 the next Open() declines,
        // and the waiter polls.
        auto fire = [weak, id] {
          if (auto shared = weak.lock()) shared->Fire(id);
        };
        if (reader->woken || (status.ok() && *status == 410)) {
          runtime->Post(std::move(fire));
        } else {
          runtime->RunAt(opened + std::chrono::seconds(1), std::move(fire));
        }
      });
  if (!stream.ok()) {
    shared_->registry.Cancel(id);
    return 0;  // the waiter polls
  }
  shared_->streams.emplace(id, *stream);
  return id;
}

void Watches::Cancel(WatchId id) noexcept {
  shared_->registry.Cancel(id);
  uint64_t stream = 0;
  {
    std::lock_guard lock(shared_->mu);
    auto it = shared_->streams.find(id);
    if (it == shared_->streams.end()) return;
    stream = it->second;
    shared_->streams.erase(it);
  }
  mux_.Close(stream);
}

void Watches::CancelAll() {
  std::map<WatchId, uint64_t> all;
  {
    std::lock_guard lock(shared_->mu);
    shared_->closing = true;
    all.swap(shared_->streams);
  }
  for (const auto& [id, stream] : all) {
    shared_->registry.Cancel(id);
    mux_.Close(stream);
  }
  // Watches whose streams had ended and whose wake-ups are on their way.
  (void)shared_->registry.TakeAll();
}

}  // namespace leasehold::kubernetes::detail
