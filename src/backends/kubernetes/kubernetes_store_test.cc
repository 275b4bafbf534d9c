// Tests of the Kubernetes store against the in-tree fake API server over real
// TLS on loopback: API-call counts, hostile records, credentials (rotation,
// wrong CA, RBAC), status mapping, the 409 renewal read, Retry-After. The
// watches are in kubernetes_watch_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "fake_api_server.h"
#include "kubernetes_store_fixture.h"
#include "leasehold/backends/kubernetes.h"
#include "leasehold/future.h"
#include "leasehold/lease.h"
#include "testing/run_command.h"
#include "testing/sanitizers.h"
#include "testing/store_calls.h"
#include "testing/temp_dir.h"

namespace leasehold::kubernetes {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using leasehold::testing::RunCommand;
using testing::FakeApiServer;
using ::testing::HasSubstr;
using testing::Verb;

using store_test::KubernetesStoreTest;
using store_test::Won;

TEST_F(KubernetesStoreTest, AcquireOfAFreeLeaseCostsTwoCallsRenewOneAndReleaseOne) {
  auto store = Open();
  server_->ClearRequests();
  auto won = StoreAcquire(*store, "calls", "a");
  ASSERT_TRUE(Won(won)) << won.status().ToString();
  EXPECT_EQ(server_->CountRequests(Verb::kGet), 1u);
  EXPECT_EQ(server_->CountRequests(Verb::kCreate), 1u);
  EXPECT_EQ(server_->CountRequests(Verb::kUpdate), 0u);
  const FencingToken token = Won(won)->token;
  EXPECT_EQ(token.sequence, 1u);

  server_->ClearRequests();
  auto renewed = StoreRenew(*store, "calls", "a", token);
  ASSERT_TRUE(renewed.ok()) << renewed.status().ToString();
  EXPECT_TRUE(std::holds_alternative<Renewed>(*renewed));
  EXPECT_EQ(server_->Requests().size(), 1u);
  EXPECT_EQ(server_->CountRequests(Verb::kUpdate), 1u);

  server_->ClearRequests();
  EXPECT_TRUE(StoreRelease(*store, "calls", "a", token).ok());
  EXPECT_EQ(server_->Requests().size(), 1u);
  EXPECT_EQ(server_->CountRequests(Verb::kUpdate), 1u);
  const json obj = Object("calls");
  EXPECT_FALSE(obj["spec"].contains("holderIdentity"));
  EXPECT_EQ(obj["spec"]["leaseTransitions"], 1);  // kept, so sequences never restart
}

TEST_F(KubernetesStoreTest, TheRecordIsReadableAsAKubernetesLeaseAndKeepsForeignFields) {
  PutForeign(
      "kept", {{"leaseTransitions", 4}, {"strategy", "OldestEmulationVersion"}},
      {{"labels", {{"team", "db"}}},
       {"annotations", {{"note", "hi"}}},
       {"ownerReferences",
        json::array(
            {{{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"name", "o"}, {"uid", "1234"}}})}});
  auto store = Open();
  auto won = StoreAcquire(*store, "kept", "me", 1500ms);
  ASSERT_TRUE(Won(won)) << won.status().ToString();
  EXPECT_EQ(Won(won)->token.sequence, 5u);
  const json obj = Object("kept");
  EXPECT_EQ(obj["spec"]["holderIdentity"], "me");
  EXPECT_EQ(obj["spec"]["leaseDurationSeconds"], 2);  // whole seconds, rounded up
  EXPECT_EQ(obj["spec"]["leaseTransitions"], 5);
  EXPECT_EQ(obj["spec"]["strategy"], "OldestEmulationVersion");
  EXPECT_EQ(obj["metadata"]["labels"]["team"], "db");
  EXPECT_EQ(obj["metadata"]["annotations"]["note"], "hi");
  EXPECT_EQ(obj["metadata"]["annotations"]["leasehold.io/incarnation"], store->incarnation());
  EXPECT_EQ(obj["metadata"]["ownerReferences"][0]["name"], "o");
  const std::string renew = obj["spec"]["renewTime"];
  EXPECT_EQ(renew.size(), 27u) << renew;  // 2026-11-26T08:53:07.417335Z
  EXPECT_EQ(renew.back(), 'Z');
}

TEST_F(KubernetesStoreTest, SequencesGrowOnEveryAcquisitionAndARecreatedObjectGetsNewTokens) {
  auto store = Open();
  auto first = StoreAcquire(*store, "seq", "a");
  ASSERT_TRUE(Won(first));
  ASSERT_TRUE(StoreRelease(*store, "seq", "a", Won(first)->token).ok());
  auto second = StoreAcquire(*store, "seq", "a");  // same owner again
  ASSERT_TRUE(Won(second));
  EXPECT_EQ(Won(second)->token.sequence, 2u);
  auto third = StoreAcquire(*store, "seq", "a");  // ours: a re-acquire after a lapse
  ASSERT_TRUE(Won(third));
  EXPECT_EQ(Won(third)->token.sequence, 3u);
  ASSERT_TRUE(server_->DeleteLease("default", "seq"));
  auto fourth = StoreAcquire(*store, "seq", "a");
  ASSERT_TRUE(Won(fourth));
  EXPECT_EQ(Won(fourth)->token.sequence, 1u);  // deleting by hand restarts the sequence...
  EXPECT_NE(Won(fourth)->token.value, Won(first)->token.value);  // ...but never the token
}

TEST_F(KubernetesStoreTest, ANameTheApiServerCannotStoreIsRejectedBeforeAnyRequest) {
  auto store = Open();
  server_->ClearRequests();
  for (const std::string& name :
       std::vector<std::string>{"Upper", "under_score", std::string(254, 'a'), "a/b"}) {
    auto lease = Lease::Create(store, {.name = name, .owner = "a", .ttl = 2s});
    ASSERT_FALSE(lease.ok()) << name;
    EXPECT_EQ(lease.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(lease.status().message(), HasSubstr("DNS-1123"));
  }
  EXPECT_TRUE(server_->Requests().empty());
}

TEST_F(KubernetesStoreTest, AnInvalidReplyFromTheServerIsInvalidArgumentWithItsCauses) {
  auto store = Open();
  server_->FailNext(1, 422, std::nullopt, Verb::kCreate);
  auto r = StoreAcquire(*store, "invalid", "a");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("422"));
  EXPECT_THAT(r.status().message(), HasSubstr("lease \"invalid\""));
}

TEST_F(KubernetesStoreTest, PlainHttpAndSkippedVerificationNeedAnExplicitOptIn) {
  Credentials plain = Creds();
  plain.server = "http://127.0.0.1:1";
  auto refused = KubernetesStore::Open({.credentials = plain}, runtime_);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(refused.status().message(), HasSubstr("plain http"));
  EXPECT_TRUE(KubernetesStore::Open({.credentials = plain, .allow_insecure = true}, runtime_).ok());

  Credentials unverified = Creds();
  unverified.insecure_skip_tls_verify = true;
  auto skipped = KubernetesStore::Open({.credentials = unverified}, runtime_);
  ASSERT_FALSE(skipped.ok());
  EXPECT_EQ(skipped.status().code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(skipped.status().message(), HasSubstr("skip TLS verification"));
  // Opted in, it talks to the (TLS) fake server without checking its certificate.
  auto store = KubernetesStore::Open({.credentials = unverified, .allow_insecure = true}, runtime_);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_TRUE(Won(StoreAcquire(**store, "unverified", "a")));
}

TEST_F(KubernetesStoreTest, AnObserveFactorBeyondAThousandIsRefused) {
  auto r = KubernetesStore::Open({.credentials = Creds(), .max_observe_factor = 1e9}, runtime_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("[1, 1000]"));
}

TEST_F(KubernetesStoreTest, ForbiddenNamesTheVerbTheResourceAndTheNamespace) {
  auto store = Open();
  server_->Deny("system:serviceaccount:default:leasehold", Verb::kCreate);
  auto r = StoreAcquire(*store, "rbac", "a");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  EXPECT_THAT(r.status().message(), HasSubstr("RBAC"));
  EXPECT_THAT(r.status().message(), HasSubstr("create leases.coordination.k8s.io"));
  EXPECT_THAT(r.status().message(), HasSubstr("namespace default"));
  EXPECT_THAT(r.status().message(), HasSubstr("grant verbs get, create, update, watch"));
  EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr("test-token")));
}

TEST_F(KubernetesStoreTest, AWrongCaFailsClosedWithAClearError) {
  Credentials creds = Creds();
  creds.ca_pem = server_->pki().other_ca_pem;
  auto store = Open(creds);
  server_->ClearRequests();
  auto r = StoreAcquire(*store, "tls", "a");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("TLS verification"));
  EXPECT_THAT(r.status().message(), HasSubstr("CA"));
  EXPECT_TRUE(server_->Requests().empty());
}

TEST_F(KubernetesStoreTest, AClientCertificateAuthenticates) {
  Credentials creds = Creds("");
  creds.client_cert_pem = server_->pki().client_cert_pem;
  creds.client_key_pem = server_->pki().client_key_pem;
  auto store = Open(creds);
  auto r = StoreAcquire(*store, "cert", "a");
  EXPECT_TRUE(Won(r)) << r.status().ToString();
  auto requests = server_->Requests();
  ASSERT_FALSE(requests.empty());
  EXPECT_EQ(requests.back().user, server_->pki().client_name);
}

TEST_F(KubernetesStoreTest, ABadTokenIsUnauthenticatedWithoutTheTokenInTheMessage) {
  auto store = Open(Creds("wrong-secret"));
  auto r = StoreAcquire(*store, "auth", "a");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnauthenticated);
  EXPECT_THAT(r.status().message(), HasSubstr("401"));
  EXPECT_THAT(r.status().message(), ::testing::Not(HasSubstr("wrong-secret")));
}

TEST_F(KubernetesStoreTest, TokenRotationMidTenureLosesNothing) {
  leasehold::testing::TempDir dir("k8s-token");
  const std::string file = dir.File("token");
  { std::ofstream(file) << "old-token\n"; }
  server_->SetTokens({{"old-token", "system:serviceaccount:default:leasehold"}});
  Credentials creds = Creds("");
  creds.token_file = file;
  auto store = Open(creds);
  // Renewals every TTL/3, each with a request timeout fitted to what is left:
  // under a sanitizer the 401, the re-read and the retry on a new TLS
  // connection need a longer TTL to fit in one renewal's budget.
  const Duration ttl = leasehold::testing::kSanitized ? Duration(4s) : Duration(1s);
  auto lease = MakeLease(store, "rotate", "a", ttl);
  std::atomic<int> lost{0};
  auto sub = lease->OnLost([&](const LostEvent&) { ++lost; });
  ASSERT_TRUE(*lease->Acquire());
  // The kubelet rewrites the file; the server stops accepting the old token.
  { std::ofstream(file + ".tmp") << "new-token\n"; }
  ASSERT_EQ(std::rename((file + ".tmp").c_str(), file.c_str()), 0);
  server_->SetTokens({{"new-token", "system:serviceaccount:default:leasehold"}});
  std::this_thread::sleep_for(ttl * 5 / 2);
  EXPECT_TRUE(lease->CheckAlive());
  EXPECT_EQ(lost.load(), 0);
  size_t unauthorized = 0, ok_after = 0;
  for (const auto& r : server_->Requests()) {
    if (r.status == 401) ++unauthorized;
    if (r.status == 200 && r.user == "system:serviceaccount:default:leasehold") ++ok_after;
  }
  EXPECT_GE(unauthorized, 1u);  // the rotation was noticed through a 401...
  EXPECT_GE(ok_after, 2u);      // ...and renewals went on with the new token
  EXPECT_TRUE(lease->Release().ok());
}

TEST_F(KubernetesStoreTest, ARenewalWhoseAnswerWasLostIsKeptAfterOneRead) {
  auto store = Open();
  auto won = StoreAcquire(*store, "dropped", "a");
  ASSERT_TRUE(Won(won));
  const FencingToken token = Won(won)->token;
  server_->DropNext(1, testing::DropPoint::kAfterApplying, Verb::kUpdate);
  server_->ClearRequests();
  // The PUT lands but its answer is cut; the client sends it again on a new
  // connection, gets 409 (its own write moved the resourceVersion), and one
  // read shows the record is still this tenure's.
  auto again = StoreRenew(*store, "dropped", "a", token);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_TRUE(std::holds_alternative<Renewed>(*again));
  EXPECT_EQ(server_->CountRequests(Verb::kGet), 1u);  // one read decided
  size_t conflicts = 0;
  for (const auto& r : server_->Requests()) conflicts += r.status == 409 ? 1 : 0;
  EXPECT_EQ(conflicts, 1u);
  // And a foreign takeover after that is a loss, told by the same read.
  json obj = Object("dropped");
  obj["spec"]["holderIdentity"] = "intruder";
  obj["spec"]["leaseTransitions"] = 2;
  ASSERT_TRUE(server_->PutLease("default", "dropped", obj.dump()).ok());
  auto lost = StoreRenew(*store, "dropped", "a", token);
  ASSERT_TRUE(lost.ok()) << lost.status().ToString();
  ASSERT_TRUE(std::holds_alternative<Lost>(*lost));
  EXPECT_EQ(std::get<Lost>(*lost).reason, LossReason::kTakenOver);
  EXPECT_THAT(std::get<Lost>(*lost).message, HasSubstr("intruder"));
}

// A listing pages through the namespace 500 objects at a time and shows
// Leases written by others (client-go's leader election) as Inspect reads
// them: a spec that is not an object is a free lease.
TEST_F(KubernetesStoreTest, ListingPagesThroughEveryLeaseInTheNamespace) {
  constexpr int kObjects = 1203;
  for (int i = 0; i < kObjects; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "job-%04d", i);
    PutForeign(name, {{"holderIdentity", "pod-" + std::to_string(i)},
                      {"leaseDurationSeconds", 15},
                      {"leaseTransitions", i}});
  }
  PutForeign("other", {{"holderIdentity", "x"}});
  auto store = Open();
  server_->ClearRequests();
  auto listed = leasehold::testing::ListRecords(*store, "job-", 10s);
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  EXPECT_EQ(server_->CountRequests(Verb::kList), 3u) << "pages of 500";
  ASSERT_EQ(listed->size(), static_cast<size_t>(kObjects));
  for (int i = 0; i < kObjects; ++i) {
    const LeaseRecord& r = (*listed)[i];
    char name[16];
    std::snprintf(name, sizeof name, "job-%04d", i);
    ASSERT_EQ(r.name, name);
    EXPECT_EQ(r.holder, "pod-" + std::to_string(i));
    EXPECT_EQ(r.token.sequence, static_cast<uint64_t>(i));
    ASSERT_TRUE(r.remaining.has_value()) << r.name;
    EXPECT_LE(*r.remaining, 15s);
  }

  PutForeign("job-odd", "not a spec");
  auto odd = leasehold::testing::ListRecords(*store, "job-o", 10s);
  ASSERT_TRUE(odd.ok()) << odd.status().ToString();
  ASSERT_EQ(odd->size(), 1u);
  EXPECT_EQ((*odd)[0].holder, "");
  EXPECT_FALSE((*odd)[0].remaining.has_value());
}

TEST_F(KubernetesStoreTest, ARenewalOfADeletedOrRecreatedObjectIsLostAsDeleted) {
  auto store = Open();
  auto won = StoreAcquire(*store, "gone", "a");
  ASSERT_TRUE(Won(won));
  ASSERT_TRUE(server_->DeleteLease("default", "gone"));
  auto lost = StoreRenew(*store, "gone", "a", Won(won)->token);
  ASSERT_TRUE(lost.ok()) << lost.status().ToString();
  ASSERT_TRUE(std::holds_alternative<Lost>(*lost));
  EXPECT_EQ(std::get<Lost>(*lost).reason, LossReason::kDeleted);
}

TEST_F(KubernetesStoreTest, ThrottlingIsTransientAndRetryAfterIsHonoured) {
  auto store = Open();
  server_->FailNext(1, 429, 1, Verb::kGet);
  const TimePoint start = Now();
  auto r = StoreAcquire(*store, "throttled", "a");
  EXPECT_TRUE(Won(r)) << r.status().ToString();
  EXPECT_GE(Now() - start, 1s);
  auto won = Won(r)->token;
  server_->FailNext(1, 503, 30, Verb::kUpdate);
  auto renew = StoreRenew(*store, "throttled", "a", won);
  ASSERT_FALSE(renew.ok());
  EXPECT_EQ(renew.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(renew.status().message(), HasSubstr("503"));
  EXPECT_THAT(renew.status().message(), HasSubstr("retry after 30s"));
}

TEST_F(KubernetesStoreTest, WaitingOutARetryAfterHoldsNoThread) {
  // One blocking thread: a Retry-After slept on it would hold every other
  // request of the store back until it ended.
  auto runtime = Runtime::Create({.blocking_threads = 1});
  auto opened = KubernetesStore::Open({.credentials = Creds()}, runtime);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::shared_ptr<KubernetesStore> store = std::move(*opened);
  server_->FailNext(1, 429, 2, Verb::kGet);
  Promise<Result<AcquireOutcome>> acquired(nullptr);  // no reference to the runtime
  Promise<Result<LeaseRecord>> inspected(nullptr);
  const TimePoint start = Now();
  // Posted to the loop, so that both requests go to the blocking lane.
  runtime->Post([this, store, acquired] {
    store->Acquire({.name = "throttled", .holder = "a", .ttl = 2s, .deadline = Now() + 10s},
                   [acquired](Result<AcquireOutcome> r) mutable { acquired.Set(std::move(r)); });
  });
  std::this_thread::sleep_for(leasehold::testing::kSanitized ? 1s : 300ms);  // its GET got the 429
  runtime->Post([this, store, inspected] {
    store->Inspect("other", Now() + 10s,
                   [inspected](Result<LeaseRecord> r) mutable { inspected.Set(std::move(r)); });
  });
  const Result<LeaseRecord> other = inspected.future().Wait();
  EXPECT_EQ(other.status().code(), StatusCode::kNotFound) << other.status().ToString();
  EXPECT_FALSE(acquired.future().ready()) << "the inspect waited behind the Retry-After";
  const Result<AcquireOutcome> throttled = acquired.future().Wait();
  EXPECT_TRUE(Won(throttled)) << throttled.status().ToString();
  EXPECT_GE(Now() - start, 2s) << "the Retry-After was honoured";
  store.reset();
  EXPECT_TRUE(ShutDown(std::move(runtime)));
}

TEST_F(KubernetesStoreTest, EveryRequestHonoursItsDeadline) {
  auto store = Open();
  server_->SetHang(true);
  const TimePoint start = Now();
  auto r = StoreInspect(*store, "hung", 300ms);
  const Duration took = Now() - start;
  server_->SetHang(false);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kDeadlineExceeded) << r.status().ToString();
  EXPECT_LT(took, 3s);  // far below the 10 s request_timeout ceiling it would hang for
}

TEST_F(KubernetesStoreTest, ConnectionsAreReused) {
  auto store = Open();
  const size_t before = server_->connections_accepted();
  auto won = StoreAcquire(*store, "reuse", "a");
  ASSERT_TRUE(Won(won));
  for (int i = 0; i < 20; ++i) {
    auto r = StoreRenew(*store, "reuse", "a", Won(won)->token);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
  ASSERT_TRUE(StoreRelease(*store, "reuse", "a", Won(won)->token).ok());
  EXPECT_LE(server_->connections_accepted() - before, 2u);
}

// CONFORMANCE item 31: none of these may wedge a lease or steal a live one.
TEST_F(KubernetesStoreTest, HostileRecordsNeitherWedgeTheLeaseNorGetStolenEarly) {
  KubernetesOptions options;
  options.max_observe_factor = 2;  // a foreign record is taken over after <= 2 x TTL
  auto contender = Open(Creds(), options);
  // Thirteen first sightings must fit well inside one TTL.
  const Duration ttl = leasehold::testing::kSanitized ? Duration(3s) : Duration(1s);
  const std::string ours_earlier = "me";  // our owner string, written by an earlier incarnation
  struct Case {
    std::string name;
    json spec;
  };
  const std::vector<Case> cases = {
      {"huge-duration", {{"holderIdentity", "x"}, {"leaseDurationSeconds", 2147483647}}},
      {"negative-duration", {{"holderIdentity", "x"}, {"leaseDurationSeconds", -5}}},
      {"zero-duration", {{"holderIdentity", "x"}, {"leaseDurationSeconds", 0}}},
      {"string-duration", {{"holderIdentity", "x"}, {"leaseDurationSeconds", "15"}}},
      {"float-duration", {{"holderIdentity", "x"}, {"leaseDurationSeconds", 1e300}}},
      {"future-renew",
       {{"holderIdentity", "x"},
        {"leaseDurationSeconds", 1},
        {"renewTime", "2999-01-01T00:00:00.000000Z"}}},
      {"past-renew",
       {{"holderIdentity", "x"},
        {"leaseDurationSeconds", 100000},
        {"renewTime", "1971-01-01T00:00:00.000000Z"}}},
      {"garbage-times", {{"holderIdentity", "x"}, {"renewTime", "soon"}, {"acquireTime", 3}}},
      {"no-times-no-duration", {{"holderIdentity", "x"}}},
      {"earlier-incarnation", {{"holderIdentity", ours_earlier}, {"leaseDurationSeconds", 60}}},
      {"negative-transitions", {{"holderIdentity", "x"}, {"leaseTransitions", -7}}},
      {"wrong-type-holder", {{"holderIdentity", json::array({1, 2})}, {"leaseTransitions", "a"}}},
      {"huge-holder", {{"holderIdentity", std::string(100000, 'h')}}},
  };
  const TimePoint start = Now();
  for (const auto& c : cases) PutForeign(c.name, c.spec);
  for (const auto& c : cases) {
    auto r = StoreAcquire(*contender, c.name, ours_earlier, ttl);
    ASSERT_TRUE(r.ok()) << c.name << ": " << r.status().ToString();
    if (c.name == "wrong-type-holder") {
      EXPECT_TRUE(Won(r)) << c.name << ": a holder that is not a string is no holder";
      continue;
    }
    ASSERT_TRUE(std::holds_alternative<Contended>(*r)) << c.name << " was taken at first sight";
    const auto& busy = std::get<Contended>(*r);
    ASSERT_TRUE(busy.retry_after.has_value()) << c.name;
    EXPECT_LE(*busy.retry_after, 2 * ttl) << c.name;
  }
  // Each record was first seen by now; the longest any may be observed before a
  // takeover is the cap, 2 x TTL.
  const TimePoint all_seen = Now();
  ASSERT_LT(all_seen - start, ttl) << "the machine is too slow for this test's timing";
  std::this_thread::sleep_for(all_seen + ttl * 11 / 5 - Now());
  for (const auto& c : cases) {
    if (c.name == "wrong-type-holder") continue;
    auto r = StoreAcquire(*contender, c.name, ours_earlier, ttl);
    ASSERT_TRUE(r.ok()) << c.name << ": " << r.status().ToString();
    EXPECT_TRUE(Won(r)) << c.name << " wedged the lease";
    if (Won(r)) {
      EXPECT_GE(Won(r)->token.sequence, 1u) << c.name;
    }
    const json obj = Object(c.name);
    EXPECT_EQ(obj["spec"]["holderIdentity"], ours_earlier) << c.name;
  }
}

TEST_F(KubernetesStoreTest, ALiveForeignHolderWithABrokenDurationIsNeverStolen) {
  KubernetesOptions options;
  options.max_observe_factor = 1;
  auto contender = Open(Creds(), options);
  PutForeign("live", {{"holderIdentity", "x"}, {"leaseDurationSeconds", 0}});
  const TimePoint end = Now() + 2500ms;
  while (Now() < end) {
    auto r = StoreAcquire(*contender, "live", "me", 1s);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(std::holds_alternative<Contended>(*r)) << "stole a live lease";
    // The foreign holder renews (a new resourceVersion) every 300 ms.
    json obj = Object("live");
    obj["spec"]["renewTime"] = "2026-01-01T00:00:0" + std::to_string(std::rand() % 10) + ".000000Z";
    obj["metadata"].erase("resourceVersion");
    ASSERT_TRUE(server_->PutLease("default", "live", obj.dump()).ok());
    std::this_thread::sleep_for(300ms);
  }
}

TEST_F(KubernetesStoreTest, TransitionsAtTheInt32MaximumAreRefusedClearly) {
  PutForeign("max", {{"leaseTransitions", 2147483647}});
  auto store = Open();
  auto r = StoreAcquire(*store, "max", "a");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("leaseTransitions"));
}

TEST_F(KubernetesStoreTest, InspectAndBreakSeeAndFreeTheLeaseKeepingTheSequence) {
  auto store = Open();
  auto won = StoreAcquire(*store, "ops", "a");
  ASSERT_TRUE(Won(won));
  auto other = Open();
  auto rec = StoreInspect(*other, "ops");
  ASSERT_TRUE(rec.ok()) << rec.status().ToString();
  EXPECT_EQ(rec->holder, "a");
  EXPECT_EQ(rec->token.sequence, 1u);
  EXPECT_EQ(rec->token.value, Won(won)->token.value);
  EXPECT_TRUE(rec->remaining.has_value());
  Promise<Status> p(runtime_);
  other->Break("ops", Now() + 5s, [p](Status s) mutable { p.Set(std::move(s)); });
  ASSERT_TRUE(p.future().Wait().ok());
  auto next = StoreAcquire(*other, "ops", "b");
  ASSERT_TRUE(Won(next));
  EXPECT_EQ(Won(next)->token.sequence, 2u);
  EXPECT_EQ(StoreInspect(*other, "missing").status().code(), StatusCode::kNotFound);
}

TEST_F(KubernetesStoreTest, OptionsAreValidated) {
  KubernetesOptions bad;
  EXPECT_THAT(KubernetesStore::Open(bad, runtime_).status().message(), HasSubstr("server"));
  bad.credentials = Creds();
  bad.max_observe_factor = 0.5;
  EXPECT_THAT(KubernetesStore::Open(bad, runtime_).status().message(),
              HasSubstr("max_observe_factor"));
  bad.max_observe_factor = 2;
  bad.namespace_name = "Not_A_Namespace";
  EXPECT_THAT(KubernetesStore::Open(bad, runtime_).status().message(), HasSubstr("namespace"));
  bad.namespace_name = "";
  bad.credentials.namespace_name = "from-context";
  auto store = KubernetesStore::Open(bad, runtime_);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->namespace_name(), "from-context");
}

// kubectl is the outside witness: what leasehold writes is a Kubernetes Lease
// that kubectl reads (holder and transitions), and an object kubectl deletes
// is a lost lease. Runs where kubectl is installed; when it is, any
// disagreement fails the test.

TEST_F(KubernetesStoreTest, KubectlSeesTheHolderAndTransitionsLeaseholdWrote) {
  int code = 0;
  RunCommand("command -v kubectl >/dev/null 2>&1", &code);
  if (code != 0) GTEST_SKIP() << "kubectl is not installed";
  leasehold::testing::TempDir dir("kubectl");
  ASSERT_TRUE(leasehold::testing::WriteFile(dir.File("config"), server_->Kubeconfig("test-token")));
  const std::string kubectl = "HOME=" + dir.path() + " kubectl --kubeconfig " + dir.File("config") +
                              " --cache-dir " + dir.File("cache") + " ";

  auto first = MakeLease(Open(), "witness", "node-a", 3s);
  auto token = first->AcquireWithToken();
  ASSERT_TRUE(token.ok() && token->has_value()) << token.status().ToString();
  ASSERT_TRUE(first->Release().ok());
  auto second = MakeLease(Open(), "witness", "node-b", 3s);
  auto token2 = second->AcquireWithToken();
  ASSERT_TRUE(token2.ok() && token2->has_value()) << token2.status().ToString();

  std::string out = RunCommand(kubectl + "get lease witness -o json 2>&1", &code);
  ASSERT_EQ(code, 0) << out;
  json lease = json::parse(out, nullptr, false);
  ASSERT_TRUE(lease.is_object()) << out;
  EXPECT_EQ(lease["spec"]["holderIdentity"], second->identity());
  EXPECT_EQ(lease["spec"]["leaseTransitions"], (*token2)->sequence);
  EXPECT_EQ((*token2)->sequence, 2u);
  EXPECT_EQ(lease["spec"]["leaseDurationSeconds"], 3);
  EXPECT_THAT((*token2)->value, HasSubstr(lease["metadata"]["uid"].get<std::string>()));

  std::string table = RunCommand(kubectl + "get leases 2>&1", &code);
  ASSERT_EQ(code, 0) << table;
  EXPECT_THAT(table, HasSubstr(second->identity()));

  // An operator deletes the object by hand: the holder loses the lease.
  std::atomic<int> deleted{0};
  auto sub = second->OnLost([&](const LostEvent& e) {
    if (e.reason == LossReason::kDeleted) ++deleted;
  });
  out = RunCommand(kubectl + "delete lease witness 2>&1", &code);
  ASSERT_EQ(code, 0) << out;
  const TimePoint start = Now();
  while (deleted == 0 && Now() - start < 3s) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(deleted.load(), 1);
  EXPECT_FALSE(second->CheckAlive());
}

}  // namespace
}  // namespace leasehold::kubernetes
