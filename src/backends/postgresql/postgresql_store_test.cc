// PostgreSQL-specific behaviour against a real server: options and
// connection errors (passwords never shown), TLS and SCRAM, the schema
// (created, refused, versioned), sequences that never restart, tokens of two
// databases, fenced writes, hostile rows, and waking waiters by NOTIFY.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>
#include <cstdlib>
#include <future>
#include <thread>

#include "leasehold/backends/postgresql.h"
#include "leasehold/backends/postgresql_fence.h"
#include "leasehold/lease.h"
#include "postgresql_test_util.h"
#include "testing/store_calls.h"

namespace leasehold {
namespace {

using namespace std::chrono_literals;
using pg_test::Lit;
using pg_test::PgServer;
using pg_test::SharedServer;
using ::testing::HasSubstr;
using ::testing::Not;

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NE(server_, nullptr); }

  PostgresOptions Options() const {
    return {.conninfo = server_->user_conninfo(), .table = table_, .connect_timeout = 2s};
  }
  std::shared_ptr<PostgresStore> Open(PostgresOptions options) {
    auto store = PostgresStore::Open(options, rt_);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? *store : nullptr;
  }
  std::shared_ptr<PostgresStore> Open() { return Open(Options()); }
  std::unique_ptr<Lease> Make(const std::shared_ptr<Store>& store, const std::string& owner,
                              Duration ttl = 3s, const std::string& name = "job") {
    auto lease = Lease::Create(store, {.name = name, .owner = owner, .ttl = ttl});
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    return lease.ok() ? std::move(*lease) : nullptr;
  }
  std::optional<FencingToken> Token(Lease& lease) {
    auto token = lease.AcquireWithToken();
    EXPECT_TRUE(token.ok()) << token.status().ToString();
    return token.ok() ? *token : std::nullopt;
  }
  std::string Sql1(const std::string& sql) {
    auto rows = server_->Query(sql);
    EXPECT_TRUE(rows.ok()) << rows.status().ToString();
    return rows.ok() && !rows->empty() && !rows->front().empty() ? rows->front().front() : "";
  }

  PgServer* const server_ = SharedServer();
  const std::string table_ = pg_test::FreshTable();
  std::shared_ptr<Runtime> rt_ = Runtime::Create();
};

TEST_F(PostgresStoreTest, BadOptionsAreRefusedNamingWhatIsWrong) {
  auto code = [&](PostgresOptions o) { return PostgresStore::Open(o, rt_).status(); };
  PostgresOptions o = Options();
  o.conninfo = "";
  EXPECT_EQ(code(o).code(), StatusCode::kInvalidArgument);
  o = Options();
  o.table = "Leases; DROP TABLE x";
  EXPECT_THAT(code(o).message(), HasSubstr("identifiers"));
  o = Options();
  o.schema = std::string(41, 'a');
  EXPECT_EQ(code(o).code(), StatusCode::kInvalidArgument);
  o = Options();
  o.poll_interval = 0s;
  EXPECT_EQ(code(o).code(), StatusCode::kInvalidArgument);
  o = Options();
  o.max_observe_factor = 0.5;
  EXPECT_THAT(code(o).message(), HasSubstr("max_observe_factor"));
  // A string libpq cannot parse: its reason, without the password.
  o = Options();
  o.conninfo = "host=127.0.0.1 password=hunter2secret bogus";
  Status s = code(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), Not(HasSubstr("hunter2secret")));
  o.conninfo = "postgresql://u:hunter2secret@127.0.0.1/db?nosuchoption=1";
  s = code(o);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_THAT(s.message(), Not(HasSubstr("hunter2secret")));
}

TEST_F(PostgresStoreTest, NoServerIsUnavailableWithinTheConnectTimeout) {
  PostgresOptions o = Options();
  o.conninfo = "host=127.0.0.1 port=1 dbname=x user=u password=hunter2secret";
  o.connect_timeout = 1s;
  const auto start = std::chrono::steady_clock::now();
  Status s = PostgresStore::Open(o, rt_).status();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("postgresql://u@127.0.0.1:1/x"));
  EXPECT_THAT(s.message(), Not(HasSubstr("hunter2secret")));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_F(PostgresStoreTest, ScramPasswordsAreCheckedAndNeverShown) {
  auto server = PgServer::Start({.password = "right-horse-battery"});
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  PostgresOptions o = Options();
  o.conninfo = (*server)->user_conninfo() + " password=wrong-staple-guess";
  Status s = PostgresStore::Open(o, rt_).status();
  EXPECT_EQ(s.code(), StatusCode::kUnauthenticated) << s.ToString();
  EXPECT_THAT(s.message(), Not(HasSubstr("wrong-staple-guess")));
  EXPECT_THAT(s.message(), HasSubstr("password authentication failed"));

  o.conninfo = (*server)->user_conninfo() + " password=right-horse-battery";
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  auto lease = Make(store, "a");
  auto token = Token(*lease);
  ASSERT_TRUE(token && token->sequence > 0);
  EXPECT_THAT(store->Describe(), Not(HasSubstr("right-horse-battery")));
  EXPECT_TRUE(lease->Release().ok());

  // From the environment, as libpq takes it (or from ~/.pgpass).
  ::setenv("PGPASSWORD", "right-horse-battery", 1);
  o.conninfo = (*server)->user_conninfo();
  auto from_env = PostgresStore::Open(o, rt_);
  ::unsetenv("PGPASSWORD");
  EXPECT_TRUE(from_env.ok()) << from_env.status().ToString();
}

// Several hosts: libpq tries them in order (target_session_attrs=read-write
// skips standbys); the store reconnects the same way after a failure.
TEST_F(PostgresStoreTest, SeveralHostsAreTriedInOrder) {
  PostgresOptions o = Options();
  o.conninfo = "host=127.0.0.1,127.0.0.1 port=1," + std::to_string(server_->port()) +
               " dbname=leasehold user=leasehold target_session_attrs=read-write";
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  EXPECT_THAT(store->Describe(), HasSubstr("127.0.0.1,127.0.0.1"));
  auto lease = Make(store, "a");
  EXPECT_TRUE(Token(*lease).has_value());
  EXPECT_TRUE(lease->Release().ok());
}

TEST_F(PostgresStoreTest, TlsIsVerifiedAgainstTheGivenCaAndAWrongOneFailsClosed) {
  auto server = PgServer::Start({.tls = true});
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const auto* pki = (*server)->pki();
  ASSERT_NE(pki, nullptr);
  PostgresOptions o = Options();
  o.conninfo = (*server)->user_conninfo() + " sslmode=verify-full sslrootcert=" + pki->ca_file;
  auto store = Open(o);
  ASSERT_NE(store, nullptr);
  auto lease = Make(store, "a");
  EXPECT_TRUE(Token(*lease).has_value());
  EXPECT_TRUE(lease->Release().ok());

  o.conninfo =
      (*server)->user_conninfo() + " sslmode=verify-full sslrootcert=" + pki->other_ca_file;
  Status s = PostgresStore::Open(o, rt_).status();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("certificate verify failed"));
}

TEST_F(PostgresStoreTest, TheSchemaIsCreatedOnFirstUseOrRefusedWhenCreationIsOff) {
  PostgresOptions o = Options();
  o.create_schema = false;
  Status s = PostgresStore::Open(o, rt_).status();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("leasehold init"));

  auto version = PostgresStore::InitSchema(o);
  ASSERT_TRUE(version.ok()) << version.status().ToString();
  EXPECT_EQ(*version, PostgresStore::kSchemaVersion);
  EXPECT_NE(Open(o), nullptr);
  // Idempotent.
  EXPECT_TRUE(PostgresStore::InitSchema(o).ok());
}

TEST_F(PostgresStoreTest, ANewerSchemaOrSomeoneElsesTableIsRefused) {
  ASSERT_NE(Open(), nullptr);
  Sql1("UPDATE " + table_ + "_meta SET value = '99' WHERE key = 'schema_version'");
  Status s = PostgresStore::Open(Options(), rt_).status();
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("schema version 99 is newer"));

  const std::string other = pg_test::FreshTable();
  Sql1("CREATE TABLE " + other + " (name text PRIMARY KEY, owner text)");
  PostgresOptions o = Options();
  o.table = other;
  s = PostgresStore::Open(o, rt_).status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("not leasehold's"));
}

TEST_F(PostgresStoreTest, SequencesNeverRestartThroughReleaseBreakOrADeletedRow) {
  auto store = Open();
  auto a = Make(store, "a");
  auto b = Make(Open(), "b");
  auto first = Token(*a);
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(a->Release().ok());
  auto second = Token(*b);
  ASSERT_TRUE(second.has_value());
  EXPECT_GT(second->sequence, first->sequence);
  // An operator's break keeps the sequence; so does a row deleted by hand.
  Sql1("UPDATE " + table_ + " SET holder = NULL, version = version + 1");
  Sql1("DELETE FROM " + table_);
  auto third = Token(*a);
  ASSERT_TRUE(third.has_value());
  EXPECT_GT(third->sequence, second->sequence);
  // Tokens carry the schema's id: another table (another "database") never
  // issues an equal token, even at the same sequence.
  EXPECT_THAT(third->value,
              HasSubstr(Sql1("SELECT value FROM " + table_ + "_meta WHERE key = 'id'")));
  PostgresOptions o = Options();
  o.table = pg_test::FreshTable();
  auto elsewhere = Make(Open(o), "c");
  auto other = Token(*elsewhere);
  ASSERT_TRUE(other.has_value());
  EXPECT_NE(other->value, first->value);
  EXPECT_EQ(other->sequence, first->sequence);
}

TEST_F(PostgresStoreTest, BreakFreesTheLeaseAtOnceAndTheHolderLosesIt) {
  auto store = Open();
  auto a = Make(store, "a", 2s);
  auto first = Token(*a);
  ASSERT_TRUE(first.has_value());
  std::promise<Status> broke;
  store->Break("job", rt_->clock().Now() + 5s, [&](Status s) { broke.set_value(s); });
  ASSERT_TRUE(broke.get_future().get().ok());
  auto b = Make(Open(), "b");
  auto second = Token(*b);
  ASSERT_TRUE(second.has_value());
  EXPECT_GT(second->sequence, first->sequence);
  for (int i = 0; i < 100 && a->CheckAlive(); ++i) std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(a->CheckAlive());
}

// A connection of the user's own, as an application would have.
struct UserConnection {
  explicit UserConnection(const std::string& conninfo) : conn(PQconnectdb(conninfo.c_str())) {}
  ~UserConnection() { PQfinish(conn); }
  PGconn* conn;
};

Status Exec(pg_conn* conn, const std::string& sql) {
  PGresult* r = PQexec(conn, sql.c_str());
  const ExecStatusType st = PQresultStatus(r);
  Status out = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK
                   ? Status::Ok()
                   : InternalError(PQresultErrorMessage(r));
  PQclear(r);
  return out;
}

TEST_F(PostgresStoreTest, FencedWritesCommitOnlyForTheCurrentTenure) {
  Sql1("CREATE TABLE " + table_ + "_ledger (id serial, by text)");
  Sql1("GRANT ALL ON " + table_ + "_ledger, " + table_ + "_ledger_id_seq TO leasehold");
  auto a = Make(Open(), "a");
  auto b = Make(Open(), "b");
  auto first = Token(*a);
  ASSERT_TRUE(first.has_value());
  UserConnection user(server_->user_conninfo());
  ASSERT_EQ(PQstatus(user.conn), CONNECTION_OK);
  const FenceLocation where{.table = table_};
  auto write = [&](const std::string& by) {
    return [&, by](pg_conn* c) {
      return Exec(c, "INSERT INTO " + table_ + "_ledger (by) VALUES (" + Lit(by) + ")");
    };
  };
  Status fenced = RunFenced(user.conn, "job", *first, write("a-1"), where);
  ASSERT_TRUE(fenced.ok()) << fenced.ToString();

  ASSERT_TRUE(a->Release().ok());
  auto second = Token(*b);
  ASSERT_TRUE(second.has_value());
  Status stale = RunFenced(user.conn, "job", *first, write("a-2"), where);
  EXPECT_EQ(stale.code(), StatusCode::kFailedPrecondition) << stale.ToString();
  EXPECT_THAT(stale.message(), HasSubstr("no longer held"));
  EXPECT_EQ(PQtransactionStatus(user.conn), PQTRANS_IDLE);
  ASSERT_TRUE(RunFenced(user.conn, "job", *second, write("b-1"), where).ok());
  // A token of another lease name, or a made-up one, is refused up front.
  EXPECT_EQ(RunFenced(user.conn, "other", *second, write("x"), where).code(),
            StatusCode::kInvalidArgument);
  FencingToken forged = *second;
  forged.value = "postgresql/0000/" + std::to_string(forged.sequence) + "/job";
  EXPECT_EQ(RunFenced(user.conn, "job", forged, write("x"), where).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(Sql1("SELECT string_agg(by, ',' ORDER BY id) FROM " + table_ + "_ledger"), "a-1,b-1");

  // The same check written by hand, as documented.
  auto statement = MakeFenceStatement("job", *second, where);
  ASSERT_TRUE(statement.ok()) << statement.status().ToString();
  std::string sql = statement->sql;
  for (int i = static_cast<int>(statement->params.size()); i >= 1; --i) {
    const std::string key = "$" + std::to_string(i);
    sql.replace(sql.find(key), key.size(), Lit(statement->params[i - 1]));
  }
  EXPECT_TRUE(Exec(user.conn, "BEGIN; " + sql + "; COMMIT").ok()) << sql;
  ASSERT_TRUE(b->Release().ok());
  Status after = Exec(user.conn, sql);
  EXPECT_THAT(after.message(), HasSubstr("no longer held"));
}

TEST_F(PostgresStoreTest, HostileRowsNeverFreeALeaseEarlyNorCrashTheStore) {
  auto store = Open();
  auto a = Make(store, "a", 1s);
  auto first = Token(*a);
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(a->Release().ok());
  // Someone claims it with an absurd TTL, an empty holder and a negative
  // sequence: contenders wait at most the cap (2 x their TTL), then take
  // over with a sequence above every earlier one.
  Sql1("UPDATE " + table_ +
       " SET holder = '', ttl_ms = 9000000000000000, sequence = -7, version = version + 1");
  auto b = Make(Open(), "b", 1s);
  const auto start = std::chrono::steady_clock::now();
  auto r = b->AcquireWithToken({.wait = true, .timeout = 10s});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->has_value());
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_GE(waited, 1900ms);
  EXPECT_LT(waited, 5s);
  EXPECT_GT((*r)->sequence, first->sequence);
  ASSERT_TRUE(b->Release().ok());

  // A sequence at the top of the range cannot go higher: a clear error, no
  // wrap-around.
  Sql1("UPDATE " + table_ + " SET sequence = 9223372036854775807, holder = NULL");
  Sql1("UPDATE " + table_ + "_fences SET last = 9223372036854775807");
  auto c = Make(Open(), "c", 1s);
  auto top = c->AcquireWithToken();
  EXPECT_FALSE(top.ok());
  EXPECT_EQ(top.status().code(), StatusCode::kDataLoss) << top.status().ToString();

  // A column someone retyped: reads fail with a message naming the lease.
  Sql1("UPDATE " + table_ + "_fences SET last = 5");
  Sql1("ALTER TABLE " + table_ + " ALTER COLUMN version TYPE text");
  Sql1("UPDATE " + table_ + " SET version = 'banana', holder = 'x', sequence = 3");
  auto d = Make(Open(), "d", 1s);
  auto bad = d->AcquireWithToken();
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("lease \"job\""));
}

// Listing takes the prefix literally (starts_with, not LIKE: % and _ are
// characters), and a row that cannot be read fails it, naming the lease.
TEST_F(PostgresStoreTest, ListingTakesThePrefixLiterallyAndFailsOnAHostileRow) {
  auto store = Open();
  std::vector<std::unique_ptr<Lease>> held;
  for (const std::string name : {"a%", "a_b", "ab", "b"}) {
    held.push_back(Make(store, "a", 10s, name));
    ASSERT_TRUE(Token(*held.back()).has_value()) << name;
  }
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"a%", {"a%"}}, {"a_", {"a_b"}}, {"a", {"a%", "a_b", "ab"}}, {"", {"a%", "a_b", "ab", "b"}}};
  for (const auto& [prefix, names] : cases) {
    auto listed = testing::ListRecords(*store, prefix, 5s);
    ASSERT_TRUE(listed.ok()) << prefix << ": " << listed.status().ToString();
    EXPECT_EQ(testing::Names(*listed), names) << "prefix " << prefix;
  }
  held.clear();
  Sql1("ALTER TABLE " + table_ + " ALTER COLUMN version TYPE text");
  Sql1("UPDATE " + table_ + " SET version = 'banana' WHERE name = 'ab'");
  auto broken = testing::ListRecords(*store, "", 5s);
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().code(), StatusCode::kDataLoss) << broken.status().ToString();
  EXPECT_THAT(broken.status().message(), HasSubstr("lease \"ab\""));
}

// Renewals go as one statement with arrays of names: names with quotes,
// backslashes, commas and braces renew as any other.
TEST_F(PostgresStoreTest, NamesThatNeedQuotingInArraysRenew) {
  auto store = Open();
  std::vector<std::unique_ptr<Lease>> leases;
  for (const std::string name : {"we\"ird", "back\\slash", "a,b", "{brace}", "sp ace", "NULL"}) {
    leases.push_back(Make(store, "a", 600ms, name));
    ASSERT_TRUE(Token(*leases.back()).has_value()) << name;
  }
  std::this_thread::sleep_for(1500ms);  // several renewals
  for (auto& l : leases) EXPECT_TRUE(l->CheckAlive()) << l->name();
  EXPECT_EQ(Sql1("SELECT count(*) FROM " + table_ + " WHERE version >= 3"), "6");
}

// A waiter blocked in Acquire is woken by the release's NOTIFY: well within
// one poll interval (set far apart here) and the TTL.
TEST_F(PostgresStoreTest, AReleaseWakesAWaiterByNotify) {
  PostgresOptions o = Options();
  o.poll_interval = 30s;
  auto a = Make(Open(o), "a", 30s);
  auto b = Make(Open(o), "b", 30s);
  ASSERT_TRUE(Token(*a).has_value());
  std::atomic<bool> held{false};
  std::chrono::steady_clock::time_point woke;
  std::thread waiter([&] {
    auto r = b->AcquireWithToken({.wait = true, .timeout = 20s});
    woke = std::chrono::steady_clock::now();
    held = r.ok() && r->has_value();
  });
  std::this_thread::sleep_for(500ms);  // the waiter listens by now
  const auto released = std::chrono::steady_clock::now();
  ASSERT_TRUE(a->Release().ok());
  waiter.join();
  EXPECT_TRUE(held);
  EXPECT_LT(woke - released, 1s);
  EXPECT_TRUE(b->Release().ok());
}

// Without LISTEN (e.g. behind a transaction pooler and no direct
// connection), waiters poll the row every poll_interval.
TEST_F(PostgresStoreTest, WithoutListenWaitersPollTheRow) {
  PostgresOptions o = Options();
  o.listen = false;
  o.poll_interval = 50ms;
  auto a = Make(Open(o), "a", 30s);
  auto b = Make(Open(o), "b", 30s);
  ASSERT_TRUE(Token(*a).has_value());
  std::atomic<bool> held{false};
  std::thread waiter([&] {
    auto r = b->AcquireWithToken({.wait = true, .timeout = 20s});
    held = r.ok() && r->has_value();
  });
  std::this_thread::sleep_for(300ms);
  const auto released = std::chrono::steady_clock::now();
  ASSERT_TRUE(a->Release().ok());
  waiter.join();
  EXPECT_TRUE(held);
  EXPECT_LT(std::chrono::steady_clock::now() - released, 2s);
}

}  // namespace
}  // namespace leasehold
