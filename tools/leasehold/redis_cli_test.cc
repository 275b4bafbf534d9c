// The CLI's redis:// stores: URL checks (passwords never shown) and, against
// a real redis-server started by the fixture, run (the binary), status,
// watch, break and bench.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
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
  auto store = OpenStore(ParseStoreUrl(url_).value(), Runtime::Create());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto lease = Lease::Create(*store, {.name = "job", .owner = "me", .ttl = 5s});
  ASSERT_TRUE(lease.ok());
  auto got = (*lease)->Acquire();
  ASSERT_TRUE(got.ok() && *got) << got.status().ToString();
  std::ostringstream sout, serr;
  EXPECT_EQ(StatusCommand({.store_url = url_, .name = "job"}, sout, serr), 0) << serr.str();
  EXPECT_THAT(sout.str(), HasSubstr((*lease)->identity()));
  EXPECT_THAT(sout.str(), HasSubstr("sequence  2"));
  std::ostringstream wout, werr;
  EXPECT_EQ(WatchCommand({.store_url = url_, .name = "job", .max_events = 1}, wout, werr), 0)
      << werr.str();
  EXPECT_THAT(wout.str(), HasSubstr((*lease)->identity()));

  std::ostringstream bout, berr;
  EXPECT_EQ(BreakCommand({.store_url = url_, .name = "job", .yes = true}, bout, berr), 0)
      << berr.str();
  out = Binary("run --ttl 5s job -- sh -c 'echo seq=$LEASEHOLD_SEQUENCE'", &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("seq=3"));

  out = Binary("bench --ops 50 --json", &code);
  EXPECT_EQ(code, 0) << out;
  const auto j = nlohmann::json::parse(out.substr(out.find('{')), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_GT(j.value("cycle_p50_us", 0.0), 0.0);
}

TEST_F(RedisCliTest, AnUnreachableServerExits69NamingTheStoreWithoutThePassword) {
  url_ = "redis://app:pw-in-url@127.0.0.1:1";
  int code = -1;
  const std::string out = Binary("status job", &code);
  EXPECT_EQ(code, kExitUnavailable) << out;
  EXPECT_THAT(out, HasSubstr("127.0.0.1:1"));
  EXPECT_THAT(out, Not(HasSubstr("pw-in-url")));
}

}  // namespace
}  // namespace leasehold::cli
