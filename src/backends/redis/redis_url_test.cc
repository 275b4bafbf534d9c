// ParseRedisUrl: every form the CLI takes, and a clear error for each
// malformed one, never echoing a password.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "leasehold/backends/redis.h"
#include "redis_reply.h"

namespace leasehold {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(RedisUrlTest, PlainTlsAndSentinelUrlsParse) {
  unsetenv("REDISCLI_AUTH");
  auto a = ParseRedisUrl("redis://127.0.0.1:6380/3?prefix=app%3A&subscribe=0");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_EQ(a->endpoints.size(), 1u);
  EXPECT_EQ(a->endpoints[0].host, "127.0.0.1");
  EXPECT_EQ(a->endpoints[0].port, 6380);
  EXPECT_EQ(a->database, 3);
  EXPECT_EQ(a->key_prefix, "app:");
  EXPECT_FALSE(a->subscribe);
  EXPECT_FALSE(a->tls);

  auto b = ParseRedisUrl("rediss://app:s%40cret@localhost?ca=/x/ca.crt&server-name=redis.local");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_TRUE(b->tls);
  EXPECT_EQ(b->username, "app");
  EXPECT_EQ(b->password, "s@cret");
  EXPECT_EQ(b->endpoints[0].port, 6379);
  EXPECT_EQ(b->tls_ca_file, "/x/ca.crt");
  EXPECT_EQ(b->tls_server_name, "redis.local");

  auto c =
      ParseRedisUrl("redis-sentinel://:pw@127.0.0.1:26379,[::1]:26380/mymaster/2?wait-replicas=1");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->endpoints.size(), 2u);
  EXPECT_EQ(c->endpoints[1].host, "::1");
  EXPECT_EQ(c->endpoints[1].port, 26380);
  EXPECT_EQ(c->sentinel_master, "mymaster");
  EXPECT_EQ(c->database, 2);
  EXPECT_EQ(c->password, "pw");
  EXPECT_EQ(c->username, "");
  EXPECT_EQ(c->wait_replicas, 1);
  EXPECT_FALSE(c->tls);

  auto d = ParseRedisUrl("rediss-sentinel://127.0.0.1:26379/mymaster?ca=/x/ca.crt");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(d->tls);
  EXPECT_EQ(d->sentinel_master, "mymaster");
  EXPECT_EQ(d->tls_ca_file, "/x/ca.crt");
}

TEST(RedisUrlTest, APasswordComesFromTheEnvironmentWhenTheUrlHasNone) {
  setenv("REDISCLI_AUTH", "from-env", 1);
  auto a = ParseRedisUrl("redis://127.0.0.1");
  unsetenv("REDISCLI_AUTH");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->password, "from-env");
}

TEST(RedisUrlTest, MalformedUrlsAreRefusedNamingThePartWithoutThePassword) {
  const std::pair<std::string, std::string> bad[] = {
      {"http://127.0.0.1", "must start with"},
      {"redis://", "no host"},
      {"redis://:topsecret@", "no host"},
      {"redis://127.0.0.1:0", "port \"0\""},
      {"redis://127.0.0.1:99999", "port \"99999\""},
      {"redis://127.0.0.1:x", "port \"x\""},
      {"redis://127.0.0.1:", "empty port"},
      {"redis://127.0.0.1/70000", "database \"70000\""},
      {"redis://127.0.0.1/db", "database \"db\""},
      {"redis://127.0.0.1/1/2", "unexpected path part"},
      {"redis://a,b", "several hosts"},
      {"redis-sentinel://127.0.0.1:26379", "master's name"},
      {"redis://127.0.0.1?bogus=1", "unknown option \"bogus\""},
      {"redis://127.0.0.1?subscribe=maybe", "subscribe must be 0 or 1"},
      {"redis://127.0.0.1?wait-replicas=-1", "wait-replicas"},
      {"redis://127.0.0.1?prefix", "has no value"},
      {"redis://127.0.0.1?prefix=%zz", "%-escape"},
      {"redis://user:top%zsecret@127.0.0.1", "%-escape in the password"},
      {"redis://[::1", "unclosed '['"},
      {"redis://topsecret@127.0.0.1", "':' before the password"},
  };
  for (const auto& [url, why] : bad) {
    auto r = ParseRedisUrl(url);
    ASSERT_FALSE(r.ok()) << url;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << url;
    EXPECT_THAT(r.status().message(), HasSubstr(why)) << url;
    EXPECT_THAT(r.status().message(), Not(HasSubstr("topsecret"))) << url;
  }
}

TEST(RedisReplyTest, RepliesParseAndMalformedStreamsAreErrors) {
  auto r =
      redis::ParseReplies("+OK\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n$1\r\nx\r\n-ERR no\r\n");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->size(), 6u);
  EXPECT_EQ((*r)[0].Text(), "OK");
  EXPECT_EQ((*r)[1].Int(), 42);
  EXPECT_EQ((*r)[2].Text(), "abc");
  EXPECT_TRUE((*r)[3].is_nil());
  ASSERT_EQ((*r)[4].elements.size(), 2u);
  EXPECT_EQ((*r)[4].elements[1].Text(), "x");
  EXPECT_EQ((*r)[5].ErrorCode(), "ERR");
  // Incomplete: nothing yet, not an error.
  auto partial = redis::ParseReplies("$10\r\nabc");
  ASSERT_TRUE(partial.ok());
  EXPECT_TRUE(partial->empty());
  // Not RESP, and an array that claims more elements than we allow.
  EXPECT_EQ(redis::ParseReplies("?what\r\n").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(redis::ParseReplies("*2000000000\r\n").status().code(), StatusCode::kDataLoss);
  EXPECT_EQ(redis::ParseInt64("9223372036854775807"), INT64_MAX);
  EXPECT_EQ(redis::ParseInt64("9223372036854775808"), std::nullopt);
  EXPECT_EQ(redis::ParseInt64("12a"), std::nullopt);
  EXPECT_EQ(redis::ParseInt64(""), std::nullopt);
}

}  // namespace
}  // namespace leasehold
