// leasehold::redis: finding the primary (directly, or through the
// sentinels), authenticating, and the safety checks every statement
// connection passes before its first request.
//
// Thread-safety: Primary is immutable after construction; its methods may
// run on any thread at once (each on a connection of the caller's).
#ifndef LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_PRIMARY_H_
#define LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_PRIMARY_H_

#include <memory>
#include <string>
#include <vector>

#include "leasehold/backends/redis.h"
#include "leasehold/clock.h"
#include "leasehold/status.h"
#include "redis_connection.h"
#include "redis_reply.h"

namespace leasehold::redis {

// What an error reply means to the engine: kUnauthenticated (WRONGPASS,
// NOAUTH), kPermissionDenied (NOPERM), kUnavailable (READONLY, LOADING,
// BUSY, MASTERDOWN, TRYAGAIN, CLUSTERDOWN, OOM), kFailedPrecondition
// (Cluster redirections), else kDataLoss (WRONGTYPE, LHDATA, script errors).
Status ReplyError(const Reply& r, const std::string& what);

class Primary {
 public:
  Primary(const Clock& clock, RedisOptions options, std::string describe,
          std::shared_ptr<TlsContext> tls)
      : clock_(clock),
        options_(std::move(options)),
        describe_(std::move(describe)),
        tls_(std::move(tls)) {}

  // Opens `conn` to the primary (asking the sentinels where it is, when
  // there are sentinels) and authenticates, by `deadline` (at most the
  // connect timeout).
  Status Open(Connection& conn, TimePoint deadline) const;
  // Open, then the safety checks: ROLE is master; maxmemory-policy is
  // noeviction (unless allow_eviction); appendonly is yes (with
  // require_aof). On every new statement connection: a failover may have
  // put us on a server configured otherwise.
  Status OpenChecked(Connection& conn, TimePoint deadline) const;

 private:
  Result<Endpoint> Locate(TimePoint deadline) const;
  std::vector<Command> Hello() const;
  Status CheckServer(const Connection& conn, const std::vector<Reply>& out) const;

  const Clock& clock_;
  const RedisOptions options_;
  const std::string describe_;
  const std::shared_ptr<TlsContext> tls_;
};

}  // namespace leasehold::redis

#endif  // LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_PRIMARY_H_
