// One libpq connection with deadlines: the PostgreSQL store's wire.
//
// libpq's blocking calls have no timeout, so everything here runs libpq in
// non-blocking mode and waits in poll() for at most what is left of the
// caller's deadline. A connection that missed a deadline, or broke, is closed:
// the next call connects again (libpq then tries the hosts of the connection
// string in order, honouring target_session_attrs).
//
// Run() sends statements in pipeline mode -- unnamed statements, text
// parameters, one Sync -- so a batch is one round trip and one implicit
// transaction (an error aborts the statements after it), with no session
// state a transaction pooler could lose.
//
// Messages name the store (`describe`) and never contain the password: the
// description is rebuilt from the parsed connection string without it, and
// libpq's own parse errors are scrubbed of anything that looked like one.
//
// Thread-safety: none; the owner serialises calls.
#ifndef LEASEHOLD_SRC_BACKENDS_POSTGRESQL_PG_CONNECTION_H_
#define LEASEHOLD_SRC_BACKENDS_POSTGRESQL_PG_CONNECTION_H_

#include <optional>
#include <string>
#include <vector>

#include "leasehold/clock.h"
#include "leasehold/status.h"

struct pg_conn;
struct pg_result;

namespace leasehold::postgres {

// A statement and its parameters (text format; nullopt is NULL).
struct Statement {
  std::string sql;
  std::vector<std::optional<std::string>> params{};
};

// What one statement returned: its rows as text (nullopt for NULL).
struct Rows {
  std::vector<std::vector<std::optional<std::string>>> rows;
};

// Parses `conninfo` as libpq does and describes it without secrets:
// "postgresql://user@host:port/dbname". kInvalidArgument when libpq cannot
// parse it (libpq's reason, scrubbed of anything that looked like a
// password).
Result<std::string> DescribeConninfo(const std::string& conninfo);

// Maps a SQLSTATE (and libpq's message) to a leasehold error naming `what`.
Status SqlError(const std::string& sqlstate, const std::string& message, const std::string& what);

class Connection {
 public:
  // `clock` judges deadlines (the runtime's; a simulated clock's remaining
  // time is waited in real time). `connect_timeout` bounds every connect.
  Connection(std::string conninfo, std::string describe, const Clock& clock,
             Duration connect_timeout);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects if not connected (or if the server ended the idle session:
  // nothing was sent on it, so nothing is lost by replacing it). Errors: kUnavailable (no server,
  // timeout, refused TLS), kUnauthenticated (credentials refused).
  Status Connect(TimePoint deadline, const std::string& what);
  // Runs `statements` in one pipeline by `deadline`: one Rows per statement,
  // or the first error (the whole batch is one transaction).
  Result<std::vector<Rows>> Run(const std::vector<Statement>& statements, TimePoint deadline,
                                const std::string& what);
  // Runs SQL text with the simple protocol (several statements allowed; one
  // implicit transaction), e.g. a schema script.
  Status Script(const std::string& sql, TimePoint deadline, const std::string& what);

  // Waits (up to `deadline`) for input and returns the channel payloads of
  // the notifications received; an error when the connection broke.
  Result<std::vector<std::string>> AwaitNotifications(TimePoint deadline, int wake_fd);

  bool connected() const noexcept { return conn_ != nullptr; }
  void Close() noexcept;

 private:
  // Whether the session is up, as far as can be told without a round trip.
  bool StillUp();
  Status Wait(bool for_write, TimePoint deadline, const std::string& what, int wake_fd = -1);
  Status Flush(TimePoint deadline, const std::string& what);
  Status Broken(const std::string& what);
  Status CloseIfInFlight(Status s);
  Status ResultError(const ::pg_result* r, const std::string& what) const;
  // Reads results until the pipeline's Sync (pipeline) or the end (simple).
  Result<std::vector<Rows>> Collect(size_t statements, bool pipeline, TimePoint deadline,
                                    const std::string& what);

  const std::string conninfo_;
  const std::string describe_;
  const Clock& clock_;
  const Duration connect_timeout_;
  pg_conn* conn_ = nullptr;
};

}  // namespace leasehold::postgres

#endif  // LEASEHOLD_SRC_BACKENDS_POSTGRESQL_PG_CONNECTION_H_
