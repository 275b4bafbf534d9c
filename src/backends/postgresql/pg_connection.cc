#include "pg_connection.h"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>

namespace leasehold::postgres {
namespace {

using Steady = std::chrono::steady_clock;

// A deadline on `clock` as a point on the steady clock this thread waits on:
// a simulated clock does not move while we wait, so what is left is waited in
// real time.
Steady::time_point RealDeadline(const Clock& clock, TimePoint deadline) {
  const Duration left = deadline - clock.Now();
  return Steady::now() + std::max(Duration::zero(), left);
}

// Everything in `conninfo` that may be a password.
std::vector<std::string> Secrets(const std::string& conninfo) {
  std::vector<std::string> out;
  for (size_t at = conninfo.find("password="); at != std::string::npos;
       at = conninfo.find("password=", at + 1)) {
    size_t begin = at + 9;
    const bool quoted = begin < conninfo.size() && conninfo[begin] == '\'';
    if (quoted) ++begin;
    size_t end = begin;
    while (end < conninfo.size() &&
           (quoted ? conninfo[end] != '\''
                   : !std::isspace(static_cast<unsigned char>(conninfo[end])) &&
                         conninfo[end] != '&' && conninfo[end] != '#')) {
      ++end;
    }
    out.push_back(conninfo.substr(begin, end - begin));
  }
  // URI user information: postgresql://user:password@host
  const size_t scheme = conninfo.find("://");
  if (scheme != std::string::npos) {
    const size_t begin = scheme + 3;
    const size_t at = conninfo.find('@', begin);
    const size_t slash = conninfo.find('/', begin);
    if (at != std::string::npos && (slash == std::string::npos || at < slash)) {
      const size_t colon = conninfo.find(':', begin);
      if (colon != std::string::npos && colon < at) {
        out.push_back(conninfo.substr(colon + 1, at - colon - 1));
      }
    }
  }
  out.erase(std::remove_if(out.begin(), out.end(), [](const std::string& s) { return s.empty(); }),
            out.end());
  return out;
}

std::string Scrub(std::string text, const std::string& conninfo) {
  for (const std::string& secret : Secrets(conninfo)) {
    for (size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
      text.replace(at, secret.size(), "***");
      at += 3;
    }
  }
  return text;
}

// libpq's multi-line messages on one line, without the trailing newline.
std::string OneLine(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  for (char& c : text) {
    if (c == '\n' || c == '\t') c = ' ';
  }
  return text;
}

bool Contains(const std::string& text, std::string_view what) {
  return text.find(what) != std::string::npos;
}

}  // namespace

Result<std::string> DescribeConninfo(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* options = PQconninfoParse(conninfo.c_str(), &err);
  if (!options) {
    // Scrubbed before anything else changes it (OneLine would hide a
    // secret that spans lines from Scrub).
    std::string reason = err ? OneLine(Scrub(err, conninfo)) : "out of memory";
    PQfreemem(err);
    return InvalidArgumentError("postgresql store: cannot parse the connection string: " + reason);
  }
  std::string host, port, dbname, user;
  for (PQconninfoOption* o = options; o->keyword; ++o) {
    if (!o->val) continue;
    const std::string key = o->keyword;
    if (key == "host" || (key == "hostaddr" && host.empty())) host = o->val;
    if (key == "port") port = o->val;
    if (key == "dbname") dbname = o->val;
    if (key == "user") user = o->val;
  }
  PQconninfoFree(options);
  std::string out = "postgresql://";
  if (!user.empty()) out += user + "@";
  out += host.empty() ? "localhost" : host;
  if (!port.empty()) out += ":" + port;
  if (!dbname.empty()) out += "/" + dbname;
  return out;
}

Status SqlError(const std::string& sqlstate, const std::string& message, const std::string& what) {
  const std::string text = what + ": " + message + " (SQLSTATE " + sqlstate + ")";
  const std::string cls = sqlstate.substr(0, 2);
  if (sqlstate == "28P01" || cls == "28") return UnauthenticatedError(text);
  if (sqlstate == "42501") return PermissionDeniedError(text);
  if (sqlstate == "42P01" || sqlstate == "42883" || sqlstate == "3F000" || sqlstate == "42703") {
    return FailedPreconditionError(text +
                                   "; the leasehold schema is missing or not this"
                                   " version's: run `leasehold init --store URL`");
  }
  if (sqlstate == "25006") {
    return UnavailableError(text +
                            "; connected to a read-only server (a standby?): list the"
                            " primary or use target_session_attrs=read-write");
  }
  if (sqlstate == "40001" || sqlstate == "40P01") return AbortedError(text);
  if (cls == "08" || cls == "53" || cls == "57" || cls == "58" || sqlstate == "55P03" ||
      sqlstate == "55006" || sqlstate == "40003") {
    return UnavailableError(text);
  }
  if (cls == "22" || cls == "23") return DataLossError(text);
  return InternalError(text);
}

Connection::Connection(std::string conninfo, std::string describe, const Clock& clock,
                       Duration connect_timeout)
    : conninfo_(std::move(conninfo)),
      describe_(std::move(describe)),
      clock_(clock),
      connect_timeout_(connect_timeout) {}

Connection::~Connection() { Close(); }

void Connection::Close() noexcept {
  if (conn_) PQfinish(conn_);
  conn_ = nullptr;
}

Status Connection::Broken(const std::string& what) {
  std::string reason = conn_ ? OneLine(Scrub(PQerrorMessage(conn_), conninfo_)) : "not connected";
  Close();
  if (reason.empty()) reason = "the connection broke";
  return UnavailableError(what + ": " + reason);
}

Status Connection::Wait(bool for_write, TimePoint deadline, const std::string& what, int wake_fd) {
  const Steady::time_point until = RealDeadline(clock_, deadline);
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Steady::now());
    if (left.count() <= 0) {
      return DeadlineExceededError(what + ": no answer from the server within the deadline");
    }
    pollfd fds[2] = {{PQsocket(conn_), static_cast<short>(for_write ? POLLOUT : POLLIN), 0},
                     {wake_fd, POLLIN, 0}};
    const int n =
        poll(fds, wake_fd >= 0 ? 2 : 1, static_cast<int>(std::min<int64_t>(left.count(), 60'000)));
    if (n > 0) return Status::Ok();
    if (n < 0 && errno != EINTR) return Broken(what);
  }
}

Status Connection::CloseIfInFlight(Status s) {
  // A request may still be in flight: never read its answer as another's.
  if (s.code() == StatusCode::kDeadlineExceeded) Close();
  return s;
}

Status Connection::Flush(TimePoint deadline, const std::string& what) {
  for (;;) {
    const int r = PQflush(conn_);
    if (r == 0) return Status::Ok();
    if (r < 0) return Broken(what);
    if (Status s = Wait(true, deadline, what); !s.ok()) return s;
    if (!PQconsumeInput(conn_)) return Broken(what);
  }
}

bool Connection::StillUp() {
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK) return false;
  // An idle session the server ended (a restart, pg_terminate_backend,
  // idle_session_timeout, a pooler or firewall dropping idle connections)
  // leaves its farewell and EOF unread: look before sending, since a request
  // written to it would fail although it never reached any server.
  // The farewell and the EOF may take one read each.
  for (int reads = 0; reads < 4; ++reads) {
    pollfd fd{PQsocket(conn_), POLLIN, 0};
    if (poll(&fd, 1, 0) <= 0) return true;
    if (PQconsumeInput(conn_) != 1 || PQstatus(conn_) != CONNECTION_OK) return false;
  }
  return true;
}

Status Connection::Connect(TimePoint deadline, const std::string& what) {
  if (StillUp()) return Status::Ok();
  Close();
  deadline = std::min(deadline, clock_.Now() + connect_timeout_);
  const char* keys[] = {"dbname", "fallback_application_name", nullptr};
  const char* values[] = {conninfo_.c_str(), "leasehold", nullptr};
  conn_ = PQconnectStartParams(keys, values, /*expand_dbname=*/1);
  if (!conn_) return UnavailableError(what + ": cannot allocate a connection");
  // Notices (e.g. "relation already exists, skipping") are not errors: keep
  // them off the host program's stderr.
  PQsetNoticeProcessor(
      conn_, [](void*, const char*) {}, nullptr);
  const std::string connecting = what + ": connect";
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (PQstatus(conn_) != CONNECTION_BAD && st != PGRES_POLLING_OK &&
         st != PGRES_POLLING_FAILED) {
    if (Status s = Wait(st == PGRES_POLLING_WRITING, deadline, connecting); !s.ok()) {
      Close();
      return s;
    }
    st = PQconnectPoll(conn_);
  }
  if (st == PGRES_POLLING_OK && PQstatus(conn_) == CONNECTION_OK) {
    if (PQsetnonblocking(conn_, 1) != 0) return Broken(connecting);
    return Status::Ok();
  }
  const std::string reason = OneLine(Scrub(PQerrorMessage(conn_), conninfo_));
  Close();
  const std::string text = connecting + ": " + reason;
  if (Contains(reason, "authentication failed") || Contains(reason, "no password supplied") ||
      Contains(reason, "pg_hba.conf") || Contains(reason, "SCRAM") ||
      Contains(reason, "password authentication")) {
    return UnauthenticatedError(text);
  }
  if (Contains(reason, "database \"") && Contains(reason, "does not exist")) {
    return FailedPreconditionError(text);
  }
  return UnavailableError(text);
}

Status Connection::ResultError(const ::pg_result* r, const std::string& what) const {
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char* primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  const std::string message =
      OneLine(Scrub(primary ? primary : PQresultErrorMessage(r), conninfo_));
  if (!state) return UnavailableError(what + ": " + message);
  return SqlError(state, message, what);
}

Result<std::vector<Rows>> Connection::Collect(size_t statements, bool pipeline, TimePoint deadline,
                                              const std::string& what) {
  std::vector<Rows> out;
  out.reserve(statements);
  Status first_error;
  for (;;) {
    while (PQisBusy(conn_)) {
      if (Status s = Wait(false, deadline, what); !s.ok()) return s;
      if (!PQconsumeInput(conn_)) return Broken(what);
    }
    PGresult* r = PQgetResult(conn_);
    if (!r) {
      if (!pipeline) break;
      if (PQstatus(conn_) == CONNECTION_BAD) return Broken(what);
      continue;  // the end of one statement's results
    }
    const ExecStatusType status = PQresultStatus(r);
    if (status == PGRES_PIPELINE_SYNC) {
      PQclear(r);
      break;
    }
    Rows rows;
    if (status == PGRES_TUPLES_OK) {
      const int n = PQntuples(r), cols = PQnfields(r);
      rows.rows.resize(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        auto& row = rows.rows[static_cast<size_t>(i)];
        row.reserve(static_cast<size_t>(cols));
        for (int c = 0; c < cols; ++c) {
          if (PQgetisnull(r, i, c)) {
            row.emplace_back(std::nullopt);
          } else {
            row.emplace_back(
                std::string(PQgetvalue(r, i, c), static_cast<size_t>(PQgetlength(r, i, c))));
          }
        }
      }
    } else if (status == PGRES_FATAL_ERROR) {
      if (first_error.ok()) first_error = ResultError(r, what);
    } else if (status != PGRES_COMMAND_OK && status != PGRES_PIPELINE_ABORTED &&
               status != PGRES_EMPTY_QUERY) {
      if (first_error.ok()) {
        first_error = InternalError(what + ": unexpected reply " +
                                    std::string(PQresStatus(status)) + " from the server");
      }
    }
    PQclear(r);
    out.push_back(std::move(rows));
  }
  if (PQstatus(conn_) == CONNECTION_BAD) return Broken(what);
  if (!first_error.ok()) return first_error;
  if (pipeline && out.size() != statements) {
    Close();
    return InternalError(what + ": the server answered " + std::to_string(out.size()) + " of " +
                         std::to_string(statements) + " statements");
  }
  return out;
}

Result<std::vector<Rows>> Connection::Run(const std::vector<Statement>& statements,
                                          TimePoint deadline, const std::string& what) {
  if (Status s = Connect(deadline, what); !s.ok()) return s;
  if (PQenterPipelineMode(conn_) != 1) return Broken(what);
  for (const Statement& st : statements) {
    std::vector<const char*> values;
    values.reserve(st.params.size());
    for (const auto& p : st.params) values.push_back(p ? p->c_str() : nullptr);
    if (!PQsendQueryParams(conn_, st.sql.c_str(), static_cast<int>(values.size()), nullptr,
                           values.data(), nullptr, nullptr, 0)) {
      return Broken(what);
    }
  }
  if (!PQpipelineSync(conn_)) return Broken(what);
  if (Status s = Flush(deadline, what); !s.ok()) return CloseIfInFlight(s);
  Result<std::vector<Rows>> out = Collect(statements.size(), true, deadline, what);
  if (conn_ && PQexitPipelineMode(conn_) != 1) Close();
  if (!out.ok()) (void)CloseIfInFlight(out.status());
  return out;
}

Status Connection::Script(const std::string& sql, TimePoint deadline, const std::string& what) {
  if (Status s = Connect(deadline, what); !s.ok()) return s;
  if (!PQsendQuery(conn_, sql.c_str())) return Broken(what);
  if (Status s = Flush(deadline, what); !s.ok()) return CloseIfInFlight(s);
  return CloseIfInFlight(Collect(0, false, deadline, what).status());
}

Result<std::vector<std::string>> Connection::AwaitNotifications(TimePoint deadline, int wake_fd) {
  const std::string what = describe_ + ": listen";
  std::vector<std::string> out;
  if (!conn_) return UnavailableError(what + ": not connected");
  auto drain = [&] {
    while (PGnotify* n = PQnotifies(conn_)) {
      out.emplace_back(n->extra ? n->extra : "");
      PQfreemem(n);
    }
  };
  drain();  // received while another call read the socket
  if (!out.empty()) return out;
  if (Status s = Wait(false, deadline, what, wake_fd); !s.ok()) {
    if (s.code() == StatusCode::kDeadlineExceeded) return out;  // nothing arrived: fine
    return s;
  }
  if (!PQconsumeInput(conn_)) return Broken(what);
  drain();
  return out;
}

}  // namespace leasehold::postgres
