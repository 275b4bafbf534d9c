// The Redis store against real redis-server 7.0 processes (the fixture):
// options, credentials, TLS, the safety checks, the counter's rules, hostile
// records, hand-off by PUBLISH, scripts the server forgot.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "leasehold/backends/redis.h"
#include "leasehold/lease.h"
#include "redis_server.h"
#include "redis_test_util.h"
#include "testing/store_calls.h"

namespace leasehold {
namespace {

using namespace std::chrono_literals;
using redis_test::RedisServer;
using ::testing::HasSubstr;
using ::testing::Not;

class RedisStoreTest : public ::testing::Test {
 protected:
  RedisServer& Server() {
    RedisServer* s = redis_test::SharedServer();
    EXPECT_NE(s, nullptr);
    return *s;
  }

  RedisOptions Options(const std::string& url) {
    auto o = ParseRedisUrl(url);
    EXPECT_TRUE(o.ok()) << o.status().ToString();
    RedisOptions options = o.ok() ? *o : RedisOptions{};
    options.key_prefix = prefix_;
    options.connect_timeout = 2s;
    return options;
  }

  std::shared_ptr<RedisStore> Open(RedisOptions options) {
    auto s = RedisStore::Open(std::move(options), runtime_);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : nullptr;
  }
  std::shared_ptr<RedisStore> Open() { return Open(Options(Server().url())); }

  std::unique_ptr<Lease> Make(std::shared_ptr<Store> store, const std::string& owner, Duration ttl,
                              const std::string& name = "job") {
    auto l = Lease::Create(std::move(store), {.name = name, .owner = owner, .ttl = ttl});
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    return l.ok() ? std::move(*l) : nullptr;
  }

  std::optional<FencingToken> Token(Lease& l) {
    auto t = l.AcquireWithToken({.attempts = 1});
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return t.ok() ? *t : std::nullopt;
  }

  std::string Key(const std::string& kind, const std::string& name = "job") const {
    return prefix_ + kind + ":{" + name + "}";
  }

  std::shared_ptr<Runtime> runtime_ = Runtime::Create();
  const std::string prefix_ = redis_test::FreshPrefix();
};

TEST_F(RedisStoreTest, BadOptionsAreRefusedNamingWhatIsWrong) {
  RedisOptions none;
  EXPECT_THAT(RedisStore::Open(none, runtime_).status().message(), HasSubstr("no server"));
  RedisOptions o = Options("redis://127.0.0.1:6379");
  o.key_prefix = "a{b}";
  EXPECT_THAT(RedisStore::Open(o, runtime_).status().message(), HasSubstr("'{' or '}'"));
  o = Options("redis://127.0.0.1:6379");
  o.tls_ca_file = "/x";
  EXPECT_THAT(RedisStore::Open(o, runtime_).status().message(), HasSubstr("without TLS"));
  o = Options("rediss://127.0.0.1:6379?ca=/no/such/ca.crt");
  auto r = RedisStore::Open(o, runtime_);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("/no/such/ca.crt"));
}

TEST_F(RedisStoreTest, NoServerIsUnavailableWithinTheConnectTimeout) {
  RedisOptions o = Options("redis://127.0.0.1:1");
  const auto start = std::chrono::steady_clock::now();
  auto r = RedisStore::Open(o, runtime_);
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("127.0.0.1:1"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST_F(RedisStoreTest, PasswordsAndAclUsersAreCheckedAndNeverShown) {
  auto server = RedisServer::Start(
      {.password = "right-password",
       // Exactly the permissions docs/redis.md lists.
       .acl = {"app on >app-password ~lh* &lh* +evalsha +eval +subscribe +ping +role +config|get "
               "+wait +hmget +hget +hset +hincrby +exists +time +publish"}});
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const std::string at = "127.0.0.1:" + std::to_string((*server)->port());
  auto wrong = RedisStore::Open(Options("redis://:wrong-password@" + at), runtime_);
  EXPECT_EQ(wrong.status().code(), StatusCode::kUnauthenticated) << wrong.status().ToString();
  EXPECT_THAT(wrong.status().message(), Not(HasSubstr("wrong-password")));
  auto none = RedisStore::Open(Options("redis://" + at), runtime_);
  EXPECT_EQ(none.status().code(), StatusCode::kUnauthenticated) << none.status().ToString();
  auto store = Open(Options("redis://app:app-password@" + at));
  ASSERT_TRUE(store);
  EXPECT_THAT(store->Describe(), Not(HasSubstr("app-password")));
  auto lease = Make(store, "a", 600ms);
  EXPECT_TRUE(Token(*lease).has_value());
  std::this_thread::sleep_for(1s);  // renewals
  EXPECT_TRUE(lease->CheckAlive());
  auto other = Make(Open(Options("redis://app:app-password@" + at)), "b", 5s);
  auto waiting = other->StartAcquire({.wait = true, .timeout = 5s});  // subscribes
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(lease->Release().ok());
  const AcquireResult& got = waiting.Wait();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_TRUE(got->has_value());
}

TEST_F(RedisStoreTest, TlsIsVerifiedAgainstTheGivenCaAndAWrongOneFailsClosed) {
  auto server = RedisServer::Start({.tls = true});
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto store = Open(Options((*server)->url()));
  ASSERT_TRUE(store);
  auto lease = Make(store, "a", 5s);
  EXPECT_TRUE(Token(*lease).has_value());
  const std::string at = "127.0.0.1:" + std::to_string((*server)->port());
  auto wrong = RedisStore::Open(
      Options("rediss://" + at + "?ca=" + (*server)->pki()->other_ca_file), runtime_);
  EXPECT_EQ(wrong.status().code(), StatusCode::kUnavailable) << wrong.status().ToString();
  EXPECT_THAT(wrong.status().message(), HasSubstr("certificate"));
  // Plain text to the TLS port: no answer that could pass for one.
  auto plain = RedisStore::Open(Options("redis://" + at), runtime_);
  EXPECT_FALSE(plain.ok());
}

TEST_F(RedisStoreTest, AnEvictionPolicyOrMissingAofIsRefusedUnlessAllowed) {
  auto server = RedisServer::Start({.maxmemory_policy = "allkeys-lru"});
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto refused = RedisStore::Open(Options((*server)->url()), runtime_);
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("maxmemory-policy is \"allkeys-lru\""));
  RedisOptions allowed = Options((*server)->url());
  allowed.allow_eviction = true;
  EXPECT_TRUE(Open(allowed));
  RedisOptions aof = Options(Server().url());
  aof.require_aof = true;
  auto no_aof = RedisStore::Open(aof, runtime_);
  EXPECT_EQ(no_aof.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(no_aof.status().message(), HasSubstr("appendonly"));
}

// wait-replicas: an acquisition acknowledged by enough replicas holds; one
// that is not fails, and the lease is given back rather than held on a write
// a failover could lose.
TEST_F(RedisStoreTest, AcquisitionsWaitForTheReplicasAskedFor) {
  auto primary = RedisServer::Start();
  ASSERT_TRUE(primary.ok()) << primary.status().ToString();
  auto replica = RedisServer::Start({.replica_of = (*primary)->port()});
  ASSERT_TRUE(replica.ok()) << replica.status().ToString();
  ASSERT_TRUE(redis_test::WaitForSync(**replica));
  RedisOptions one = Options((*primary)->url() + "?wait-replicas=1&wait-timeout-ms=10000");
  auto held = Make(Open(one), "a", 5s, "replicated");
  EXPECT_TRUE(Token(*held).has_value());
  RedisOptions two = Options((*primary)->url() + "?wait-replicas=2&wait-timeout-ms=200");
  auto refused = Make(Open(two), "b", 5s, "unreplicated");
  auto r = refused->AcquireWithToken({.attempts = 1});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("only 1 of 2 replicas"));
  EXPECT_EQ(*(*primary)->Command({"HGET", prefix_ + "lease:{unreplicated}", "holder"}), "")
      << "given back";
}

// The counter only grows: through release, break, a deleted record, a
// deleted counter (restarts from the record), and a flush of everything (a
// new store id: tokens from before never compare equal).
TEST_F(RedisStoreTest, SequencesOnlyGrowAndALostCounterComesBackWithANewStoreId) {
  auto store = Open();
  auto a = Make(store, "a", 10s);
  auto first = Token(*a);
  ASSERT_TRUE(first);
  ASSERT_TRUE(a->Release().ok());
  auto second = Token(*a);
  ASSERT_TRUE(second);
  EXPECT_GT(second->sequence, first->sequence);
  std::promise<Status> broke;
  store->Break("job", runtime_->clock().Now() + 2s, [&](Status s) { broke.set_value(s); });
  ASSERT_TRUE(broke.get_future().get().ok());
  ASSERT_TRUE(Server().Command({"DEL", Key("lease")}).ok());
  auto b = Make(store, "b", 10s);
  auto third = Token(*b);
  ASSERT_TRUE(third);
  EXPECT_GT(third->sequence, second->sequence);
  ASSERT_TRUE(b->Release().ok());
  ASSERT_TRUE(Server().Command({"DEL", Key("fence")}).ok());
  auto fourth = Token(*b);
  ASSERT_TRUE(fourth);
  EXPECT_GT(fourth->sequence, third->sequence) << "restarted from the record's sequence";
  ASSERT_TRUE(b->Release().ok());
  ASSERT_TRUE(Server().Command({"DEL", Key("fence"), Key("lease")}).ok());
  // The counter starts again at 1: a lease that held a higher sequence
  // refuses the grant (and gives it back) rather than go backwards.
  auto backwards = b->AcquireWithToken({.attempts = 1});
  EXPECT_EQ(backwards.status().code(), StatusCode::kAborted) << backwards.status().ToString();
  auto c = Make(store, "c", 10s);
  auto fifth = Token(*c);
  ASSERT_TRUE(fifth);
  EXPECT_EQ(fifth->sequence, 2u) << "1 went to the grant b gave back";
  EXPECT_NE(fifth->value.substr(0, fifth->value.find('/', 6)),
            fourth->value.substr(0, fourth->value.find('/', 6)))
      << "a counter lost with its record must not reuse the store id";
}

TEST_F(RedisStoreTest, HostileRecordsNeverFreeALeaseEarlyNorCrashTheStore) {
  auto store = Open();
  auto a = Make(store, "a", 1s);
  // A record of the wrong type.
  ASSERT_TRUE(Server().Command({"SET", Key("lease"), "junk"}).ok());
  auto wrong_type = a->AcquireWithToken({.attempts = 1});
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_EQ(wrong_type.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(wrong_type.status().message(), HasSubstr("lease \"job\""));
  // A version that is not an integer: an error, never "free".
  ASSERT_TRUE(Server().Command({"DEL", Key("lease")}).ok());
  ASSERT_TRUE(Server().Command({"HSET", Key("lease"), "holder", "mallory", "version", "abc"}).ok());
  auto bad_version = a->AcquireWithToken({.attempts = 1});
  ASSERT_FALSE(bad_version.ok());
  EXPECT_EQ(bad_version.status().code(), StatusCode::kDataLoss);
  // Absurd or missing TTLs wait the cap (2 x our TTL), never less.
  ASSERT_TRUE(Server().Command({"DEL", Key("lease")}).ok());
  ASSERT_TRUE(
      Server()
          .Command({"HSET", Key("lease"), "holder", "mallory", "version", "7", "ttl_ms", "-5"})
          .ok());
  const auto start = std::chrono::steady_clock::now();
  auto taken = a->AcquireWithToken({.wait = true, .timeout = 10s});
  ASSERT_TRUE(taken.ok()) << taken.status().ToString();
  ASSERT_TRUE(taken->has_value());
  EXPECT_GE(std::chrono::steady_clock::now() - start, 2s - 50ms) << "taken over early";
}

// A waiter blocked in Acquire is woken by the release's PUBLISH: well within
// one poll interval (set far apart here) and the TTL.
TEST_F(RedisStoreTest, AReleaseWakesAWaiterByPublish) {
  RedisOptions o = Options(Server().url());
  o.poll_interval = 30s;
  auto holder_store = Open(o);
  auto waiter_store = Open(o);
  auto holder = Make(holder_store, "h", 30s);
  auto waiter = Make(waiter_store, "w", 30s);
  ASSERT_TRUE(Token(*holder));
  auto waiting = waiter->StartAcquire({.wait = true, .timeout = 20s});
  std::this_thread::sleep_for(300ms);  // subscribed, waiting
  const auto released = std::chrono::steady_clock::now();
  ASSERT_TRUE(holder->Release().ok());
  const AcquireResult& r = waiting.Wait();
  const auto handoff = std::chrono::steady_clock::now() - released;
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(r->has_value());
  EXPECT_LT(handoff, 2s);
}

// Without a subscriber, waiters read the record every poll interval.
TEST_F(RedisStoreTest, WithoutSubscribingWaitersPollTheRecord) {
  RedisOptions o = Options(Server().url());
  o.subscribe = false;
  o.poll_interval = 100ms;
  auto holder = Make(Open(o), "h", 30s);
  auto waiter = Make(Open(o), "w", 30s);
  ASSERT_TRUE(Token(*holder));
  auto waiting = waiter->StartAcquire({.wait = true, .timeout = 10s});
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(holder->Release().ok());
  const AcquireResult& r = waiting.Wait();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->has_value());
}

// SCRIPT FLUSH (as after a restart or a failover): EVALSHA answers NOSCRIPT
// and the store sends the script itself; renewals go on.
TEST_F(RedisStoreTest, ScriptsTheServerForgotAreSentAgain) {
  auto store = Open();
  auto a = Make(store, "a", 600ms);
  ASSERT_TRUE(Token(*a));
  ASSERT_TRUE(Server().Command({"SCRIPT", "FLUSH"}).ok());
  std::this_thread::sleep_for(1500ms);  // several renewals
  EXPECT_TRUE(a->CheckAlive());
  ASSERT_TRUE(a->Release().ok());
  EXPECT_EQ(*Server().Command({"HGET", Key("lease"), "holder"}), "");
}

// Names needing no escaping in Redis still need a hash tag that holds:
// braces, spaces and quotes in names keep record and counter together.
TEST_F(RedisStoreTest, NamesWithBracesAndQuotesWork) {
  auto store = Open();
  for (const std::string name : {"a}b", "{x}", "sp ace", "q\"uote", "ünï"}) {
    auto l = Make(store, "a", 5s, name);
    auto t = Token(*l);
    ASSERT_TRUE(t) << name;
    EXPECT_THAT(t->value, HasSubstr("/" + name)) << name;
    EXPECT_TRUE(l->Release().ok()) << name;
  }
}

// Listing matches names with SCAN's glob pattern: the prefix's own *, ?, [
// and \ are matched as themselves. A key under the pattern that is not a lease
// hash fails the listing, naming it.
TEST_F(RedisStoreTest, ListingTakesGlobCharactersLiterallyAndFailsOnAHostileRecord) {
  auto store = Open();
  std::vector<std::unique_ptr<Lease>> held;
  for (const std::string name : {"p*x", "pyx", "p?", "p[a]", "pa", "p\\q", "pq"}) {
    held.push_back(Make(store, "a", 10s, name));
    ASSERT_TRUE(Token(*held.back())) << name;
  }
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"p*", {"p*x"}}, {"p?", {"p?"}}, {"p[", {"p[a]"}}, {"p\\", {"p\\q"}}, {"pa", {"pa"}}};
  for (const auto& [prefix, names] : cases) {
    auto listed = testing::ListRecords(*store, prefix, 5s);
    ASSERT_TRUE(listed.ok()) << prefix << ": " << listed.status().ToString();
    EXPECT_EQ(testing::Names(*listed), names) << "prefix " << prefix;
  }
  ASSERT_TRUE(Server().Command({"SET", Key("lease", "pz"), "junk"}).ok());
  auto broken = testing::ListRecords(*store, "p", 5s);
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().code(), StatusCode::kDataLoss) << broken.status().ToString();
  EXPECT_THAT(broken.status().message(), HasSubstr("\"pz\""));
}

}  // namespace
}  // namespace leasehold
