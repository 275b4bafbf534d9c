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

void WatchStream::OnDone(const grpc::Status& status) {
  if (auto s = state_.lock()) s->OnWatchStreamDone(this, status);
  delete this;
}

void WatchStream::OnResponse(const pb::WatchResponse& response) {
  if (auto s = state_.lock()) s->OnWatchResponse(response);
}

}  // namespace etcd

namespace pb = etcd::pb;

namespace {

// Runs the taken watchers on the runtime, not on gRPC's thread; each starts
// only if its watch has not been cancelled by then (watch_registry.h).
void PostFiring(Runtime& runtime, kit::WatchRegistry::Firing firing) {
  if (firing.empty()) return;
  runtime.Post([f = std::make_shared<kit::WatchRegistry::Firing>(std::move(firing))] { f->Run(); });
}

}  // namespace

void etcd::State::StartWatch(WatchId id, const std::string& key, int64_t start_revision) {
  if (watch_stream == nullptr) {
    const size_t ep = current.load() % endpoints.size();
    watch_stream = new etcd::WatchStream(SharedFromThis(), ep);
    AddMetadata(watch_stream->context());
    ++streams_running;
    watch_stream->Start(endpoints[ep].watch.get());
  }
  pb::WatchRequest req;
  auto* c = req.mutable_create_request();
  c->set_key(key);
  c->set_start_revision(start_revision);
  c->set_watch_id(static_cast<int64_t>(id));
  watch_stream->Send(std::move(req));
}

void etcd::State::OnWatchResponse(const pb::WatchResponse& resp) {
  // The creation's acknowledgement and progress notifications say nothing
  // about the key.
  const bool fire = !resp.events().empty() || resp.canceled() || resp.compact_revision() != 0;
  if (!fire) return;
  kit::WatchRegistry::Firing firing = watchers.Take({static_cast<WatchId>(resp.watch_id())});
  if (firing.empty()) return;
  {
    std::lock_guard lock(mu);
    // A watch fires once: etcd need not keep reporting.
    if (!resp.canceled() && watch_stream != nullptr) {
      pb::WatchRequest req;
      req.mutable_cancel_request()->set_watch_id(resp.watch_id());
      watch_stream->Send(std::move(req));
    }
  }
  PostFiring(*runtime, std::move(firing));
}

void etcd::State::OnWatchStreamDone(etcd::WatchStream* stream, const grpc::Status& status) {
  kit::WatchRegistry::Firing firing;
  {
    std::lock_guard lock(mu);
    if (watch_stream == stream) {
      watch_stream = nullptr;
      // A member that lost its leader (require-leader), went silent (pings)
      // or is down: the next stream opens on the next endpoint. A token that
      // expired is fetched again by the waiters' next read, before the next
      // stream opens.
      if (etcd::Failover(status.error_code())) Rotate(stream->endpoint());
      if (etcd::NeedsNewToken(status)) ForgetToken();
      // Every watch hears "may have changed": its waiter reads again.
      firing = watchers.TakeAll();
    }
    StreamEnded();
  }
  PostFiring(*runtime, std::move(firing));
}

}  // namespace leasehold
