// leasehold etcd backend, internal: etcd::State, everything a store owns
// -- its transport (the base class), its sessions with their keepalive stream,
// and its watches with their watch stream. Its methods are defined by job:
// sessions in etcd_session.cc, watches in etcd_watch.cc, shutdown and naming
// in etcd_store.cc.
//
// Thread-safety: every method is safe from any thread; those marked REQUIRES
// need `mu` held. `mu` guards the sessions, the keepalive waiters, both stream
// pointers, the leftovers and the shutdown flag; it may be held while taking
// the transport's token mutex, never the other way round. Callbacks are called
// outside `mu`, with one exception kept from before the split: GetSession
// answers after a refreshing keepalive under it.
//
// Lifetime: owned by a shared_ptr (the store's, and one per call in flight);
// the streams hold weak references.
#ifndef LEASEHOLD_BACKENDS_ETCD_ETCD_STATE_H_
#define LEASEHOLD_BACKENDS_ETCD_ETCD_STATE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "etcd_session.h"
#include "etcd_transport.h"
#include "etcd_watch.h"
#include "kit/watch_registry.h"
#include "leasehold/backends/etcd.h"
#include "leasehold/fencing.h"
#include "leasehold/future.h"
#include "leasehold/runtime.h"

namespace leasehold {

struct etcd::State : etcd::Transport {
  State(std::shared_ptr<Runtime> rt, EtcdOptions o) : Transport(std::move(rt), std::move(o)) {}

  std::shared_ptr<State> SharedFromThis() {
    return std::static_pointer_cast<State>(shared_from_this());
  }

  // Naming.
  std::string Key(std::string_view name) const { return options.key_prefix + std::string(name); }
  static std::string Lease(const std::string& name) { return "lease " + etcd::Quote(name); }
  FencingToken Token(const std::string& key, int64_t create_revision) const;

  // Sessions (etcd_session.cc).
  // A live session for `ttl_s` (granted if need be, refreshed if its anchor
  // is old).
  void GetSession(int64_t ttl_s, TimePoint deadline,
                  std::function<void(Result<etcd::SessionInfo>)> done);
  void Grant(const std::shared_ptr<etcd::Session>& s, TimePoint deadline);
  // Sends one keepalive of `s` on the keepalive stream (started if need be).
  void KeepAlive(const std::shared_ptr<etcd::Session>& s, TimePoint deadline,
                 etcd::KeepAliveCallback done);
  void OnKeepAliveResponse(const etcd::pb::LeaseKeepAliveResponse& resp);
  void OnKeepAliveStreamDone(etcd::KeepAliveStream* stream, const grpc::Status& status);
  void ExpireKeepAlive(uint64_t serial);
  // REQUIRES: mu held.
  std::shared_ptr<etcd::Session> SessionForId(int64_t id);
  // A renewal found the cluster in a newer raft term than the keepalive that
  // set `anchor`: make the next renewal send a fresh keepalive.
  void ForgetAnchor(int64_t session_id, TimePoint anchor);

  // Watches (etcd_watch.cc).
  // Asks etcd to watch `key` from `start_revision` under our watch id `id`.
  // REQUIRES: mu held.
  void StartWatch(WatchId id, const std::string& key, int64_t start_revision);
  void OnWatchResponse(const etcd::pb::WatchResponse& resp);
  void OnWatchStreamDone(etcd::WatchStream* stream, const grpc::Status& status);

  // Leftovers (etcd_leftovers.cc): keys this store may have left on one of
  // its sessions without holding them -- a release etcd did not confirm, an
  // acquire whose put may have landed unanswered. A key does not expire on
  // its own, and its session lives as long as any lease of the store with the
  // same TTL: each leftover is deleted by a conditional transaction in the
  // background, retried with backoff until etcd answers, its session is gone
  // or the store shuts down.
  struct Leftover {
    std::string holder{};    // an unanswered acquire: whose put it would be
    int64_t session = 0;     // an unanswered acquire: on which session
    TimePoint not_before{};  // no delete before (the put may still land until then)
    int attempts = 0;
    uint64_t generation = 0;  // bumped when noted again; an answer to an older one is stale
    bool in_flight = false;
    std::vector<Task> on_answer{};  // acquires of the key waiting for the delete in flight
  };
  // (key, create revision); revision 0: an unanswered acquire's, unknown.
  using LeftoverId = std::pair<std::string, int64_t>;
  // Notes a key left behind and starts its deletion.
  void NoteLeftover(LeftoverId id, Leftover leftover);
  // Before an acquire of `key` by `holder`: a leftover of that holder's
  // unanswered acquire is the acquire's own to find again (dropped). Runs
  // `then` at once, or once a delete of it in flight has been answered.
  void ClaimLeftover(const std::string& key, const std::string& holder, Task then);
  void SweepLeftover(const LeftoverId& id);
  void SweepAt(const LeftoverId& id, TimePoint when);
  void OnLeftoverAnswer(const LeftoverId& id, uint64_t generation, const Status& answer);

  // Revokes the sessions and ends the streams (etcd_store.cc).
  TimePoint Shutdown();  // returns its one deadline (see ~EtcdStore)

  mutable std::mutex mu;
  std::map<int64_t, std::shared_ptr<etcd::Session>> sessions;  // by ttl_s
  uint64_t next_serial = 0;
  std::unordered_map<uint64_t, std::pair<etcd::KeepAliveCallback, TimerId>> ka_waiters;
  etcd::KeepAliveStream* ka_stream = nullptr;
  etcd::WatchStream* watch_stream = nullptr;
  size_t streams_running = 0;
  // Set when the last stream has ended, once Shutdown waits for that.
  std::optional<Promise<bool>> streams_idle;
  // Counts a stream out. REQUIRES: mu held.
  void StreamEnded();
  bool shutting_down = false;
  std::map<LeftoverId, Leftover> leftovers;
  uint64_t next_generation = 0;
  // The waiters, by watch id (also etcd's watch id on the stream); its own
  // mutex, a leaf below `mu`.
  kit::WatchRegistry watchers;
};

}  // namespace leasehold

#endif  // LEASEHOLD_BACKENDS_ETCD_ETCD_STATE_H_
