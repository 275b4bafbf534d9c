// Test fixtures for the PostgreSQL backend: real, throwaway PostgreSQL 15
// servers (Debian's binaries in /usr/lib/postgresql/15/bin) and PgBouncer in
// front of them, on 127.0.0.1 with free ports and temporary directories,
// with the faults the backend's tests need (kill, pause, restart, terminated
// sessions, a server wall clock that jumps).
//
// Processes: postgres refuses to run as root, so when the test runs as root
// every server process runs as the `postgres` user (its directories are
// chowned to it); otherwise as the current user. Every process is started by
// fork/exec, never through a shell, pg_ctl or a daemonizing wrapper, so the
// fixture knows the postmaster's PID and stops exactly what it started, by
// PID. A server process dies with the thread that started it
// (PR_SET_PDEATHSIG): start fixtures on a thread that outlives them (the
// test's own thread).
//
// Postmaster children (backends, checkpointer, ...) each call setsid(), so
// they are in no process group of ours: Pause, Resume and Kill signal the
// postmaster and every child it has, found by parent PID in /proc.
//
// Speed: a start copies a ~30 MB data directory under $TMPDIR (/tmp by
// default). On this project's VMs that takes ~0.1 s on an idle disk and up to
// ~1.5 s while other tests fsync; with TMPDIR=/dev/shm (tmpfs; set it in the
// test's CTest ENVIRONMENT) it takes ~0.1 s always. The servers run with
// fsync=off (a stalled shared disk would fail renewals at a 1 s TTL): do not
// measure commit latency here. A killed server loses nothing (its writes
// are in the page cache).
//
// Thread-safety: Query, the conninfo accessors and LogTail may be called from
// any thread while the server is not being started, restarted or killed; the
// fault methods (Kill, Pause, Resume, Restart, StartAgain, SetClockOffset)
// are to be called from one thread at a time.
#ifndef LEASEHOLD_SRC_BACKENDS_POSTGRESQL_TESTING_PG_SERVER_H_
#define LEASEHOLD_SRC_BACKENDS_POSTGRESQL_TESTING_PG_SERVER_H_

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "leasehold/status.h"
#include "testing/child_process.h"
#include "testing/temp_dir.h"
#include "testing/test_pki.h"

namespace leasehold::pg_test {

namespace detail {
// The user server processes run as: `postgres` when the test runs as root
// (switch), otherwise the current user.
using ServerUser = testing::ProcessUser;
}  // namespace detail

// Rows of a query result; SQL NULL reads as "".
using Rows = std::vector<std::vector<std::string>>;

struct PgServerOptions {
  // ssl=on with a server certificate from a fresh TestPki (SAN 127.0.0.1);
  // pki() exposes the CA to verify it with (sslmode=verify-full
  // sslrootcert=pki()->ca_file) and an unrelated CA for "wrong CA" tests.
  // Plain TCP connections stay allowed.
  bool tls = false;
  // Non-empty: role "leasehold" has this password and must present it over
  // TCP (SCRAM-SHA-256). Empty: every TCP login is trusted. The superuser
  // "postgres" is trusted either way (TCP and the Unix socket).
  std::string password{};
  // Runs postgres under libfaketime with an offset file that SetClockOffset
  // rewrites while it runs: the server's wall clock (now(),
  // clock_timestamp(), log times) moves at once in every session; its
  // monotonic clock does not (FAKETIME_DONT_FAKE_MONOTONIC), as with an NTP
  // step. Server code that waits by the wall clock sees the step: a
  // pg_sleep() running when the clock goes back sleeps on, up to the
  // size of the step.
  bool faketime = false;
  // More server settings, each "name=value" (passed as -c name=value, after
  // the fixture's own, so they override them).
  std::vector<std::string> settings{};
};

// Runs `sql` (one or more statements) over a new connection made with
// `conninfo` and returns the rows of the last statement. Errors:
// kUnavailable when the connection fails (libpq's message), kInternal with
// the server's message and SQLSTATE when a statement fails,
// kDeadlineExceeded when connecting and running together take longer than
// `timeout` (a paused server). Sets application_name=pg_server_fixture
// unless `conninfo` says otherwise; `conninfo` may also be a URI.
Result<Rows> RunSql(const std::string& conninfo, const std::string& sql,
                    std::chrono::milliseconds timeout = std::chrono::seconds(10));

// One PostgreSQL 15 server. Created by Start; the destructor SIGKILLs every
// process of it still running and removes its directories.
class PgServer {
 public:
  // Initializes a data directory (a copy of a template made by initdb once
  // and kept for later test processes in
  // $TMPDIR/leasehold-pg15-template-<rev>-u<uid>, with role "leasehold"
  // owning database "leasehold"), starts the server and
  // waits until it accepts connections (up to 15 s). The error says why it
  // could not, with the end of the server's log. A start that lost the race
  // for its port is retried on another, up to five times.
  static Result<std::unique_ptr<PgServer>> Start(PgServerOptions options = {});
  ~PgServer();
  PgServer(const PgServer&) = delete;
  PgServer& operator=(const PgServer&) = delete;

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1"; }
  const PgServerOptions& options() const { return options_; }
  // The directory of the server's Unix socket (trust for every role).
  const std::string& socket_dir() const { return socket_dir_; }
  // True while the postmaster runs (paused or not).
  bool running() const { return pid_ > 0; }

  // "host=127.0.0.1 port=P dbname=postgres user=postgres": the superuser
  // over TCP, trusted (also on a TLS server, where sslmode decides).
  std::string superuser_conninfo() const;
  // "host=127.0.0.1 port=P dbname=leasehold user=leasehold". No password:
  // add " password=..." or set PGPASSWORD when options().password is set.
  std::string user_conninfo() const;
  // The throwaway PKI of a TLS server; nullptr unless options().tls.
  const testing::TestPki* pki() const { return pki_ ? &*pki_ : nullptr; }

  // Runs `sql` as the superuser in database `db` over the Unix socket (so
  // neither TLS nor passwords apply). Errors as RunSql's; a paused server
  // makes it fail with kDeadlineExceeded after `timeout`.
  Result<Rows> Query(const std::string& sql, const std::string& db = "leasehold",
                     std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;

  // Faults. Kill: SIGKILL the postmaster and all its children, reap, and wait
  // until they are gone (no-op when not running). Pause/Resume: SIGSTOP /
  // SIGCONT of the postmaster and all its children: open sessions stop
  // answering and new connections are never answered (no-op when not
  // running).
  void Kill();
  void Pause();
  void Resume();
  // Shuts the server down -- `immediate`: SIGQUIT (no checkpoint, crash
  // recovery on start), otherwise SIGINT (fast: sessions are ended, a
  // checkpoint is written) -- waits for it to exit, and starts it again on
  // the same port and data directory, waiting until it accepts connections.
  // Committed data survives both. A paused server is resumed first; a killed
  // one is just started. kUnavailable with the log's end when it does not
  // come back (e.g. someone else took the port meanwhile).
  Status Restart(bool immediate);
  // Starts a killed server again on the same port and data directory and
  // waits until it accepts connections (crash recovery). OK at once when it
  // runs. Errors as Restart's. (Not an overload of Start: a call Start()
  // would be ambiguous.)
  Status StartAgain();

  // pg_terminate_backend of every session whose application_name is
  // `application_name` (the fixture's own excepted), waiting up to 5 s for
  // each to exit.
  // Returns how many were terminated.
  Result<int> TerminateBackends(const std::string& application_name) const;

  // Moves the server's wall clock to real time + `spec`, effective at once in
  // every process of the server: libfaketime's offset syntax, e.g. "+1h",
  // "-90s", "+0" (the initial value). kFailedPrecondition unless
  // options().faketime; kInternal if the offset file cannot be written.
  Status SetClockOffset(const std::string& spec);

  // The last ~4 kB of the server's log (its stderr).
  std::string LogTail() const;

 private:
  PgServer();
  static Result<std::unique_ptr<PgServer>> StartOnce(const PgServerOptions& options);
  Status Spawn();
  Status WaitReady(std::chrono::milliseconds timeout);
  std::string SocketConninfo(const std::string& db) const;
  void RemoveStaleSharedMemory();

  PgServerOptions options_;
  detail::ServerUser user_;
  std::unique_ptr<testing::TempDir> dir_;
  std::optional<testing::TestPki> pki_;
  std::string data_dir_;
  std::string socket_dir_;
  std::string log_file_;
  std::string offset_file_;
  int port_ = 0;
  pid_t pid_ = -1;
  bool paused_ = false;
};

struct PgBouncerOptions {
  // session, transaction or statement.
  std::string pool_mode = "transaction";
  // More [pgbouncer] settings, each "name = value", after the fixture's own.
  std::vector<std::string> settings{};
};

// PgBouncer (Debian's /usr/sbin/pgbouncer, 1.18) in front of a PgServer,
// listening on 127.0.0.1 at a free port, in transaction pooling by default.
// Every database name maps to the same name on the server. Clients
// authenticate as they would to the server: trusted, or role "leasehold"
// with the server's password (SCRAM-SHA-256; PgBouncer holds the password in
// its auth_file and logs in to the server with it). It retries a failed
// server login after 1 s (server_login_retry; PgBouncer's default is 15 s).
// Clients speak plain TCP to it (no client TLS: sslmode=require fails; it
// speaks plain TCP to a TLS server too). Through it, role "postgres" can log
// in only when the server has no password. Runs as the server's user
// (PgBouncer refuses root), is stopped by PID, and must not outlive the
// thread that started it (as PgServer).
class PgBouncer {
 public:
  // Starts PgBouncer and waits (up to 15 s) until a query through it
  // succeeds. The error says why not, with the end of its log. A start that
  // lost the race for its port is retried on another, up to five times.
  // REQUIRES: `server` runs. The bouncer keeps `server`'s port and password,
  // not a reference to it.
  static Result<std::unique_ptr<PgBouncer>> Start(const PgServer& server,
                                                  PgBouncerOptions options = {});
  // SIGKILLs PgBouncer if it still runs and removes its directory.
  ~PgBouncer();
  PgBouncer(const PgBouncer&) = delete;
  PgBouncer& operator=(const PgBouncer&) = delete;

  int port() const { return port_; }
  // Role leasehold, database leasehold, through the bouncer (no password).
  std::string user_conninfo() const;
  // PgBouncer's admin console (database "pgbouncer", role leasehold is an
  // admin user): SHOW POOLS, SHOW CONFIG, RECONNECT, ...
  std::string admin_conninfo() const;
  // Faults: SIGKILL (reaped) / SIGSTOP / SIGCONT of the PgBouncer process.
  void Kill();
  void Pause();
  void Resume();
  // The last ~4 kB of PgBouncer's log.
  std::string LogTail() const;

 private:
  PgBouncer();
  static Result<std::unique_ptr<PgBouncer>> StartOnce(const PgServer& server,
                                                      const PgBouncerOptions& options);

  detail::ServerUser user_;
  std::unique_ptr<testing::TempDir> dir_;
  std::string log_file_;
  std::string password_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace leasehold::pg_test

#endif  // LEASEHOLD_SRC_BACKENDS_POSTGRESQL_TESTING_PG_SERVER_H_
