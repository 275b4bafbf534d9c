// leasehold: the PostgreSQL store -- leases as rows of one table in a database
// the team already runs, fenced inside the user's own transactions.
//
// Expiry is client-judged (see store.h), so no wall clock can break it --
// neither the database server's nor a client's: a foreign row counts as
// expired only after this store has observed it unchanged (same `version`)
// for min(row's ttl, max_observe_factor x our TTL) on its own monotonic
// clock, starting when the read that first showed it was answered. Every
// write of the holder (acquire, renewal) bumps `version`, and a takeover is a
// compare-and-swap on the version observed, so a holder that renewed in the
// meantime is never taken over. Timestamps in the row (clock_timestamp() of
// the server) are for operators only. A released or broken row (holder NULL)
// is free at once.
//
// Fencing: every acquisition takes the next number from the name's row of
// <table>_fences (never below the lease row's own `sequence`), in the same
// transaction; release, break and expiry keep it, and leasehold never
// deletes a fences row, so a lease row deleted by hand does not restart the
// sequence. Tokens carry the random id created with the schema (table
// <table>_meta), so tokens of two databases never compare equal. Fenced
// writes (postgresql_fence.h): the SQL function <table>_fence(name,
// sequence, store_id) takes a FOR KEY SHARE lock on the row and raises
// SQLSTATE LH001 unless that tenure is current; ownership changes take FOR
// UPDATE, so a fenced transaction that passed the check commits before any
// newer tenure exists. Renewals do not wait for it.
//
// Wire protocol: every operation is one round trip in libpq's pipeline mode
// with unnamed statements, one transaction (no session state: works through
// PgBouncer in transaction pooling mode). Each transaction first sets its
// statement_timeout to what the call has left, so the server cancels what
// the client gave up on. Acquire sends the compare-and-swap and a read of
// the row together; a batch of renewals is one UPDATE over arrays. Release
// and break notify waiters (pg_notify on the store's channel) in the same
// statement; so do renewals while a contender has asked for them (the row's
// `wanted`), so that a waiter counts its window from the last renewal.
//
// Waiting: one listening connection per store (LISTEN), opened on the first
// wait, wakes waiters when a lease changes hands or (as above) is renewed;
// when listening is off (behind a transaction pooler: set `listen_conninfo`
// to a direct connection, or `listen = false`) or the listener is down,
// watched rows are polled every `poll_interval`.
//
// Connections: one statement connection per store, serialised, reconnected
// after a failure; connection strings and URIs exactly as libpq takes them
// (several hosts, target_session_attrs, sslmode=verify-full, passwords from
// PGPASSWORD or ~/.pgpass). Messages never contain the password.
//
// Thread-safety: every method is safe from any thread. Blocking IO runs on
// the runtime's blocking lane (or the caller's thread when it may block) and
// on the store's listener thread, never on a loop thread.
#ifndef LEASEHOLD_BACKENDS_POSTGRESQL_H_
#define LEASEHOLD_BACKENDS_POSTGRESQL_H_

#include <chrono>
#include <memory>
#include <string>

#include "leasehold/runtime.h"
#include "leasehold/status.h"
#include "leasehold/store.h"

namespace leasehold {

struct PostgresOptions {
  // A libpq connection string ("host=... dbname=...") or URI
  // ("postgresql://user@host:5432/db?sslmode=verify-full").
  std::string conninfo{};
  // Where the table lives. Identifiers: [a-z_][a-z0-9_]*, at most 40 bytes
  // (the table's companions append suffixes).
  std::string schema = "public";
  std::string table = "leasehold_leases";
  // Create the table, its fences and meta tables and fence function on Open
  // when missing (needs CREATE on the schema). When false, Open fails with
  // kFailedPrecondition naming `leasehold init`.
  bool create_schema = true;
  // Wake waiters by LISTEN/NOTIFY. `listen_conninfo` (default: conninfo) is
  // the connection the listener uses: a direct one when statements go
  // through a transaction pooler, which cannot carry LISTEN.
  bool listen = true;
  std::string listen_conninfo{};
  // How often watched rows are polled when nobody listens. Must be > 0.
  Duration poll_interval = std::chrono::milliseconds(250);
  // Bound on establishing a connection (also bounded by each request's
  // deadline). Must be > 0.
  Duration connect_timeout = std::chrono::seconds(5);
  // Cap on how long a foreign row must be observed unchanged before it is
  // taken over: min(row's ttl, max_observe_factor x our TTL). In [1, 1000].
  double max_observe_factor = 2.0;
  // Share observations between the stores of this process on the real
  // clock (or of one runtime on another clock), as the Kubernetes store
  // does: a contender then counts from when another client of the process
  // (e.g. the holder itself) saw the row, as a watching contender would.
  bool share_observations = true;
};

// The store's operations are Store's (store.h); the implementation
// (postgresql_store.cc) derives from this class.
class PostgresStore : public Store {
 public:
  // Connects, checks (and unless create_schema is false, creates) the
  // schema. Errors: kInvalidArgument for bad options or a connection string
  // libpq cannot parse; kUnavailable when no server answers in time;
  // kUnauthenticated for refused credentials; kPermissionDenied for missing
  // privileges; kFailedPrecondition for a missing schema (create_schema
  // false), a schema newer than this library, or a read-only server;
  // kDataLoss for a table that is not leasehold's.
  static Result<std::shared_ptr<PostgresStore>> Open(PostgresOptions options,
                                                     std::shared_ptr<Runtime> runtime = nullptr);

  // Creates or migrates the schema and returns its version (the CLI's
  // `leasehold init`). Blocks; same errors as Open.
  static Result<int> InitSchema(const PostgresOptions& options);

  // The schema version this library writes.
  static constexpr int kSchemaVersion = 1;

 protected:
  using Store::Store;
};

}  // namespace leasehold

#endif  // LEASEHOLD_BACKENDS_POSTGRESQL_H_
