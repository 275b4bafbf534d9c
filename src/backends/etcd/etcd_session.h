// leasehold etcd backend, internal: sessions -- the etcd leases the store's
// keys are attached to, one per TTL in whole seconds -- and the one
// LeaseKeepAlive stream that keeps them alive. The session operations
// themselves are methods of etcd::State (etcd_state.h), defined in
// etcd_session.cc, since sessions share the state's mutex and stream
// bookkeeping with watches.
//
// Thread-safety: Session fields are guarded by etcd::State::mu. A
// KeepAliveStream is driven by gRPC's threads; Send() and Cancel() are safe
// from any thread. It deletes itself in OnDone.
#ifndef LEASEHOLD_BACKENDS_ETCD_ETCD_SESSION_H_
#define LEASEHOLD_BACKENDS_ETCD_ETCD_SESSION_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "etcd_stream.h"
#include "etcd_transport.h"
#include "leasehold/backends/etcd.h"
#include "leasehold/clock.h"
#include "leasehold/status.h"

namespace leasehold::etcd {

// A keepalive stream whose member leaves a keepalive unanswered this long is
// abandoned for the next endpoint (when that keepalive's caller gives up).
inline constexpr Duration kUnresponsiveMember = std::chrono::milliseconds(250);

// The session TTL for a lease TTL: whole seconds, rounded up, at least 1.
int64_t TtlSeconds(Duration ttl);

// The largest TTL we accept for a grant of `requested` seconds.
int64_t MaxGrantedTtl(int64_t requested);

struct Session {
  int64_t ttl_s = 0;
  int64_t id = 0;
  bool alive = false;
  bool granting = false;
  Duration ttl{};
  TimePoint anchor{};
  // The raft term of the answer that set `anchor`. An answer from a leader
  // that has been deposed (paused, partitioned) carries an older term than
  // the cluster's: such a renewal may not have happened where it counts.
  uint64_t anchor_term = 0;
  std::vector<std::function<void(Status)>> grant_waiters;
  // Keepalives sent and not yet answered, oldest first: (serial, send time).
  std::deque<std::pair<uint64_t, TimePoint>> in_flight;
};

struct SessionInfo {
  int64_t id;
  Duration ttl;
  TimePoint anchor;
  uint64_t term;
};

struct KeepAliveAnswer {
  int64_t ttl_s;  // <= 0: the session is gone
  TimePoint anchor;
  uint64_t term;
};
using KeepAliveCallback = std::function<void(Result<KeepAliveAnswer>)>;

// The one LeaseKeepAlive stream of a store.
class KeepAliveStream final
    : public QueuedBidiStream<pb::LeaseKeepAliveRequest, pb::LeaseKeepAliveResponse> {
 public:
  KeepAliveStream(std::weak_ptr<etcd::State> state, size_t endpoint)
      : state_(std::move(state)), endpoint_(endpoint) {}

  size_t endpoint() const { return endpoint_; }

  void Start(pb::Lease::Stub* stub);
  void Send(int64_t id);
  void OnDone(const grpc::Status& status) override;

 private:
  void OnResponse(const pb::LeaseKeepAliveResponse& response) override;

  std::weak_ptr<etcd::State> state_;
  const size_t endpoint_;
};

}  // namespace leasehold::etcd

#endif  // LEASEHOLD_BACKENDS_ETCD_ETCD_SESSION_H_
