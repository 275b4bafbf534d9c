// leasehold etcd backend, internal: watches on keys, multiplexed by watch id
// over the store's one Watch stream. The watch operations are methods of
// etcd::State (etcd_state.h), defined in etcd_watch.cc.
//
// Thread-safety: the waiters are in etcd::State's kit::WatchRegistry, the
// stream pointer is guarded by etcd::State::mu. A WatchStream
// is driven by gRPC's threads; Send() and Cancel() are safe from any thread.
// It deletes itself in OnDone.
#ifndef LEASEHOLD_BACKENDS_ETCD_ETCD_WATCH_H_
#define LEASEHOLD_BACKENDS_ETCD_ETCD_WATCH_H_

#include <cstdint>
#include <memory>
#include <string>

#include "etcd_stream.h"
#include "etcd_transport.h"
#include "leasehold/backends/etcd.h"
#include "leasehold/runtime.h"

namespace leasehold::etcd {

// The one Watch stream of a store, multiplexing its watches by watch id.
class WatchStream final : public QueuedBidiStream<pb::WatchRequest, pb::WatchResponse> {
 public:
  WatchStream(std::weak_ptr<etcd::State> state, size_t endpoint)
      : state_(std::move(state)), endpoint_(endpoint) {}

  size_t endpoint() const { return endpoint_; }

  void Start(pb::Watch::Stub* stub);
  void OnDone(const grpc::Status& status) override;

 private:
  void OnResponse(const pb::WatchResponse& response) override;

  std::weak_ptr<etcd::State> state_;
  const size_t endpoint_;
};

}  // namespace leasehold::etcd

#endif  // LEASEHOLD_BACKENDS_ETCD_ETCD_WATCH_H_
