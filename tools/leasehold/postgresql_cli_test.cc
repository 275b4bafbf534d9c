// The CLI's postgresql:// stores: URL parsing (leasehold's own parameters
// taken out, passwords never shown) and, against a real PostgreSQL started
// by the fixture, init, run (the binary), status, watch, break and bench.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include "binary_test_util.h"
#include "cli.h"
#include "leasehold/lease.h"
#include "pg_server.h"

namespace leasehold::cli {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(PostgresStoreUrlTest, LeaseholdsParametersAreTakenOutAndTheRestGoesToLibpq) {
  auto spec = ParseStoreUrl(
      "postgresql://app:s3cret-pw@db1:5433,db2/orders?sslmode=verify-full"
      "&leasehold-table=locks&target_session_attrs=read-write&leasehold-schema=ops"
      "&leasehold-listen=0");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->kind, StoreSpec::Kind::kPostgres);
  EXPECT_EQ(spec->conninfo,
            "postgresql://app:s3cret-pw@db1:5433,db2/orders?sslmode=verify-full"
            "&target_session_attrs=read-write");
  EXPECT_EQ(spec->schema, "ops");
  EXPECT_EQ(spec->table, "locks");
  EXPECT_FALSE(spec->listen);
  EXPECT_THAT(spec->url, Not(HasSubstr("s3cret-pw")));
  EXPECT_THAT(spec->url, HasSubstr("app:***@db1"));
  EXPECT_EQ(ParseStoreUrl("postgres://h/d").value().kind, StoreSpec::Kind::kPostgres);
  EXPECT_TRUE(ParseStoreUrl("postgres://h/d").value().listen);
  auto with_param = ParseStoreUrl("postgresql://h/d?password=hunter2&leasehold-table=t");
  ASSERT_TRUE(with_param.ok());
  EXPECT_THAT(with_param->url, Not(HasSubstr("hunter2")));
  for (const std::string bad :
       {"postgresql://h/d?leasehold-listen=maybe", "postgresql://h/d?leasehold-tablee=x",
        "postgresql://h/d?leasehold-table", "postgresql://h/d?leasehold-table=%zz"}) {
    auto r = ParseStoreUrl(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  // Errors from the store (here: the table name) never show the password.
  auto bad_table = OpenStore(
      ParseStoreUrl("postgresql://u:s3cret-pw@127.0.0.1:1/d?leasehold-table=Bad-Name").value(),
      Runtime::Create());
  ASSERT_FALSE(bad_table.ok());
  EXPECT_EQ(bad_table.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_table.status().message(), Not(HasSubstr("s3cret-pw")));
}

class PostgresCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = pg_test::PgServer::Start();
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    url_ = "postgresql://leasehold@127.0.0.1:" + std::to_string(server_->port()) +
           "/leasehold?leasehold-table=cli_leases";
  }

  std::string Binary(const std::string& args, int* exit_code) {
    return RunBinary(url_, args, exit_code);
  }

  std::unique_ptr<pg_test::PgServer> server_;
  std::string url_;
};

TEST_F(PostgresCliTest, InitRunStatusWatchAndBreakWorkOnTheStore) {
  int code = -1;
  std::string out = Binary("init", &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("public.cli_leases is at version 1"));
  out = Binary("run --ttl 5s job -- sh -c 'echo seq=$LEASEHOLD_SEQUENCE'", &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("seq=1"));
  auto rows = server_->Query("SELECT holder IS NULL, sequence FROM cli_leases WHERE name = 'job'");
  ASSERT_TRUE(rows.ok()) << rows.status().ToString();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0][0], "t") << "released on exit";
  EXPECT_EQ((*rows)[0][1], "1");

  // A holder in this process; status and watch see it, break frees it.
  std::string status;
  ExpectStatusWatchBreakAndBenchOnTheStore(url_, &status);
  EXPECT_THAT(status, HasSubstr("postgresql://leasehold@127.0.0.1"));
}

TEST_F(PostgresCliTest, AnUnreachableServerExits69NamingTheStoreWithoutThePassword) {
  ExpectUnreachableExits69WithoutThePassword(
      "postgresql://leasehold:pw-in-url@127.0.0.1:1/leasehold", "pw-in-url");
}

}  // namespace
}  // namespace leasehold::cli
