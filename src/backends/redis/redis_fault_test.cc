// Fault tests of the Redis store, each against a redis-server of its own:
// the server SIGSTOPped past the TTL, CLIENT KILL of the store's
// connections, restarts with and without AOF (the counter's fate, as
// docs/redis.md states it), and the server's wall clock jumping an hour
// forward and back. Each checks that two leases never both believe they
// hold (sampled every millisecond), that a loss is reported once and on
// time, and that the store works after.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "leasehold/backends/redis.h"
#include "leasehold/lease.h"
#include "redis_server.h"
#include "redis_test_util.h"
#include "testing/sanitizers.h"
#include "testing/tenure_probe.h"

namespace leasehold {
namespace {

using namespace std::chrono_literals;
using redis_test::RedisServer;
using redis_test::RedisServerOptions;
using testing::Eventually;
using ::testing::HasSubstr;
using testing::LossLog;
using testing::Ms;
using testing::RecordingStore;

constexpr Duration kTtl = leasehold::testing::kSanitized ? Duration(2s) : Duration(1s);
constexpr Duration kSlack = leasehold::testing::kSanitized ? Duration(500ms) : Duration(250ms);

class RedisFaultTest : public ::testing::Test {
 protected:
  void TearDown() override {
    sampler_.Stop();
    lost_sub_.Unsubscribe();
    leases_.clear();
    stores_.clear();
  }

  void SentinelFailover(bool tls);

  void StartServer(RedisServerOptions options = {}) {
    auto s = RedisServer::Start(std::move(options));
    ASSERT_TRUE(s.ok()) << "cannot start redis-server: " << s.status().ToString();
    server_ = std::move(*s);
  }

  RecordingStore* OpenStore(Duration poll_interval = 250ms) {
    auto o = ParseRedisUrl(server_->url());
    EXPECT_TRUE(o.ok());
    if (!o.ok()) return nullptr;
    o->connect_timeout = 2s;
    o->poll_interval = poll_interval;
    auto store = RedisStore::Open(*o, runtime_);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok()) return nullptr;
    stores_.push_back(std::make_shared<RecordingStore>(*store));
    return stores_.back().get();
  }

  Lease* NewLease(RecordingStore* store, const std::string& owner, Duration ttl) {
    for (auto& s : stores_) {
      if (s.get() != store) continue;
      auto l = Lease::Create(s, {.name = "job", .owner = owner, .ttl = ttl, .retry_delay = 50ms});
      EXPECT_TRUE(l.ok()) << l.status().ToString();
      if (!l.ok()) return nullptr;
      leases_.push_back(std::move(*l));
      return leases_.back().get();
    }
    return nullptr;
  }

  std::optional<FencingToken> AcquireNow(Lease& l) {
    auto t = l.AcquireWithToken({.attempts = 1});
    EXPECT_TRUE(t.ok()) << l.identity() << ": " << t.status().ToString();
    return t.ok() ? *t : std::nullopt;
  }

  // A holder holding the lease (its losses logged) and a second party, both
  // sampled for overlaps.
  struct Scene {
    RecordingStore* hs = nullptr;
    RecordingStore* os = nullptr;
    Lease* h = nullptr;
    Lease* o = nullptr;
    std::optional<FencingToken> th;
  };
  void OpenScene(Scene& scene, Duration ttl = kTtl) {
    scene.hs = OpenStore();
    scene.os = OpenStore();
    ASSERT_TRUE(scene.hs && scene.os);
    scene.h = NewLease(scene.hs, "h", ttl);
    scene.o = NewLease(scene.os, "o", ttl);
    ASSERT_TRUE(scene.h && scene.o);
    lost_sub_ = scene.h->OnLost(losses_.Handler());
    scene.th = AcquireNow(*scene.h);
    ASSERT_TRUE(scene.th.has_value());
    sampler_.Sample(*scene.h);
    sampler_.Sample(*scene.o);
    sampler_.Start();
  }

  std::unique_ptr<RedisServer> server_;
  std::shared_ptr<Runtime> runtime_ = Runtime::Create();
  std::vector<std::shared_ptr<RecordingStore>> stores_;
  std::vector<std::unique_ptr<Lease>> leases_;
  testing::TenureSampler sampler_;
  LossLog losses_{runtime_->clock()};
  Subscription lost_sub_;
};

// The server SIGSTOPped past the TTL: nothing answers, yet the holder's
// OnLost fires once, on time. After SIGCONT the contender (waiting all
// along) takes over with a higher sequence; the old holder's release does
// not free it.
TEST_F(RedisFaultTest, PausedServerLosesTheHolderOnTimeAndAContenderTakesOverAfter) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Scene s;
  ASSERT_NO_FATAL_FAILURE(OpenScene(s));
  auto waiting = s.o->StartAcquire({.wait = true, .timeout = 60s});
  std::this_thread::sleep_for(s.h->options().renew_interval);
  server_->Pause();
  testing::ExpectLostOnTime(sampler_, *s.h, losses_, LossReason::kExpired, kTtl, kSlack);
  std::this_thread::sleep_for(kTtl);
  server_->Resume();
  const AcquireResult& got = waiting.Wait();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(got->has_value());
  EXPECT_GT((**got).sequence, s.th->sequence);
  EXPECT_TRUE(s.h->Release().ok());
  EXPECT_TRUE(s.o->CheckAlive()) << "the old holder's release freed the new tenure";
  sampler_.Stop();
  EXPECT_EQ(sampler_.overlaps(), 0) << sampler_.overlap_report();
}

// CLIENT KILL of every client connection (the holder's and the waiter's
// statement connections, the waiter's subscriber): the holder reconnects at
// its next renewal and keeps the lease; the subscriber reconnects, so a
// release still wakes the waiter well within the TTL.
TEST_F(RedisFaultTest, KilledConnectionsAreReconnectedAndWaitersAreStillWoken) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Scene s;
  ASSERT_NO_FATAL_FAILURE(OpenScene(s, 3s));
  auto waiting = s.o->StartAcquire({.wait = true, .timeout = 60s});
  std::this_thread::sleep_for(300ms);  // the waiter subscribed
  for (const char* type : {"normal", "pubsub"}) {
    auto killed = server_->Command({"CLIENT", "KILL", "TYPE", type, "SKIPME", "yes"});
    ASSERT_TRUE(killed.ok()) << killed.status().ToString();
  }
  std::this_thread::sleep_for(2s);  // renewals on new connections; the subscriber back
  EXPECT_TRUE(s.h->CheckAlive());
  EXPECT_EQ(losses_.size(), 0u);
  const auto released = std::chrono::steady_clock::now();
  ASSERT_TRUE(s.h->Release().ok());
  const AcquireResult& got = waiting.Wait();
  const Duration handoff = std::chrono::steady_clock::now() - released;
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_TRUE(got->has_value());
  std::printf("[ handoff ] %s after the release\n", Ms(handoff).c_str());
  EXPECT_LT(handoff, 750ms);
  sampler_.Stop();
  EXPECT_EQ(sampler_.overlaps(), 0) << sampler_.overlap_report();
}

// A restart without AOF loses every key: the holder's next renewal finds
// no record and its tenure ends at once (kDeleted); the counter starts again
// under a new store id, so no token of before compares equal to one after.
TEST_F(RedisFaultTest, ARestartWithoutAofLosesTheTenureAndTheCounterComesBackUnderANewId) {
  ASSERT_NO_FATAL_FAILURE(StartServer());
  Scene s;
  ASSERT_NO_FATAL_FAILURE(OpenScene(s, 3s));
  ASSERT_TRUE(server_->Restart().ok()) << server_->LogTail();
  ASSERT_TRUE(Eventually([&] { return losses_.size() > 0; }, 5s));
  EXPECT_EQ(losses_.at(0).first.reason, LossReason::kDeleted) << losses_.at(0).first.message;
  auto after = AcquireNow(*s.o);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->sequence, 1u) << "the counter was lost with the data";
  const auto id = [](const FencingToken& t) { return t.value.substr(0, t.value.find('/', 6)); };
  EXPECT_NE(id(*after), id(*s.th));
  sampler_.Stop();
  EXPECT_EQ(sampler_.overlaps(), 0) << sampler_.overlap_report();
}

// With AOF (appendfsync always) a restart shorter than the TTL is ridden
// out: the holder keeps its tenure, and the counter goes on from where it
// was.
TEST_F(RedisFaultTest, ARestartWithAofIsRiddenOutAndTheCounterGoesOn) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.aof = true}));
  Scene s;
  ASSERT_NO_FATAL_FAILURE(OpenScene(s, 3s));
  ASSERT_TRUE(server_->Restart().ok()) << server_->LogTail();
  std::this_thread::sleep_for(2s);  // renewals after the restart
  EXPECT_TRUE(s.h->CheckAlive());
  EXPECT_EQ(losses_.size(), 0u);
  ASSERT_TRUE(s.h->Release().ok());
  auto after = AcquireNow(*s.o);
  ASSERT_TRUE(after.has_value());
  EXPECT_EQ(after->sequence, s.th->sequence + 1);
  const auto id = [](const FencingToken& t) { return t.value.substr(0, t.value.find('/', 6)); };
  EXPECT_EQ(id(*after), id(*s.th));
  sampler_.Stop();
  EXPECT_EQ(sampler_.overlaps(), 0) << sampler_.overlap_report();
}

// The server's wall clock an hour forward, then back: nothing the store
// decides reads it (the records have no TTL in Redis; expiry is judged on
// the contender's monotonic clock), so the holder keeps the lease and a
// contender trying all along never gets it.
TEST_F(RedisFaultTest, ServerWallClockJumpsNeitherExpireNorExtendATenure) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.faketime = true}));
  Scene s;
  ASSERT_NO_FATAL_FAILURE(OpenScene(s));
  std::atomic<bool> contender_won{false};
  std::jthread poller([&](std::stop_token stop) {
    while (!stop.stop_requested()) {
      auto r = s.o->Acquire({.attempts = 1});
      if (r.ok() && *r) {
        contender_won = true;
        return;
      }
      std::this_thread::sleep_for(20ms);
    }
  });
  for (const int offset : {3600, -3600, 0}) {
    ASSERT_TRUE(server_->SetClockOffset(std::to_string(offset)).ok());
    // The server's clock did move (else this test would prove nothing).
    auto time = server_->Command({"TIME"});
    ASSERT_TRUE(time.ok()) << time.status().ToString();
    const int64_t server_s = std::stoll(time->substr(0, time->find('\n')));
    const int64_t our_s = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
    EXPECT_NEAR(static_cast<double>(server_s - our_s), offset, 5.0);
    std::this_thread::sleep_for(kTtl * 2);
    EXPECT_TRUE(s.h->CheckAlive()) << "after the clock moved " << offset;
    EXPECT_FALSE(contender_won) << "after the clock moved " << offset;
  }
  poller.request_stop();
  poller.join();
  EXPECT_EQ(losses_.size(), 0u);
  sampler_.Stop();
  EXPECT_EQ(sampler_.overlaps(), 0) << sampler_.overlap_report();
}

// A primary, two replicas and three sentinels; the primary is SIGKILLed
// while a holder (through redis-sentinel://) holds the lease and a contender
// waits. The sentinels promote a replica and the stores follow it. Whatever
// the failover does to the tenure -- ridden out (the acquire had reached the
// replicas) or lost on time -- two leases never both believe they hold, and
// a contender that gets the lease has a higher sequence. With `tls`, every
// connection is TLS (rediss-sentinel://; tls-replication between servers
// and sentinels), as managed Sentinel deployments run.
void RedisFaultTest::SentinelFailover(bool tls) {
  ASSERT_NO_FATAL_FAILURE(StartServer({.tls = tls}));
  const int primary_port = server_->port();
  std::vector<std::unique_ptr<RedisServer>> replicas;
  for (int i = 0; i < 2; ++i) {
    auto r =
        RedisServer::Start({.tls = tls, .pki = server_->shared_pki(), .replica_of = primary_port});
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    replicas.push_back(std::move(*r));
  }
  for (auto& r : replicas) ASSERT_TRUE(redis_test::WaitForSync(*r)) << "a replica did not sync";
  std::vector<std::unique_ptr<redis_test::RedisSentinel>> sentinels;
  std::string url = tls ? "rediss-sentinel://" : "redis-sentinel://";
  for (int i = 0; i < 3; ++i) {
    auto s = redis_test::RedisSentinel::Start(primary_port, 2, server_->pki());
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    url += (i ? ",127.0.0.1:" : "127.0.0.1:") + std::to_string((*s)->port());
    sentinels.push_back(std::move(*s));
  }
  url += "/mymaster";
  if (tls) {
    // Sentinels whose certificate the CA given did not sign: refused.
    auto wrong = ParseRedisUrl(url + "?ca=" + server_->pki()->other_ca_file);
    ASSERT_TRUE(wrong.ok()) << wrong.status().ToString();
    wrong->connect_timeout = 1s;
    auto refused = RedisStore::Open(*wrong, runtime_);
    ASSERT_FALSE(refused.ok()) << "a sentinel was trusted on the wrong CA";
    EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable) << refused.status().ToString();
    url += "?ca=" + server_->pki()->ca_file;
  }
  // Sentinels find each other (hello messages every 2 s) before they can
  // elect a leader.
  std::this_thread::sleep_for(5s);

  auto open = [&] {
    auto o = ParseRedisUrl(url);
    EXPECT_TRUE(o.ok()) << o.status().ToString();
    o->connect_timeout = 1s;
    auto store = RedisStore::Open(*o, runtime_);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    stores_.push_back(std::make_shared<RecordingStore>(*store));
    return stores_.back().get();
  };
  RecordingStore* hs = open();
  RecordingStore* cs = open();
  Lease* h = NewLease(hs, "h", 3s);
  Lease* c = NewLease(cs, "c", 3s);
  ASSERT_TRUE(h && c);
  lost_sub_ = h->OnLost(losses_.Handler());
  auto th = AcquireNow(*h);
  ASSERT_TRUE(th.has_value());
  sampler_.Sample(*h);
  sampler_.Sample(*c);
  sampler_.Start();
  auto waiting = c->StartAcquire({.wait = true, .timeout = 60s});
  std::this_thread::sleep_for(500ms);

  server_->Kill();
  ASSERT_TRUE(Eventually(
      [&] {
        auto p = sentinels[0]->Primary();
        return p.ok() && *p != "127.0.0.1:" + std::to_string(primary_port);
      },
      30s))
      << "no failover";
  // The stores follow the new primary: the holder renews there, or lost on
  // time and the contender holds.
  std::this_thread::sleep_for(4s);
  const bool holder_kept = h->CheckAlive();
  std::printf("[ failover ] the holder %s; %zu loss(es)\n",
              holder_kept ? "rode it out" : "lost its tenure", losses_.size());
  if (!holder_kept) {
    ASSERT_EQ(losses_.size(), 1u);
    const AcquireResult& got = waiting.Wait();
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_TRUE(got->has_value());
    EXPECT_GT((**got).sequence, th->sequence);
  } else {
    ASSERT_TRUE(h->Release().ok());
    const AcquireResult& got = waiting.Wait();
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_TRUE(got->has_value());
    EXPECT_GT((**got).sequence, th->sequence);
  }
  sampler_.Stop();
  EXPECT_EQ(sampler_.overlaps(), 0) << sampler_.overlap_report();
}

TEST_F(RedisFaultTest, SentinelFailoverIsFollowedAndNeverMakesTwoHolders) {
  SentinelFailover(/*tls=*/false);
}

TEST_F(RedisFaultTest, SentinelFailoverOverTlsIsFollowedAndNeverMakesTwoHolders) {
  SentinelFailover(/*tls=*/true);
}

}  // namespace
}  // namespace leasehold
