// leasehold: fenced writes in PostgreSQL -- the user's own statements, in one
// transaction that commits only while a lease tenure is still current.
//
// The PostgreSQL store creates, next to its table T, the function
//
//   T_fence(name text, sequence bigint, store_id text DEFAULT NULL)
//
// which takes a FOR KEY SHARE lock on the lease's row and raises SQLSTATE
// LH001 unless the row still names a holder at that sequence (and, when
// store_id is given, the token is of this database). Every change of
// ownership (acquire, release, break) locks the row FOR UPDATE first, so it
// waits for transactions that passed the check: such a transaction commits
// before any newer tenure exists, or fails. By hand:
//
//   BEGIN;
//   SELECT public.leasehold_leases_fence('jobs', 42, '<store id>');
//   UPDATE accounts SET ...;   -- your writes
//   COMMIT;
//
// (In REPEATABLE READ or SERIALIZABLE, a takeover after the transaction's
// snapshot makes the check fail with a serialization error: retry.)
//
// RunFenced does the same on a connection of the caller's (libpq's PGconn).
// It does not take ownership of the connection and leaves it idle (the
// transaction committed or rolled back). Tokens are those the store issued:
// "postgresql/<store id>/<sequence>/<name>".
//
// Thread-safety: as libpq's: one thread uses a connection at a time.
#ifndef LEASEHOLD_BACKENDS_POSTGRESQL_FENCE_H_
#define LEASEHOLD_BACKENDS_POSTGRESQL_FENCE_H_

#include <functional>
#include <string>
#include <vector>

#include "leasehold/fencing.h"
#include "leasehold/status.h"

struct pg_conn;  // libpq's PGconn

namespace leasehold {

struct FenceLocation {
  std::string schema = "public";
  std::string table = "leasehold_leases";
};

// The check as one statement and its parameters (text), for callers that run
// their own transactions (any client library). kInvalidArgument for a token
// that is not a PostgreSQL store's or a bad location.
struct FenceStatement {
  std::string sql;
  std::vector<std::string> params;
};
Result<FenceStatement> MakeFenceStatement(const std::string& lease_name, const FencingToken& token,
                                          const FenceLocation& where = {});

// BEGIN; the check; body(conn); COMMIT -- rolling back when the check or the
// body fails. Errors: kFailedPrecondition when the tenure is no longer
// current (the stale holder's writes were not applied); the body's error;
// kUnavailable/kAborted/... for the database's own errors (SQLSTATE in the
// message). An error at COMMIT means the writes were not applied.
Status RunFenced(pg_conn* conn, const std::string& lease_name, const FencingToken& token,
                 const std::function<Status(pg_conn*)>& body, const FenceLocation& where = {});

}  // namespace leasehold

#endif  // LEASEHOLD_BACKENDS_POSTGRESQL_FENCE_H_
