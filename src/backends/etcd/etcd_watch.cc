#include "etcd_watch.h"

#include <vector>

#include "etcd_state.h"

namespace leasehold {
namespace etcd {

void WatchStream::Start(pb::Watch::Stub* stub) {
  stub->async()->Watch(&ctx_, this);
  StartRead(&resp_);
  StartCall();
}

void WatchStream::OnDone(const grpc::Status&) {
  if (auto s = state_.lock()) s->OnWatchStreamDone(this);
  delete this;
}

void WatchStream::OnResponse(const pb::WatchResponse& response) {
  if (auto s = state_.lock()) s->OnWatchResponse(response);
}

}  // namespace etcd

namespace pb = etcd::pb;

void etcd::State::StartWatch(WatchId id, const etcd::Watcher& w) {
  if (watch_stream == nullptr) {
    const size_t ep = current.load() % endpoints.size();
    watch_stream = new etcd::WatchStream(SharedFromThis());
    AddToken(watch_stream->context());
    ++streams_running;
    watch_stream->Start(endpoints[ep].watch.get());
  }
  pb::WatchRequest req;
  auto* c = req.mutable_create_request();
  c->set_key(w.key);
  c->set_start_revision(w.start_revision);
  c->set_watch_id(static_cast<int64_t>(id));
  watch_stream->Send(std::move(req));
}

void etcd::State::OnWatchResponse(const pb::WatchResponse& resp) {
  // The creation's acknowledgement and progress notifications say nothing
  // about the key.
  const bool fire = !resp.events().empty() || resp.canceled() || resp.compact_revision() != 0;
  if (!fire) return;
  Task task;
  {
    std::lock_guard lock(mu);
    auto it = watchers.find(static_cast<WatchId>(resp.watch_id()));
    if (it == watchers.end()) return;
    task = std::move(it->second.on_change);
    watchers.erase(it);
    // A watch fires once: etcd need not keep reporting.
    if (!resp.canceled() && watch_stream != nullptr) {
      pb::WatchRequest req;
      req.mutable_cancel_request()->set_watch_id(resp.watch_id());
      watch_stream->Send(std::move(req));
    }
  }
  if (task) runtime->Post(std::move(task));
}

void etcd::State::OnWatchStreamDone(etcd::WatchStream* stream) {
  std::vector<Task> tasks;
  {
    std::lock_guard lock(mu);
    if (watch_stream == stream) {
      watch_stream = nullptr;
      // Every watch hears "may have changed": its waiter reads again.
      for (auto& [id, w] : watchers) tasks.push_back(std::move(w.on_change));
      watchers.clear();
    }
    --streams_running;
    streams_cv.notify_all();
  }
  for (auto& t : tasks) {
    if (t) runtime->Post(std::move(t));
  }
}

}  // namespace leasehold
