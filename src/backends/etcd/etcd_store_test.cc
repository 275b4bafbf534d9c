// Store-level tests of the etcd backend against a real single-node etcd.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "etcd_cluster.h"
#include "leasehold/backends/etcd.h"
#include "leasehold/lease.h"
#include "testing/delay_proxy.h"
#include "testing/temp_dir.h"
#include "testing/test_pki.h"

namespace leasehold {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

// true only for a successful acquire (errors and contention are false).
bool Got(const Result<bool>& r) { return r.ok() && *r; }

TEST(EtcdOptionsTest, OpenRejectsMissingAndMalformedEndpoints) {
  auto none = EtcdStore::Open({});
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(none.status().message(), HasSubstr("endpoints"));
  for (const char* bad :
       {"localhost", ":2379", "host:", "host:0", "host:99999", "host:12a", "a b:1", "h/x:1"}) {
    auto s = EtcdStore::Open({.endpoints = {bad}, .dial_timeout = Duration::zero()});
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.status().message(), HasSubstr("endpoints")) << bad;
  }
}

TEST(EtcdOptionsTest, OpenRejectsInconsistentCredentials) {
  auto half_cert = EtcdStore::Open({.endpoints = {"127.0.0.1:1"},
                                    .tls = true,
                                    .cert_file = "/nonexistent/c.pem",
                                    .dial_timeout = Duration::zero()});
  ASSERT_FALSE(half_cert.ok());
  EXPECT_THAT(half_cert.status().message(), HasSubstr("key_file"));
  auto no_password = EtcdStore::Open(
      {.endpoints = {"127.0.0.1:1"}, .username = "u", .dial_timeout = Duration::zero()});
  ASSERT_FALSE(no_password.ok());
  EXPECT_THAT(no_password.status().message(), HasSubstr("password"));
  auto unreadable = EtcdStore::Open({.endpoints = {"127.0.0.1:1"},
                                     .tls = true,
                                     .ca_file = "/nonexistent/ca.pem",
                                     .dial_timeout = Duration::zero()});
  ASSERT_FALSE(unreadable.ok());
  EXPECT_EQ(unreadable.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(unreadable.status().message(), HasSubstr("/nonexistent/ca.pem"));
}

TEST(EtcdOptionsTest, OpenFailsClearlyWhenNothingListens) {
  auto s = EtcdStore::Open({.endpoints = {"127.0.0.1:1"}, .dial_timeout = 300ms});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(s.status().message(), HasSubstr("127.0.0.1:1"));
}

class EtcdStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = etcd_test::EtcdCluster::Start({.members = 1});
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    cluster_ = std::move(c).value();
    raw_ = std::make_unique<etcd_test::RawEtcd>(cluster_->endpoint(0));
  }

  std::shared_ptr<EtcdStore> Open() {
    auto s = EtcdStore::Open({.endpoints = cluster_->endpoints(), .key_prefix = "t/"}, runtime_);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : nullptr;
  }
  std::unique_ptr<Lease> MakeLease(std::shared_ptr<Store> store, const std::string& name,
                                   const std::string& owner, Duration ttl = 2s) {
    auto l = Lease::Create(std::move(store), {.name = name, .owner = owner, .ttl = ttl});
    EXPECT_TRUE(l.ok()) << l.status().ToString();
    return l.ok() ? std::move(l).value() : nullptr;
  }

  std::shared_ptr<Runtime> runtime_ = Runtime::Create();
  std::unique_ptr<etcd_test::EtcdCluster> cluster_;
  std::unique_ptr<etcd_test::RawEtcd> raw_;
};

TEST_F(EtcdStoreTest, AcquireWritesTheHolderOnTheSessionLeaseAndTheSequenceIsTheCreateRevision) {
  auto store = Open();
  auto lease = MakeLease(store, "db", "a");
  auto token = lease->AcquireWithToken();
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  ASSERT_TRUE(token->has_value());
  auto kv = raw_->Get("t/db");
  ASSERT_TRUE(kv.has_value());
  EXPECT_EQ(kv->value, lease->identity());
  EXPECT_EQ(static_cast<uint64_t>(kv->create_revision), (*token)->sequence);
  ASSERT_EQ(store->SessionIds().size(), 1u);
  EXPECT_EQ(kv->lease, store->SessionIds()[0]);
  EXPECT_THAT((*token)->value, HasSubstr("t/db"));
}

TEST_F(EtcdStoreTest, LeasesWithOneTtlShareOneSession) {
  auto store = Open();
  std::vector<std::unique_ptr<Lease>> leases;
  for (int i = 0; i < 20; ++i) {
    leases.push_back(MakeLease(store, "l" + std::to_string(i), "a"));
    auto got = leases.back()->Acquire();
    ASSERT_TRUE(Got(got)) << (got.ok() ? "contended" : got.status().ToString());
  }
  auto other_ttl = MakeLease(store, "other", "a", 3s);
  ASSERT_TRUE(Got(other_ttl->Acquire()));
  const auto ids = store->SessionIds();
  ASSERT_EQ(ids.size(), 2u);
  for (int i = 0; i < 20; ++i) {
    auto kv = raw_->Get("t/l" + std::to_string(i));
    ASSERT_TRUE(kv.has_value());
    EXPECT_EQ(kv->lease, raw_->Get("t/l0")->lease);
  }
  EXPECT_NE(raw_->Get("t/other")->lease, raw_->Get("t/l0")->lease);
}

TEST_F(EtcdStoreTest, SessionLossLosesEveryLeaseOnIt) {
  auto store = Open();
  std::vector<std::unique_ptr<Lease>> leases;
  std::atomic<int> lost{0};
  std::vector<Subscription> subs;
  for (int i = 0; i < 5; ++i) {
    leases.push_back(MakeLease(store, "s" + std::to_string(i), "a"));
    subs.push_back(leases.back()->OnLost([&](const LostEvent&) { ++lost; }));
    auto got = leases.back()->Acquire();
    ASSERT_TRUE(Got(got)) << (got.ok() ? "contended" : got.status().ToString());
  }
  ASSERT_EQ(store->SessionIds().size(), 1u);
  ASSERT_TRUE(raw_->Revoke(store->SessionIds()[0]));
  std::this_thread::sleep_for(2500ms);
  EXPECT_EQ(lost.load(), 5);
  for (auto& l : leases) EXPECT_FALSE(l->CheckAlive());
  // A new tenure gets a new session.
  EXPECT_TRUE(Got(leases[0]->Acquire()));
}

TEST_F(EtcdStoreTest, SequencesGrowAcrossReleaseExpiryAndBreak) {
  auto store = Open();
  auto a = MakeLease(store, "f", "a");
  auto b = MakeLease(Open(), "f", "b");
  uint64_t last = 0;
  auto next = [&](Lease& l) {
    auto t = l.AcquireWithToken({.wait = true, .timeout = 10s});
    EXPECT_TRUE(t.ok() && t->has_value()) << (t.ok() ? "contended" : t.status().ToString());
    if (!t.ok() || !t->has_value()) return;
    EXPECT_GT((*t)->sequence, last);
    last = (*t)->sequence;
  };
  next(*a);
  ASSERT_TRUE(a->Release().ok());
  next(*a);  // after release, same owner
  ASSERT_TRUE(a->Release().ok());
  next(*b);  // another owner
  // Break (operator delete) then re-acquire.
  std::promise<Status> broke;
  store->Break("f", runtime_->clock().Now() + 5s, [&](Status s) { broke.set_value(s); });
  ASSERT_TRUE(broke.get_future().get().ok());
  next(*a);
}

TEST_F(EtcdStoreTest, ReacquireBySameHolderOnSameSessionIsIdempotent) {
  auto store = Open();
  std::promise<Result<AcquireOutcome>> p1, p2;
  const auto deadline = runtime_->clock().Now() + 5s;
  store->Acquire({.name = "i", .holder = "me#1", .ttl = 2s, .deadline = deadline},
                 [&](Result<AcquireOutcome> r) { p1.set_value(std::move(r)); });
  auto r1 = p1.get_future().get();
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  ASSERT_TRUE(std::holds_alternative<Acquired>(*r1));
  store->Acquire({.name = "i", .holder = "me#1", .ttl = 2s, .deadline = deadline},
                 [&](Result<AcquireOutcome> r) { p2.set_value(std::move(r)); });
  auto r2 = p2.get_future().get();
  ASSERT_TRUE(r2.ok());
  ASSERT_TRUE(std::holds_alternative<Acquired>(*r2));
  EXPECT_EQ(std::get<Acquired>(*r1).token, std::get<Acquired>(*r2).token);
  // The same identity through another store (another process) does not share it.
  auto other = Open();
  std::promise<Result<AcquireOutcome>> p3;
  other->Acquire({.name = "i", .holder = "me#1", .ttl = 2s, .deadline = deadline},
                 [&](Result<AcquireOutcome> r) { p3.set_value(std::move(r)); });
  auto r3 = p3.get_future().get();
  ASSERT_TRUE(r3.ok());
  EXPECT_TRUE(std::holds_alternative<Contended>(*r3));
}

// A key this store left behind without holding it is deleted in the
// background while its session lives on (kept alive by another lease).
class EtcdLeftoverTest : public EtcdStoreTest {
 protected:
  Result<AcquireOutcome> AcquireNow(EtcdStore& store, const std::string& name,
                                    const std::string& holder, Duration timeout) {
    std::promise<Result<AcquireOutcome>> p;
    store.Acquire(
        {.name = name, .holder = holder, .ttl = 5s, .deadline = runtime_->clock().Now() + timeout},
        [&](Result<AcquireOutcome> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }
  std::shared_ptr<EtcdStore> OpenThrough(const testing::DelayProxy& proxy) {
    auto s = EtcdStore::Open({.endpoints = {proxy.address()}, .key_prefix = "t/"}, runtime_);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? *s : nullptr;
  }
  // Through a proxy that delays each way by 200 ms, an acquire of "a" by
  // "h#1" whose put reaches etcd and lands while its answer arrives after
  // the acquire's 300 ms deadline. A keeper lease keeps the session alive.
  void LoseAnAcquireAnswer() {
    auto proxy = testing::DelayProxy::Start("127.0.0.1", cluster_->endpoint(0));
    ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
    proxy_ = std::move(*proxy);
    store_ = OpenThrough(*proxy_);
    ASSERT_TRUE(store_);
    keeper_ = MakeLease(store_, "keep", "k", 5s);
    ASSERT_TRUE(Got(keeper_->Acquire()));
    proxy_->SetDelay(200ms);
    auto lost = AcquireNow(*store_, "a", "h#1", 300ms);
    proxy_->SetDelay(0ms);
    ASSERT_FALSE(lost.ok()) << "answered within the deadline";
    EXPECT_EQ(lost.status().code(), StatusCode::kDeadlineExceeded) << lost.status().ToString();
  }
  // Waits until `key` is gone; false if it is still there after `bound`.
  bool GoneWithin(const std::string& key, Duration bound) {
    const auto until = std::chrono::steady_clock::now() + bound;
    while (std::chrono::steady_clock::now() < until) {
      if (!raw_->Get(key).has_value()) return true;
      std::this_thread::sleep_for(50ms);
    }
    return !raw_->Get(key).has_value();
  }

  // LoseAnAcquireAnswer's; the lease goes first, the proxy last.
  std::unique_ptr<testing::DelayProxy> proxy_;
  std::shared_ptr<EtcdStore> store_;
  std::unique_ptr<Lease> keeper_;
};

TEST_F(EtcdLeftoverTest, AReleaseEtcdNeverConfirmedIsCompletedInTheBackground) {
  auto store = Open();
  auto keeper = MakeLease(store, "keep", "k", 5s);  // keeps the session alive
  ASSERT_TRUE(Got(keeper->Acquire()));
  auto got = AcquireNow(*store, "r", "h#1", 5s);
  ASSERT_TRUE(got.ok() && std::holds_alternative<Acquired>(*got))
      << (got.ok() ? "contended" : got.status().ToString());
  // The member is down: the release cannot reach it (nothing lands later).
  cluster_->Kill(0);
  std::promise<Status> released;
  store->Release({.name = "r",
                  .holder = "h#1",
                  .token = std::get<Acquired>(*got).token,
                  .deadline = runtime_->clock().Now() + 500ms},
                 [&](Status s) { released.set_value(std::move(s)); });
  const Status s = released.get_future().get();
  EXPECT_FALSE(s.ok()) << "the release reached a dead member";
  ASSERT_TRUE(cluster_->Restart(0).ok());
  // Before, the key lived on as long as the keeper's session: 5 s and more.
  EXPECT_TRUE(GoneWithin("t/r", 4s)) << "the unconfirmed release's key is still there";
  EXPECT_TRUE(raw_->Get("t/keep").has_value()) << "the session itself should live on";
  EXPECT_TRUE(keeper->CheckAlive());
}

TEST_F(EtcdLeftoverTest, AnAcquireWhoseAnswerWasLostIsUndoneInTheBackground) {
  ASSERT_NO_FATAL_FAILURE(LoseAnAcquireAnswer());
  ASSERT_TRUE(raw_->Get("t/a").has_value()) << "the put did not land: nothing to test";
  EXPECT_TRUE(GoneWithin("t/a", 4s)) << "the lost acquire's key is still there";
  EXPECT_TRUE(raw_->Get("t/keep").has_value()) << "the session itself should live on";
  // The holder itself can acquire it again, as new.
  auto again = AcquireNow(*store_, "a", "h#1", 5s);
  ASSERT_TRUE(again.ok() && std::holds_alternative<Acquired>(*again))
      << (again.ok() ? "contended" : again.status().ToString());
}

TEST_F(EtcdLeftoverTest, TheSameHolderAcquiringAgainKeepsWhatItFinds) {
  ASSERT_NO_FATAL_FAILURE(LoseAnAcquireAnswer());
  // Retried at once, as the engine does: the put that landed is this
  // acquire's own, and the background delete must not take it from under it.
  auto again = AcquireNow(*store_, "a", "h#1", 5s);
  ASSERT_TRUE(again.ok() && std::holds_alternative<Acquired>(*again))
      << (again.ok() ? "contended" : again.status().ToString());
  const uint64_t sequence = std::get<Acquired>(*again).token.sequence;
  std::this_thread::sleep_for(2s);  // well past the lost put's settling bound (0.6 s)
  auto kv = raw_->Get("t/a");
  ASSERT_TRUE(kv.has_value()) << "the background delete took a key its holder acquired again";
  EXPECT_EQ(static_cast<uint64_t>(kv->create_revision), sequence);
}

TEST_F(EtcdStoreTest, HostileRecordsAreContentionNotCrashes) {
  auto store = Open();
  const std::string garbage("\0\xff\x01holder\n\"", 10);
  ASSERT_TRUE(raw_->Put("t/h", garbage, 0));
  auto lease = MakeLease(store, "h", "a");
  auto r = lease->Acquire();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(*r);
  std::promise<Result<LeaseRecord>> p;
  store->Inspect("h", runtime_->clock().Now() + 5s,
                 [&](Result<LeaseRecord> rec) { p.set_value(std::move(rec)); });
  auto rec = p.get_future().get();
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->holder, garbage);
  EXPECT_FALSE(rec->remaining.has_value());  // no etcd lease: held until deleted
  // A key attached to a foreign etcd lease that is then revoked frees it.
  const int64_t foreign = raw_->Grant(30);
  ASSERT_TRUE(raw_->Delete("t/h"));
  ASSERT_TRUE(raw_->Put("t/h", "someone", foreign));
  {
    auto again = lease->Acquire();
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_FALSE(*again);
  }
  ASSERT_TRUE(raw_->Revoke(foreign));
  EXPECT_TRUE(Got(lease->Acquire()));
}

TEST_F(EtcdStoreTest, ReleaseNeverDeletesAnotherTenuresKey) {
  auto store = Open();
  auto lease = MakeLease(store, "r", "a");
  auto token = lease->AcquireWithToken();
  ASSERT_TRUE(token.ok() && token->has_value());
  // Someone else's tenure replaces ours behind our back.
  ASSERT_TRUE(raw_->Delete("t/r"));
  ASSERT_TRUE(raw_->Put("t/r", "intruder", raw_->Grant(30)));
  EXPECT_TRUE(lease->Release().ok());
  auto kv = raw_->Get("t/r");
  ASSERT_TRUE(kv.has_value());
  EXPECT_EQ(kv->value, "intruder");
}

TEST_F(EtcdStoreTest, FencedTxnRejectsAStaleHolder) {
  auto store = Open();
  auto a = MakeLease(store, "fence", "a");
  auto ta = a->AcquireWithToken();
  ASSERT_TRUE(ta.ok() && ta->has_value());
  const auto deadline = [&] { return runtime_->clock().Now() + 5s; };
  EXPECT_TRUE(
      store->FencedTxn(**ta, "fence", {{.key = "data/x", .value = "from a"}}, deadline()).ok());
  // a's tenure ends behind its back (a pause past the TTL, say); b takes over.
  ASSERT_TRUE(raw_->Delete("t/fence"));
  auto b = MakeLease(Open(), "fence", "b");
  auto tb = b->AcquireWithToken();
  ASSERT_TRUE(tb.ok() && tb->has_value());
  Status stale = store->FencedTxn(**ta, "fence", {{.key = "data/x", .value = "stale"}}, deadline());
  EXPECT_EQ(stale.code(), StatusCode::kFailedPrecondition) << stale.ToString();
  EXPECT_THAT(stale.message(), HasSubstr("lease no longer held"));
  EXPECT_EQ(raw_->Get("data/x")->value, "from a");
  EXPECT_TRUE(store
                  ->FencedTxn(**tb, "fence", {{.kind = EtcdWrite::Kind::kDelete, .key = "data/x"}},
                              deadline())
                  .ok());
  EXPECT_FALSE(raw_->Get("data/x").has_value());
  // A token of another lease is refused before anything is sent, even where
  // its sequence would match.
  Status other = store->FencedTxn(**tb, "another", {{.key = "data/x", .value = "x"}}, deadline());
  EXPECT_EQ(other.code(), StatusCode::kInvalidArgument) << other.ToString();
  EXPECT_THAT(other.message(), HasSubstr("not a token of this lease"));
  EXPECT_FALSE(raw_->Get("data/x").has_value());
}

TEST_F(EtcdStoreTest, DestroyingTheStoreRevokesItsSessions) {
  auto store = Open();
  auto lease = MakeLease(store, "d", "a", 30s);
  ASSERT_TRUE(Got(lease->Acquire()));
  const int64_t session = store->SessionIds().at(0);
  lease.reset();
  store.reset();
  // The lease's parting release may hold the store a moment longer; the
  // revocation follows within the shutdown timeout.
  std::optional<int64_t> ttl;
  for (int i = 0; i < 100; ++i) {
    ttl = raw_->TimeToLive(session);
    if (ttl && *ttl <= 0) break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(ttl.has_value());
  EXPECT_LE(*ttl, 0) << "the session lease (30 s) is still alive";
}

TEST_F(EtcdStoreTest, TheDestructorKeepsOneShutdownDeadlineWhateverTheMemberDoes) {
  // A paused member answers nothing, like one behind a black hole: a read
  // with a long deadline hangs on it. The destructor still returns by its one
  // deadline, and the read is answered (cancelled).
  auto opened = EtcdStore::Open(
      {.endpoints = cluster_->endpoints(), .key_prefix = "t/", .shutdown_timeout = 400ms},
      runtime_);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::shared_ptr<EtcdStore> store = std::move(*opened);
  cluster_->Pause(0);
  std::atomic<bool> answered{false};
  std::string answer;
  store->Inspect("any", runtime_->clock().Now() + 60s, [&](Result<LeaseRecord> r) {
    answer = r.status().ToString();
    answered = true;
  });
  std::this_thread::sleep_for(200ms);  // the read is out, unanswered
  ASSERT_FALSE(answered.load()) << answer;
  ASSERT_EQ(store.use_count(), 1);  // the test measures the destructor
  const auto start = std::chrono::steady_clock::now();
  store.reset();
  const auto took = std::chrono::steady_clock::now() - start;
  // The read is answered (cancelled) before the member resumes.
  for (int i = 0; i < 50 && !answered.load(); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(answered.load()) << "the read in flight was not cancelled";
  cluster_->Resume(0);
  // Before the one deadline, this took the read's whole deadline (capped at
  // 10 s).
  EXPECT_LT(took, 400ms + 250ms + 200ms)  // the deadline, the grace, this machine
      << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms";
}

TEST_F(EtcdStoreTest, ErrorsNameTheStoreAndTheLease) {
  auto store = Open();
  cluster_->Kill(0);
  auto lease = MakeLease(store, "gone", "a");
  auto r = lease->Acquire();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << r.status().ToString();
  EXPECT_THAT(r.status().message(), HasSubstr("etcd://"));
}

// Item 32: TLS is verified; the right CA works, a wrong CA fails closed with a
// clear error; a server demanding client certificates gets ours.
class EtcdTlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    auto pki = testing::TestPki::Create(dir_.path());
    ASSERT_TRUE(pki.ok()) << pki.status().ToString();
    pki_ = *pki;
    auto c = etcd_test::EtcdCluster::Start({.members = 1,
                                            .tls_cert_file = pki_.server_cert_file,
                                            .tls_key_file = pki_.server_key_file,
                                            .tls_client_ca_file = pki_.ca_file});
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    cluster_ = std::move(c).value();
  }
  // The stores run on runtime_, shut down as README says once they are gone:
  // a store's own runtime could still be destroying the store (a last
  // revocation over TLS) while the process exits and OpenSSL cleans up (an
  // ASan heap-use-after-free in CI).
  void TearDown() override { EXPECT_TRUE(ShutDown(std::move(runtime_))); }
  std::shared_ptr<Runtime> runtime_ = Runtime::Create();
  testing::TempDir dir_{"etcd-tls"};
  testing::TestPki pki_;
  std::unique_ptr<etcd_test::EtcdCluster> cluster_;
};

TEST_F(EtcdTlsTest, TheRightCaAndAClientCertificateWork) {
  auto store = EtcdStore::Open({.endpoints = cluster_->endpoints(),
                                .tls = true,
                                .ca_file = pki_.ca_file,
                                .cert_file = pki_.client_cert_file,
                                .key_file = pki_.client_key_file},
                               runtime_);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto lease = Lease::Create(*store, {.name = "tls", .owner = "a", .ttl = 2s});
  ASSERT_TRUE(lease.ok());
  EXPECT_TRUE(Got((*lease)->Acquire()));
  EXPECT_TRUE((*lease)->Release().ok());
}

TEST_F(EtcdTlsTest, AWrongCaFailsClosedWithAClearError) {
  auto store = EtcdStore::Open({.endpoints = cluster_->endpoints(),
                                .tls = true,
                                .ca_file = pki_.other_ca_file,
                                .cert_file = pki_.client_cert_file,
                                .key_file = pki_.client_key_file,
                                .dial_timeout = 2s},
                               runtime_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(store.status().message(), HasSubstr("TLS"));
}

TEST_F(EtcdTlsTest, PlainTextToATlsServerFails) {
  auto store = EtcdStore::Open({.endpoints = cluster_->endpoints(), .dial_timeout = 2s}, runtime_);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable);
}

// Token authentication: a user and password; a token etcd no longer accepts
// (its TTL passed while idle) is renewed without the caller noticing; a wrong
// password is refused with a clear error that does not contain it.
class EtcdAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = etcd_test::EtcdCluster::Start({.members = 1, .extra_args = {"--auth-token-ttl", "1"}});
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    cluster_ = std::move(c).value();
    const std::string ep = cluster_->endpoint(0);
    ASSERT_TRUE(etcd_test::Etcdctl(ep, {"user", "add", "root", "--new-user-password=rootpw"}));
    ASSERT_TRUE(etcd_test::Etcdctl(ep, {"auth", "enable"}));
  }
  void TearDown() override { EXPECT_TRUE(ShutDown(std::move(runtime_))); }  // as EtcdTlsTest's
  std::shared_ptr<Runtime> runtime_ = Runtime::Create();
  std::unique_ptr<etcd_test::EtcdCluster> cluster_;
};

TEST_F(EtcdAuthTest, AUserWithAPasswordHoldsLeasesAcrossTokenExpiry) {
  auto store = EtcdStore::Open(
      {.endpoints = cluster_->endpoints(), .username = "root", .password = "rootpw"}, runtime_);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto lease = Lease::Create(*store, {.name = "auth", .owner = "a", .ttl = 3s});
  ASSERT_TRUE(lease.ok());
  EXPECT_TRUE(Got((*lease)->Acquire()));
  ASSERT_TRUE((*lease)->Release().ok());
  std::this_thread::sleep_for(2500ms);  // the 1 s token expires while idle
  auto again = (*lease)->Acquire();
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(*again);
}

TEST_F(EtcdAuthTest, AWrongPasswordIsRefusedWithoutShowingIt) {
  auto store = EtcdStore::Open(
      {.endpoints = cluster_->endpoints(), .username = "root", .password = "not-the-pw-xyzzy"},
      runtime_);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr("root"));
  EXPECT_THAT(store.status().message(), ::testing::Not(HasSubstr("xyzzy")));
}

TEST_F(EtcdAuthTest, NoCredentialsIsAnErrorNotContention) {
  auto store = EtcdStore::Open({.endpoints = cluster_->endpoints()}, runtime_);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto lease = Lease::Create(*store, {.name = "auth", .owner = "a", .ttl = 3s});
  ASSERT_TRUE(lease.ok());
  auto r = (*lease)->Acquire();
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("etcd://"));
}

}  // namespace
}  // namespace leasehold
