#include "pg_schema.h"

#include <cstdio>

#include "leasehold/backends/postgresql.h"
#include "leasehold/detail/io.h"

namespace leasehold::postgres {
namespace {

bool IsIdentifier(const std::string& s) {
  if (s.empty() || s.size() > 40) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool ok = c == '_' || (c >= 'a' && c <= 'z') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string Hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Replaces every "{key}" in `text`.
std::string Fill(std::string text, const SchemaNames& n) {
  const std::pair<const char*, const std::string*> keys[] = {
      {"{leases}", &n.leases},
      {"{fences}", &n.fences},
      {"{meta}", &n.meta},
      {"{fence_function}", &n.fence_function},
      {"{schema}", &n.schema}};
  for (const auto& [key, value] : keys) {
    const std::string k = key;
    for (size_t at = text.find(k); at != std::string::npos; at = text.find(k, at)) {
      text.replace(at, k.size(), *value);
      at += value->size();
    }
  }
  return text;
}

// Version 1 of the schema. Every statement tolerates existing objects.
constexpr const char* kCreate = R"sql(
DO $do$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = '{schema}') THEN
    CREATE SCHEMA "{schema}";
  END IF;
END $do$;
CREATE TABLE IF NOT EXISTS {leases} (
  name text PRIMARY KEY,
  holder text,
  sequence bigint NOT NULL DEFAULT 0,
  ttl_ms bigint NOT NULL DEFAULT 0,
  version bigint NOT NULL DEFAULT 0,
  acquired_at timestamptz,
  renewed_at timestamptz,
  wanted bigint);
CREATE TABLE IF NOT EXISTS {fences} (name text PRIMARY KEY, last bigint NOT NULL);
CREATE TABLE IF NOT EXISTS {meta} (key text PRIMARY KEY, value text NOT NULL);
CREATE OR REPLACE FUNCTION {fence_function}(p_name text, p_sequence bigint,
                                            p_store_id text DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  IF p_store_id IS NOT NULL AND
     p_store_id IS DISTINCT FROM (SELECT value FROM {meta} WHERE key = 'id') THEN
    RAISE EXCEPTION 'leasehold: the fencing token is of another database'
      USING ERRCODE = 'LH001';
  END IF;
  PERFORM 1 FROM {leases}
    WHERE name = p_name AND holder IS NOT NULL AND sequence = p_sequence
    FOR KEY SHARE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'leasehold: lease "%" is no longer held at sequence %', p_name, p_sequence
      USING ERRCODE = 'LH001';
  END IF;
END $fn$;
)sql";

}  // namespace

Result<SchemaNames> SchemaNames::For(const std::string& schema, const std::string& table) {
  if (!IsIdentifier(schema) || !IsIdentifier(table)) {
    return InvalidArgumentError(
        "postgresql store: schema and table must be lower-case identifiers ([a-z_][a-z0-9_]*, at "
        "most 40 bytes); got schema \"" +
        schema.substr(0, 64) + "\", table \"" + table.substr(0, 64) + "\"");
  }
  SchemaNames n;
  n.schema = schema;
  n.table = table;
  const std::string q = "\"" + schema + "\".\"";
  n.leases = q + table + "\"";
  n.fences = q + table + "_fences\"";
  n.meta = q + table + "_meta\"";
  n.fence_function = q + table + "_fence\"";
  n.channel = "leasehold_" + Hex(Fnv1a(schema + "." + table));
  // The lesser of the call's budget and the session's own setting (a role's
  // or database's statement_timeout, when set, stays in force).
  n.set_timeout =
      "SELECT set_config('statement_timeout',"
      " (CASE WHEN u > 0 AND u < $1::bigint THEN u ELSE $1::bigint END)::text, true)"
      " FROM (SELECT ceil(extract(epoch FROM current_setting('statement_timeout')::interval)"
      " * 1000)::bigint AS u) AS s";
  const std::string row_columns =
      "holder, sequence, ttl_ms, version,"
      " CASE WHEN isfinite(acquired_at) THEN (extract(epoch FROM acquired_at) * 1000)::bigint END,"
      " CASE WHEN isfinite(renewed_at) THEN (extract(epoch FROM renewed_at) * 1000)::bigint END";
  n.select_row = Fill("SELECT " + row_columns + " FROM {leases} WHERE name = $1", n);
  // starts_with compares bytes whatever the database's collation; the
  // caller sorts.
  n.list_rows =
      Fill("SELECT " + row_columns + ", name FROM {leases} WHERE starts_with(name, $1)", n);
  // Free, ours, or the version observed unchanged for its window. FOR
  // UPDATE: waits for fenced transactions (FOR KEY SHARE) of the tenure it
  // ends. Every acquisition takes a new sequence from the fences row, never
  // below the lease row's own.
  n.acquire = Fill(
      "WITH cur AS (SELECT name, holder, sequence FROM {leases}"
      "  WHERE name = $1 AND (holder IS NULL OR holder = $2 OR version = $4::bigint)"
      "  FOR UPDATE),"
      " fence AS (INSERT INTO {fences} AS f (name, last)"
      "  SELECT name, greatest(sequence, 0) + 1 FROM cur"
      "  ON CONFLICT (name) DO UPDATE SET last = greatest(f.last, excluded.last - 1) + 1"
      "  RETURNING last)"
      " UPDATE {leases} AS t SET holder = $2, sequence = (SELECT last FROM fence),"
      "  ttl_ms = $3::bigint, version = t.version + 1,"
      "  acquired_at = clock_timestamp(), renewed_at = clock_timestamp()"
      " FROM cur WHERE t.name = cur.name"
      " RETURNING t.sequence, t.version,"
      "  CASE WHEN cur.holder IS DISTINCT FROM $2 THEN pg_notify($5::text, $1) END",
      n);
  n.insert = Fill(
      "WITH fence AS (INSERT INTO {fences} AS f (name, last) VALUES ($1, 1)"
      "  ON CONFLICT (name) DO UPDATE SET last = f.last + 1 RETURNING last),"
      " created AS (INSERT INTO {leases} (name, holder, sequence, ttl_ms, version, acquired_at,"
      "  renewed_at) SELECT $1, $2, last, $3::bigint, 1, clock_timestamp(), clock_timestamp()"
      "  FROM fence ON CONFLICT (name) DO NOTHING RETURNING sequence, version)"
      " SELECT sequence, version, pg_notify($4::text, $1) FROM created",
      n);
  // One statement for a whole batch (arrays of names, holders, sequences,
  // TTLs). Plain UPDATEs (FOR NO KEY UPDATE): renewals never wait for fenced
  // transactions of their own tenure. A renewal notifies only while a
  // contender asked to hear of changes (`wanted`, set by its acquire, no
  // older than three renewals): waiters then count from the holder's last
  // write, and nobody pays for notifications nobody waits for.
  n.renew = Fill(
      "UPDATE {leases} AS t SET ttl_ms = r.ttl_ms, version = t.version + 1,"
      " renewed_at = clock_timestamp()"
      " FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) WITH ORDINALITY"
      "  AS r(name, holder, sequence, ttl_ms, k)"
      " WHERE t.name = r.name AND t.holder = r.holder AND t.sequence = r.sequence"
      " RETURNING r.k, t.version,"
      "  CASE WHEN t.wanted >= t.version - 3 THEN pg_notify($5::text, t.name) END",
      n);
  // A contender asks to hear of the holder's renewals (no-op when it holds,
  // or already asked at this version). `version` is not bumped: observers'
  // windows go on.
  n.want = Fill(
      "UPDATE {leases} SET wanted = version WHERE name = $1 AND holder IS NOT NULL"
      " AND holder <> $2 AND wanted IS DISTINCT FROM version",
      n);
  n.release = Fill(
      "WITH cur AS (SELECT name FROM {leases}"
      "  WHERE name = $1 AND holder = $2 AND sequence = $3::bigint FOR UPDATE)"
      " UPDATE {leases} AS t SET holder = NULL, version = t.version + 1"
      " FROM cur WHERE t.name = cur.name RETURNING pg_notify($4::text, $1)",
      n);
  n.break_lease = Fill(
      "WITH cur AS (SELECT name FROM {leases} WHERE name = $1 AND holder IS NOT NULL FOR UPDATE)"
      " UPDATE {leases} AS t SET holder = NULL, version = t.version + 1"
      " FROM cur WHERE t.name = cur.name RETURNING pg_notify($2::text, $1)",
      n);
  return n;
}

Result<SchemaInfo> EnsureSchema(Connection& conn, const SchemaNames& names, bool create,
                                TimePoint deadline, const std::string& describe) {
  const std::string what = describe + ": schema " + names.schema + "." + names.table;
  const Statement read_meta{
      Fill("SELECT key, value FROM {meta} WHERE key IN ('id', 'schema_version')", names)};
  // The lease table must have our columns (a table of someone else's with
  // the same name is refused rather than written to).
  const Statement check_table{
      Fill("SELECT holder, sequence, ttl_ms, version, acquired_at, renewed_at, wanted FROM {leases}"
           " LIMIT 0",
           names)};
  for (int attempt = 0;; ++attempt) {
    Result<std::vector<Rows>> out = conn.Run({read_meta, check_table}, deadline, what);
    if (out.ok()) {
      SchemaInfo info;
      for (const auto& row : (*out)[0].rows) {
        if (row.size() != 2 || !row[0] || !row[1]) continue;
        if (*row[0] == "id") info.id = *row[1];
        if (*row[0] == "schema_version") info.version = std::atoi(row[1]->c_str());
      }
      if (info.id.empty() || info.id.size() > 64 ||
          info.id.find_first_of("/ \n") != std::string::npos) {
        return DataLossError(what + ": the meta table has no valid 'id'");
      }
      if (info.version > PostgresStore::kSchemaVersion) {
        return FailedPreconditionError(what + ": schema version " + std::to_string(info.version) +
                                       " is newer than this leasehold understands (" +
                                       std::to_string(PostgresStore::kSchemaVersion) +
                                       "); upgrade leasehold");
      }
      if (info.version < 1) {
        return DataLossError(what + ": the meta table has no valid 'schema_version'");
      }
      return info;
    }
    const Status s = out.status();
    const bool missing = s.code() == StatusCode::kFailedPrecondition;
    if (!missing) return s;
    if (s.message().find("SQLSTATE 42703") != std::string::npos) {
      return DataLossError(what + ": the table exists but is not leasehold's (" + s.message() +
                           ")");
    }
    if (!create) {
      return FailedPreconditionError(what +
                                     ": the leasehold schema does not exist; create it"
                                     " with `leasehold init --store URL` (" +
                                     s.message() + ")");
    }
    if (attempt > 0) return s;
    // One script is one implicit transaction, serialised with other creators
    // by an advisory lock that ends with it.
    const std::string lock =
        "SELECT pg_advisory_xact_lock(" +
        std::to_string(static_cast<int64_t>(Fnv1a("leasehold:" + names.leases))) + ");";
    const std::string id = detail::RandomHexId();
    const std::string script = lock + Fill(kCreate, names) +
                               Fill("INSERT INTO {meta} (key, value) VALUES ('id', '" + id +
                                        "'), ('schema_version', '1') ON CONFLICT (key) DO NOTHING;",
                                    names);
    if (Status c = conn.Script(script, deadline, what + ": create"); !c.ok()) return c;
  }
}

}  // namespace leasehold::postgres
