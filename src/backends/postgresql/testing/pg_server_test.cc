// Tests of the PostgreSQL fixtures themselves, against real servers: each
// option does what it says, and each fault has the effect the backend's
// tests rely on.
#include "pg_server.h"

#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <poll.h>

#include <chrono>
#include <memory>
#include <string>

namespace leasehold::pg_test {
namespace {

using namespace std::chrono_literals;

using ConnPtr = std::unique_ptr<PGconn, decltype(&PQfinish)>;

std::unique_ptr<PgServer> StartServer(PgServerOptions options = {}) {
  auto server = PgServer::Start(std::move(options));
  EXPECT_TRUE(server.ok()) << server.status().ToString();
  return server.ok() ? std::move(server).value() : nullptr;
}

// A session kept open across a fault.
ConnPtr Connect(const std::string& conninfo) {
  ConnPtr conn(PQconnectdb(conninfo.c_str()), &PQfinish);
  EXPECT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
  return conn;
}

// The single value `sql` returns on `conn`, or "ERROR: ..." if it fails.
std::string Scalar(PGconn* conn, const std::string& sql) {
  PGresult* res = PQexec(conn, sql.c_str());
  std::string out = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1
                        ? PQgetvalue(res, 0, 0)
                        : "ERROR: " + std::string(PQerrorMessage(conn));
  PQclear(res);
  return out;
}

std::string Scalar(const Result<Rows>& rows) {
  if (!rows.ok()) return "ERROR: " + rows.status().ToString();
  if (rows->size() != 1 || (*rows)[0].size() != 1) return "ERROR: not one value";
  return (*rows)[0][0];
}

// Whether an answer arrives on `conn`'s socket within `timeout`.
bool Readable(PGconn* conn, std::chrono::milliseconds timeout) {
  pollfd p{PQsocket(conn), POLLIN, 0};
  return poll(&p, 1, static_cast<int>(timeout.count())) == 1;
}

TEST(PgServerTest, StartedServerAnswersTheSuperuserAndRoleLeasehold) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  EXPECT_GT(server->port(), 0);
  EXPECT_TRUE(server->running());
  EXPECT_EQ(server->pki(), nullptr);
  EXPECT_EQ(Scalar(server->Query("SELECT 1 + 1")), "2");
  EXPECT_EQ(Scalar(server->Query("SELECT current_database()")), "leasehold");
  EXPECT_EQ(Scalar(RunSql(server->superuser_conninfo(), "SELECT current_user")), "postgres");
  EXPECT_EQ(
      Scalar(RunSql(server->user_conninfo(), "SELECT current_user || '@' || current_database()")),
      "leasehold@leasehold");
  // Role leasehold owns its database: it can create tables there.
  auto created = RunSql(server->user_conninfo(),
                        "CREATE TABLE t (k text PRIMARY KEY); INSERT INTO t VALUES ('a') "
                        "RETURNING k");
  EXPECT_EQ(Scalar(created), "a");
  // Rows and NULLs; errors carry the server's words and SQLSTATE.
  auto rows = server->Query("SELECT 'x', NULL::text UNION ALL SELECT 'y', 'z' ORDER BY 1");
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  EXPECT_EQ(*rows, (Rows{{"x", ""}, {"y", "z"}}));
  auto bad = server->Query("SELECT * FROM no_such_table");
  EXPECT_EQ(bad.status().code(), StatusCode::kInternal);
  EXPECT_NE(bad.status().message().find("42P01"), std::string::npos) << bad.status().message();
  EXPECT_EQ(server->SetClockOffset("+1h").code(), StatusCode::kFailedPrecondition);
}

TEST(PgServerTest, StartFailsWithTheServersReason) {
  auto server = PgServer::Start({.settings = {"no_such_setting=1"}});
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(server.status().message().find("no_such_setting"), std::string::npos)
      << server.status().message();
}

TEST(PgServerTest, TlsServerIsVerifiedWithItsCaAndNotWithAnother) {
  auto server = StartServer({.tls = true});
  ASSERT_NE(server, nullptr);
  ASSERT_NE(server->pki(), nullptr);
  const std::string verify = " sslmode=verify-full sslrootcert=";
  EXPECT_EQ(Scalar(RunSql(server->user_conninfo() + verify + server->pki()->ca_file,
                          "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")),
            "t");
  EXPECT_EQ(Scalar(RunSql(server->superuser_conninfo() + verify + server->pki()->ca_file,
                          "SELECT current_user")),
            "postgres");
  auto wrong_ca =
      RunSql(server->user_conninfo() + verify + server->pki()->other_ca_file, "SELECT 1");
  EXPECT_EQ(wrong_ca.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(wrong_ca.status().message().find("certificate verify failed"), std::string::npos)
      << wrong_ca.status().message();
}

TEST(PgServerTest, RoleLeaseholdNeedsItsPasswordOverTcp) {
  const std::string password = "s3cret 'quoted'";
  auto server = StartServer({.password = password});
  ASSERT_NE(server, nullptr);
  const std::string quoted = " password='s3cret \\'quoted\\''";
  EXPECT_EQ(Scalar(RunSql(server->user_conninfo() + quoted, "SELECT current_user")), "leasehold");
  auto wrong = RunSql(server->user_conninfo() + " password=wrong", "SELECT 1");
  EXPECT_EQ(wrong.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(wrong.status().message().find("password authentication failed"), std::string::npos)
      << wrong.status().message();
  EXPECT_FALSE(RunSql(server->user_conninfo(), "SELECT 1").ok());
  // The stored secret is SCRAM; the superuser stays trusted.
  EXPECT_EQ(Scalar(server->Query(
                "SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'leasehold'")),
            "SCRAM-SHA-256$");
  EXPECT_EQ(Scalar(RunSql(server->superuser_conninfo(), "SELECT current_user")), "postgres");
}

TEST(PgServerTest, ClockOffsetChangesWhileTheServerRuns) {
  auto server = StartServer({.faketime = true});
  ASSERT_NE(server, nullptr);
  // One session open throughout: its backend sees every change at once.
  ConnPtr conn = Connect(server->superuser_conninfo());
  const std::string now = "SELECT extract(epoch FROM clock_timestamp())::float8";
  auto server_time = [&] { return std::stod(Scalar(conn.get(), now)); };
  const double start = server_time();

  ASSERT_TRUE(server->SetClockOffset("+1h").ok());
  EXPECT_NEAR(server_time() - start, 3600, 30);
  // A new session too, and now() of a new transaction.
  EXPECT_NEAR(std::stod(Scalar(
                  RunSql(server->user_conninfo(), "SELECT extract(epoch FROM now())::float8"))) -
                  start,
              3600, 30);

  ASSERT_TRUE(server->SetClockOffset("-1h").ok());
  EXPECT_NEAR(server_time() - start, -3600, 30);

  ASSERT_TRUE(server->SetClockOffset("+0").ok());
  EXPECT_NEAR(server_time() - start, 0, 30);
  EXPECT_EQ(Scalar(conn.get(), "SELECT 1"), "1");
}

TEST(PgServerTest, PausedServerAnswersNothingUntilResumed) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  ConnPtr conn = Connect(server->user_conninfo());
  server->Pause();
  // Neither an open session nor a new connection gets an answer.
  ASSERT_EQ(PQsendQuery(conn.get(), "SELECT 42"), 1);
  EXPECT_FALSE(Readable(conn.get(), 300ms));
  auto fresh = RunSql(server->user_conninfo(), "SELECT 1", 300ms);
  EXPECT_EQ(fresh.status().code(), StatusCode::kDeadlineExceeded) << fresh.status().ToString();

  server->Resume();
  ASSERT_TRUE(Readable(conn.get(), 5s));
  PGresult* res = PQgetResult(conn.get());
  ASSERT_EQ(PQresultStatus(res), PGRES_TUPLES_OK) << PQerrorMessage(conn.get());
  EXPECT_STREQ(PQgetvalue(res, 0, 0), "42");
  PQclear(res);
  while ((res = PQgetResult(conn.get())) != nullptr) PQclear(res);
  EXPECT_EQ(Scalar(RunSql(server->user_conninfo(), "SELECT 1")), "1");
}

TEST(PgServerTest, FastAndImmediateRestartsKeepCommittedDataAndThePort) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  const int port = server->port();
  ASSERT_TRUE(server->Query("CREATE TABLE t (v int); INSERT INTO t VALUES (1)").ok());
  ConnPtr conn = Connect(server->user_conninfo());

  ASSERT_TRUE(server->Restart(/*immediate=*/false).ok()) << server->LogTail();
  EXPECT_EQ(server->port(), port);
  EXPECT_EQ(Scalar(server->Query("SELECT sum(v) FROM t")), "1");
  // The session open across the restart was ended.
  EXPECT_EQ(Scalar(conn.get(), "SELECT 1").rfind("ERROR", 0), 0u);

  ASSERT_TRUE(server->Query("INSERT INTO t VALUES (2)").ok());
  ASSERT_TRUE(server->Restart(/*immediate=*/true).ok()) << server->LogTail();
  EXPECT_EQ(server->port(), port);
  EXPECT_EQ(Scalar(server->Query("SELECT sum(v) FROM t")), "3");
  EXPECT_NE(server->LogTail().find("not properly shut down"), std::string::npos);
}

TEST(PgServerTest, KilledServerIsGoneUntilStartedAgain) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  ASSERT_TRUE(server->Query("CREATE TABLE t (v int); INSERT INTO t VALUES (7)").ok());
  ConnPtr conn = Connect(server->user_conninfo());
  server->Kill();
  EXPECT_FALSE(server->running());
  EXPECT_EQ(RunSql(server->user_conninfo(), "SELECT 1").status().code(), StatusCode::kUnavailable);
  // Its backends died with it.
  EXPECT_EQ(Scalar(conn.get(), "SELECT 1").rfind("ERROR", 0), 0u);

  ASSERT_TRUE(server->StartAgain().ok()) << server->LogTail();
  EXPECT_TRUE(server->running());
  EXPECT_EQ(Scalar(server->Query("SELECT v FROM t")), "7");
}

TEST(PgServerTest, TerminateBackendsEndsTheSessionsOfThatApplicationOnly) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  ConnPtr victim = Connect(server->user_conninfo() + " application_name=victim");
  ConnPtr bystander = Connect(server->user_conninfo() + " application_name=bystander");
  auto count = server->TerminateBackends("victim");
  ASSERT_TRUE(count.ok()) << count.status().ToString();
  EXPECT_EQ(*count, 1);
  EXPECT_EQ(Scalar(victim.get(), "SELECT 1").rfind("ERROR", 0), 0u);
  EXPECT_EQ(Scalar(bystander.get(), "SELECT 1"), "1");
  auto none = server->TerminateBackends("victim");
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_EQ(*none, 0);
}

TEST(PgBouncerTest, TransactionsGoThroughInTransactionPooling) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  auto bouncer = PgBouncer::Start(*server);
  ASSERT_TRUE(bouncer.ok()) << bouncer.status().ToString();
  EXPECT_NE((*bouncer)->port(), server->port());
  const std::string conninfo = (*bouncer)->user_conninfo() + " sslmode=disable";
  EXPECT_EQ(Scalar(RunSql(conninfo, "SELECT current_user || '@' || current_database()")),
            "leasehold@leasehold");

  auto config = RunSql((*bouncer)->admin_conninfo() + " sslmode=disable", "SHOW CONFIG");
  ASSERT_TRUE(config.ok()) << config.status().ToString();
  std::string pool_mode;
  for (const auto& row : *config) {
    if (row.size() >= 2 && row[0] == "pool_mode") pool_mode = row[1];
  }
  EXPECT_EQ(pool_mode, "transaction");

  // Sequential transactions on one client connection, each on whichever
  // server connection the pool gives it.
  ConnPtr conn = Connect(conninfo);
  EXPECT_EQ(Scalar(conn.get(), "CREATE TABLE t (v int); SELECT 0"), "0");
  for (int i = 1; i <= 2; ++i) {
    EXPECT_EQ(Scalar(conn.get(), "BEGIN; INSERT INTO t VALUES (" + std::to_string(i) +
                                     "); COMMIT; SELECT count(*) FROM t"),
              std::to_string(i));
  }
  EXPECT_EQ(Scalar(server->Query("SELECT sum(v) FROM t")), "3");
}

TEST(PgBouncerTest, PasswordServerNeedsThePasswordThroughTheBouncer) {
  auto server = StartServer({.password = "bouncer-secret"});
  ASSERT_NE(server, nullptr);
  auto bouncer = PgBouncer::Start(*server);
  ASSERT_TRUE(bouncer.ok()) << bouncer.status().ToString();
  const std::string conninfo = (*bouncer)->user_conninfo() + " sslmode=disable";
  EXPECT_EQ(Scalar(RunSql(conninfo + " password=bouncer-secret", "SELECT current_user")),
            "leasehold");
  auto wrong = RunSql(conninfo + " password=wrong", "SELECT 1");
  EXPECT_EQ(wrong.status().code(), StatusCode::kUnavailable) << wrong.status().ToString();
}

}  // namespace
}  // namespace leasehold::pg_test
