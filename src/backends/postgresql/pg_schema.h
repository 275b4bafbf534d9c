// The PostgreSQL store's schema and statements.
//
// Objects (S = schema, T = table; docs/postgresql.md shows the DDL):
//   S.T          one row per lease: name, holder (NULL when free), sequence,
//                ttl_ms, version (bumped by every write), acquired_at,
//                renewed_at (server clock_timestamp(), for operators only),
//                wanted (the version at which a contender last asked to be
//                told of renewals)
//   S.T_fences   per name, the last sequence issued: never deleted by
//                leasehold, so deleting a lease row does not restart it
//   S.T_meta     'id' (random, created with the schema: in every token) and
//                'schema_version'
//   S.T_fence(name, sequence, store_id)  the fenced-write check
// Notifications go to the channel "leasehold_<hash of S.T>" with the lease
// name as payload.
//
// Versioning: the schema's version is S.T_meta's 'schema_version'. A newer
// one than kSchemaVersion is refused; an older one is migrated by
// EnsureSchema (version 1 is the first).
//
// Every statement is schema-qualified and uses parameters only: nothing a
// caller passes is ever spliced into SQL text (the identifiers are checked
// to be [a-z_][a-z0-9_]*).
#ifndef LEASEHOLD_SRC_BACKENDS_POSTGRESQL_PG_SCHEMA_H_
#define LEASEHOLD_SRC_BACKENDS_POSTGRESQL_PG_SCHEMA_H_

#include <string>

#include "leasehold/clock.h"
#include "leasehold/status.h"
#include "pg_connection.h"

namespace leasehold::postgres {

struct SchemaNames {
  std::string schema, table;                         // as given (validated)
  std::string leases, fences, meta, fence_function;  // quoted, qualified
  std::string channel;

  // Statements. Parameters in order:
  std::string set_timeout;  // ms: this transaction's statement_timeout, at most
  std::string select_row;   // name -> holder, sequence, ttl_ms, version, acquired ms, renewed ms
  std::string list_rows;    // prefix -> select_row's columns, then name, per row
  std::string acquire;      // name, holder, ttl_ms, expected version (or NULL), channel
                            //   -> sequence, version (no row: not granted)
  std::string insert;       // name, holder, ttl_ms, channel -> sequence, version
  std::string renew;        // arrays of name, holder, sequence, ttl_ms; channel
                            //   -> position (1-based), version per lease renewed
  std::string want;         // name, holder
  std::string release;      // name, holder, sequence, channel
  std::string break_lease;  // name, channel

  // kInvalidArgument unless both are identifiers of at most 40 bytes.
  static Result<SchemaNames> For(const std::string& schema, const std::string& table);
};

struct SchemaInfo {
  std::string id;
  int version = 0;
};

// Reads the schema's id and version, creating (when `create`) or migrating
// the schema first when needed, under a transaction-scoped advisory lock (so
// concurrent first uses do not race, and no session state is left behind).
Result<SchemaInfo> EnsureSchema(Connection& conn, const SchemaNames& names, bool create,
                                TimePoint deadline, const std::string& describe);

}  // namespace leasehold::postgres

#endif  // LEASEHOLD_SRC_BACKENDS_POSTGRESQL_PG_SCHEMA_H_
