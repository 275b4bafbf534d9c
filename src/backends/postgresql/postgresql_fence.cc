#include "leasehold/backends/postgresql_fence.h"

#include <libpq-fe.h>

#include "pg_connection.h"
#include "pg_schema.h"

namespace leasehold {
namespace {

// "postgresql/<store id>/<sequence>/<name>" -> the store id, if the token is
// one the PostgreSQL store issued for `name`.
std::optional<std::string> StoreId(const std::string& name, const FencingToken& token) {
  const std::string prefix = "postgresql/";
  const std::string suffix = "/" + std::to_string(token.sequence) + "/" + name;
  const std::string& v = token.value;
  if (v.size() <= prefix.size() + suffix.size() || v.compare(0, prefix.size(), prefix) != 0 ||
      v.compare(v.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return std::nullopt;
  }
  std::string id = v.substr(prefix.size(), v.size() - prefix.size() - suffix.size());
  if (id.empty() || id.find('/') != std::string::npos) return std::nullopt;
  return id;
}

// Runs one statement; kOk or the server's error naming `what`.
Status Exec(pg_conn* conn, const std::string& sql, const std::vector<std::string>& params,
            const std::string& what) {
  std::vector<const char*> values;
  for (const auto& p : params) values.push_back(p.c_str());
  PGresult* r = PQexecParams(conn, sql.c_str(), static_cast<int>(values.size()), nullptr,
                             values.data(), nullptr, nullptr, 0);
  const ExecStatusType st = PQresultStatus(r);
  Status out;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char* primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const std::string message = primary ? primary : PQerrorMessage(conn);
    if (state && std::string(state) == "LH001") {
      out = FailedPreconditionError(what + ": stale fencing token: " + message);
    } else {
      out = postgres::SqlError(state ? state : "08000", message, what);
    }
  }
  PQclear(r);
  return out;
}

}  // namespace

Result<FenceStatement> MakeFenceStatement(const std::string& lease_name, const FencingToken& token,
                                          const FenceLocation& where) {
  Result<postgres::SchemaNames> names = postgres::SchemaNames::For(where.schema, where.table);
  if (!names.ok()) return names.status();
  const std::optional<std::string> id = StoreId(lease_name, token);
  if (!id || token.sequence == 0 ||
      token.sequence > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return InvalidArgumentError("fenced write on lease \"" + lease_name +
                                "\": not a token the PostgreSQL store issued for that lease");
  }
  return FenceStatement{"SELECT " + names->fence_function + "($1, $2::bigint, $3)",
                        {lease_name, std::to_string(token.sequence), *id}};
}

Status RunFenced(pg_conn* conn, const std::string& lease_name, const FencingToken& token,
                 const std::function<Status(pg_conn*)>& body, const FenceLocation& where) {
  const std::string what = "fenced write on lease \"" + lease_name + "\"";
  if (!conn || PQstatus(conn) != CONNECTION_OK) {
    return UnavailableError(what + ": the connection is not open");
  }
  if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
    return FailedPreconditionError(what + ": the connection is inside a transaction already");
  }
  Result<FenceStatement> check = MakeFenceStatement(lease_name, token, where);
  if (!check.ok()) return check.status();
  if (Status s = Exec(conn, "BEGIN", {}, what); !s.ok()) return s;
  Status s = Exec(conn, check->sql, check->params, what);
  if (s.ok()) s = body(conn);
  if (s.ok()) return Exec(conn, "COMMIT", {}, what);
  // PQexec leaves the transaction open on error: end it, whatever happened.
  PQclear(PQexec(conn, "ROLLBACK"));
  return s;
}

}  // namespace leasehold
