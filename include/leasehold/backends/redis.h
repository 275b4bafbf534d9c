// leasehold: the Redis store -- fenced leases on the Redis teams already run,
// with a counter nothing resets, refusing eviction, following Sentinel.
//
// Keys (P = key_prefix, N = the lease's name; record and counter share the
// hash tag {N}, so a Redis Cluster keeps them in one slot):
//   P lease:{N}   hash: holder ("" when free), sequence, store_id, ttl_ms,
//                 version (bumped by every write), wanted, acquired_ms and
//                 renewed_ms (the server's TIME, for operators only)
//   P fence:{N}   hash: last (the last sequence issued), store_id. No TTL,
//                 never deleted by leasehold.
// Neither key has a TTL: Redis expires keys by its own wall clock, and a
// server clock stepped forward would free a live lease early. Expiry is
// client-judged instead (store.h), as in the Kubernetes and PostgreSQL
// stores: a foreign record counts as expired only after this store has
// observed it unchanged (same `version`) for min(record's ttl_ms,
// max_observe_factor x our TTL) on its own monotonic clock; a takeover is a
// compare-and-swap on that version inside the acquire script. No server or
// client wall clock is read for any decision.
//
// Fencing: the acquire script takes HINCRBY P fence:{N} last 1 -- exact
// 64-bit arithmetic in the server. Release, expiry and break keep it. A
// counter missing while its record exists (deleted by hand) restarts from
// the record's sequence. `store_id` is random, created with the counter and
// carried in every token ("redis/<store_id>/<sequence>/<name>"): a counter
// lost with the data (a restart without AOF, a failover that lost writes, a
// FLUSHALL) comes back with a new id, so tokens from before never compare
// equal to tokens after, and a fenced resource that keeps the last token it
// saw can tell. docs/redis.md says what persistence keeps the counter.
//
// Scripts: acquire, renew, release and break are Lua scripts run by EVALSHA
// (EVAL when the server has not cached them: NOSCRIPT). Renewals of a batch
// go as one pipeline (one round trip). Release, break, acquisitions that
// change the holder, and renewals while a contender waits (`wanted`)
// PUBLISH the name on the store's channel, P "changed".
//
// Waiting: one subscriber connection per store (SUBSCRIBE), opened on the
// first wait; while it is down, watched records are polled every
// `poll_interval`.
//
// Safety checks when a connection is made: a maxmemory-policy other than
// noeviction is refused (kFailedPrecondition naming the setting) unless
// `allow_eviction`; `require_aof` refuses a server without appendonly.
// `wait_replicas` > 0 sends WAIT after each acquisition and treats one not
// acknowledged by that many replicas within `wait_timeout` as failed.
//
// Sentinel: with `sentinel_master` set, `endpoints` are sentinels; the store
// asks them for the primary (SENTINEL get-master-addr-by-name), checks ROLE,
// and asks again after a failure or a READONLY reply.
//
// Thread-safety: every method is safe from any thread. Blocking IO runs on
// the runtime's blocking lane (or the caller's thread when it may block) and
// on the store's subscriber thread, never on a loop thread.
#ifndef LEASEHOLD_BACKENDS_REDIS_H_
#define LEASEHOLD_BACKENDS_REDIS_H_

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "leasehold/runtime.h"
#include "leasehold/status.h"
#include "leasehold/store.h"

namespace leasehold {

struct RedisEndpoint {
  std::string host;
  int port = 6379;
};

struct RedisOptions {
  // The server, or with sentinel_master the sentinels (tried in order).
  std::vector<RedisEndpoint> endpoints{};
  std::string sentinel_master{};
  // AUTH (ACL user and password; a password alone is the default user).
  // Never shown in messages.
  std::string username{};
  std::string password{};
  // For the sentinels, when they need their own.
  std::string sentinel_username{};
  std::string sentinel_password{};
  int database = 0;  // SELECT; 0..65535
  // Prefix of every key and the channel. No '{' or '}' (the hash tag is the
  // lease's name); at most 100 bytes.
  std::string key_prefix = "leasehold:";
  // TLS (rediss://): verified against tls_ca_file (empty: the system's
  // trust store) and the host name (or tls_server_name).
  bool tls = false;
  std::string tls_ca_file{};
  std::string tls_cert_file{};
  std::string tls_key_file{};
  std::string tls_server_name{};
  // Safety checks (above).
  bool allow_eviction = false;
  bool require_aof = false;
  int wait_replicas = 0;
  Duration wait_timeout = std::chrono::milliseconds(500);
  // Wake waiters by SUBSCRIBE; poll watched records when off or down.
  bool subscribe = true;
  Duration poll_interval = std::chrono::milliseconds(250);
  // Bound on establishing a connection (also bounded by each request's
  // deadline). Must be > 0.
  Duration connect_timeout = std::chrono::seconds(5);
  // Cap on how long a foreign record must be observed unchanged before it
  // is taken over: min(record's ttl, max_observe_factor x our TTL).
  double max_observe_factor = 2.0;
  // Share observations between the stores of this process (kit/observations.h).
  bool share_observations = true;
};

// A store URL, as the CLI takes it:
//   redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?OPTIONS]
//   rediss://...            (TLS)
//   redis-sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB][?OPTIONS]
//   rediss-sentinel://...   (TLS to the sentinels and to the servers they
//                            name, verified against the same CA and options)
// OPTIONS: prefix=, ca=, cert=, key=, server-name=, allow-eviction=0|1,
// require-aof=0|1, wait-replicas=N, wait-timeout-ms=N, subscribe=0|1,
// sentinel-user=. A password in the URL is taken; without one, the
// environment's REDISCLI_AUTH (as redis-cli reads it) and for sentinels
// LEASEHOLD_SENTINEL_AUTH. Errors: kInvalidArgument naming the part that is
// wrong (never echoing a password).
Result<RedisOptions> ParseRedisUrl(const std::string& url);

// The store's operations are Store's (store.h); the implementation
// (redis_store.cc) derives from this class.
class RedisStore : public Store {
 public:
  // Connects and runs the safety checks. Errors: kInvalidArgument for bad
  // options; kUnavailable when no server (or no sentinel, or no primary)
  // answers in time; kUnauthenticated for refused credentials;
  // kPermissionDenied for an ACL that forbids a command the store needs;
  // kFailedPrecondition for an eviction policy or persistence the options
  // refuse.
  static Result<std::shared_ptr<RedisStore>> Open(RedisOptions options,
                                                  std::shared_ptr<Runtime> runtime = nullptr);

 protected:
  using Store::Store;
};

}  // namespace leasehold

#endif  // LEASEHOLD_BACKENDS_REDIS_H_
