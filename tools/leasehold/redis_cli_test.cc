// The CLI's redis:// stores: URL checks (passwords never shown) and, against
// a real redis-server started by the fixture, run (the binary), status,
// watch, break and bench.
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
#include "redis_server.h"

namespace leasehold::cli {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(RedisStoreUrlTest, UrlsAreCheckedWhenParsedAndPasswordsNeverShown) {
  auto ok = ParseStoreUrl("redis://app:s3cret@127.0.0.1:6390/2?prefix=x:");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->kind, StoreSpec::Kind::kRedis);
  EXPECT_THAT(ok->url, Not(HasSubstr("s3cret")));
  EXPECT_TRUE(ParseStoreUrl("redis-sentinel://127.0.0.1:26379/mymaster").ok());
  EXPECT_TRUE(ParseStoreUrl("rediss-sentinel://127.0.0.1:26379/mymaster").ok());
  auto bad = ParseStoreUrl("rediss://app:s3cret@127.0.0.1?nope=1");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("unknown option \"nope\""));
  EXPECT_THAT(bad.status().message(), Not(HasSubstr("s3cret")));
}

class RedisCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = redis_test::RedisServer::Start();
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    url_ = server_->url() + "?prefix=cli:";
  }

  std::string Binary(const std::string& args, int* exit_code) {
    return RunBinary(url_, args, exit_code);
  }

  std::unique_ptr<redis_test::RedisServer> server_;
  std::string url_;
};

TEST_F(RedisCliTest, RunStatusWatchBreakAndBenchWorkOnTheStore) {
  int code = -1;
  std::string out = Binary("run --ttl 5s job -- sh -c 'echo seq=$LEASEHOLD_SEQUENCE'", &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("seq=1"));
  EXPECT_EQ(*server_->Command({"HGET", "cli:lease:{job}", "holder"}), "") << "released on exit";

  // A holder in this process; status and watch see it, break frees it.
  std::string status;
  ExpectStatusWatchBreakAndBenchOnTheStore(url_, &status);
}

TEST_F(RedisCliTest, AnUnreachableServerExits69NamingTheStoreWithoutThePassword) {
  ExpectUnreachableExits69WithoutThePassword("redis://app:pw-in-url@127.0.0.1:1", "pw-in-url");
}

}  // namespace
}  // namespace leasehold::cli
