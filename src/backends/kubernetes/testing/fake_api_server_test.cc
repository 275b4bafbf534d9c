// Tests of the fake API server itself, through a plain HTTPS client: if the
// fake drifted from what a real API server does, the Kubernetes backend's
// tests would prove nothing. kubectl, where installed, is the outside witness.
#include "fake_api_server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "testing/run_command.h"
#include "testing/temp_dir.h"

namespace leasehold::kubernetes::testing {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;
using leasehold::testing::RunCommand;
using ::testing::HasSubstr;

constexpr const char* kLeases = "/apis/coordination.k8s.io/v1/namespaces/default/leases";

std::string LeasePath(const std::string& name) { return std::string(kLeases) + "/" + name; }

json LeaseBody(const std::string& name, const std::string& holder, int duration = 15) {
  return {{"apiVersion", "coordination.k8s.io/v1"},
          {"kind", "Lease"},
          {"metadata", {{"name", name}}},
          {"spec",
           {{"holderIdentity", holder},
            {"leaseDurationSeconds", duration},
            {"acquireTime", "2026-11-26T08:53:07.417335Z"},
            {"renewTime", "2026-11-26T08:53:07.417335Z"},
            {"leaseTransitions", 0}}}};
}

class FakeApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = FakeApiServer::Start();
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
  }

  std::unique_ptr<httplib::SSLClient> Client(const std::string& token = "test-token") {
    auto c = std::make_unique<httplib::SSLClient>("127.0.0.1", server_->port());
    c->set_ca_cert_path(server_->pki().ca_file.c_str());
    c->enable_server_certificate_verification(true);
    if (!token.empty()) c->set_bearer_token_auth(token.c_str());
    c->set_read_timeout(5s);
    return c;
  }

  struct Reply {
    int status = 0;
    json body;
    httplib::Headers headers;
  };
  Reply Send(const std::string& method, const std::string& path, const json& body = nullptr,
             httplib::SSLClient* client = nullptr) {
    auto own = client ? nullptr : Client();
    httplib::SSLClient& c = client ? *client : *own;
    httplib::Result r =
        method == "GET"    ? c.Get(path.c_str())
        : method == "POST" ? c.Post(path.c_str(), body.dump(), "application/json")
        : method == "PUT"
            ? c.Put(path.c_str(), body.dump(), "application/json")
            : c.Delete(path.c_str(), body.is_null() ? "" : body.dump(), "application/json");
    Reply out;
    if (!r) return out;
    out.status = r->status;
    out.headers = r->headers;
    out.body = json::parse(r->body, nullptr, false);
    return out;
  }

  std::unique_ptr<FakeApiServer> server_;
};

TEST_F(FakeApiServerTest, CreateGetAndAlreadyExists) {
  Reply created = Send("POST", kLeases, LeaseBody("a", "x"));
  ASSERT_EQ(created.status, 201) << created.body.dump();
  const json& meta = created.body["metadata"];
  EXPECT_EQ(meta["name"], "a");
  EXPECT_EQ(meta["namespace"], "default");
  EXPECT_FALSE(meta.value("uid", "").empty());
  EXPECT_FALSE(meta.value("resourceVersion", "").empty());
  EXPECT_FALSE(meta.value("creationTimestamp", "").empty());
  EXPECT_EQ(created.body["spec"]["holderIdentity"], "x");

  Reply got = Send("GET", LeasePath("a"));
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body, created.body);

  Reply again = Send("POST", kLeases, LeaseBody("a", "y"));
  EXPECT_EQ(again.status, 409);
  EXPECT_EQ(again.body["kind"], "Status");
  EXPECT_EQ(again.body["reason"], "AlreadyExists");
  EXPECT_EQ(again.body["message"], "leases.coordination.k8s.io \"a\" already exists");

  Reply missing = Send("GET", LeasePath("nope"));
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body["reason"], "NotFound");
  EXPECT_EQ(missing.body["message"], "leases.coordination.k8s.io \"nope\" not found");
}

TEST_F(FakeApiServerTest, UpdateIsACompareAndSwapOnResourceVersionAndUid) {
  Reply created = Send("POST", kLeases, LeaseBody("a", "x"));
  ASSERT_EQ(created.status, 201);
  json obj = created.body;
  obj["spec"]["holderIdentity"] = "y";
  Reply updated = Send("PUT", LeasePath("a"), obj);
  ASSERT_EQ(updated.status, 200) << updated.body.dump();
  EXPECT_NE(updated.body["metadata"]["resourceVersion"], obj["metadata"]["resourceVersion"]);
  EXPECT_EQ(updated.body["metadata"]["uid"], obj["metadata"]["uid"]);

  // The same resourceVersion again is stale now.
  obj["spec"]["holderIdentity"] = "z";
  Reply stale = Send("PUT", LeasePath("a"), obj);
  EXPECT_EQ(stale.status, 409);
  EXPECT_EQ(stale.body["reason"], "Conflict");
  EXPECT_THAT(stale.body["message"].get<std::string>(),
              HasSubstr("the object has been modified; please apply your changes"));

  // A uid from another incarnation of the object is a failed precondition.
  json other = updated.body;
  other["metadata"]["uid"] = "00000000-0000-4000-8000-000000000000";
  Reply wrong_uid = Send("PUT", LeasePath("a"), other);
  EXPECT_EQ(wrong_uid.status, 409);
  EXPECT_THAT(wrong_uid.body["message"].get<std::string>(), HasSubstr("Precondition failed: UID"));

  // Leases are not created by an update.
  json absent = LeaseBody("b", "x");
  Reply not_found = Send("PUT", LeasePath("b"), absent);
  EXPECT_EQ(not_found.status, 404);

  // No resourceVersion: an unconditional update (Leases allow it).
  json blind = LeaseBody("a", "w");
  Reply unconditional = Send("PUT", LeasePath("a"), blind);
  EXPECT_EQ(unconditional.status, 200);
  EXPECT_EQ(unconditional.body["spec"]["holderIdentity"], "w");
}

TEST_F(FakeApiServerTest, AnUpdateThatChangesNothingKeepsTheResourceVersion) {
  Reply created = Send("POST", kLeases, LeaseBody("a", "x"));
  ASSERT_EQ(created.status, 201);
  Reply same = Send("PUT", LeasePath("a"), created.body);
  ASSERT_EQ(same.status, 200);
  EXPECT_EQ(same.body["metadata"]["resourceVersion"], created.body["metadata"]["resourceVersion"]);
}

TEST_F(FakeApiServerTest, InvalidObjectsGet422WithCausesAndUndecodableOnes400) {
  Reply bad_name = Send("POST", kLeases, LeaseBody("Bad_Name", "x"));
  EXPECT_EQ(bad_name.status, 422);
  EXPECT_EQ(bad_name.body["reason"], "Invalid");
  EXPECT_THAT(bad_name.body["message"].get<std::string>(),
              HasSubstr("Lease.coordination.k8s.io \"Bad_Name\" is invalid: metadata.name"));
  ASSERT_EQ(bad_name.body["details"]["causes"].size(), 1u);
  EXPECT_EQ(bad_name.body["details"]["causes"][0]["field"], "metadata.name");

  Reply long_name = Send("POST", kLeases, LeaseBody(std::string(254, 'a'), "x"));
  EXPECT_EQ(long_name.status, 422);
  EXPECT_THAT(long_name.body["message"].get<std::string>(), HasSubstr("no more than 253"));

  Reply zero = Send("POST", kLeases, LeaseBody("a", "x", 0));
  EXPECT_EQ(zero.status, 422);
  EXPECT_THAT(zero.body["message"].get<std::string>(),
              HasSubstr("spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"));

  json negative = LeaseBody("a", "x");
  negative["spec"]["leaseTransitions"] = -1;
  EXPECT_EQ(Send("POST", kLeases, negative).status, 422);

  json string_duration = LeaseBody("a", "x");
  string_duration["spec"]["leaseDurationSeconds"] = "15";
  Reply r = Send("POST", kLeases, string_duration);
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.body["message"].get<std::string>(), HasSubstr("of type int32"));

  json overflow = LeaseBody("a", "x");
  overflow["spec"]["leaseTransitions"] = int64_t{1} << 31;
  EXPECT_EQ(Send("POST", kLeases, overflow).status, 400);

  json seconds_only = LeaseBody("a", "x");
  seconds_only["spec"]["renewTime"] = "2026-11-26T08:53:07Z";  // MicroTime needs 6 digits
  EXPECT_EQ(Send("POST", kLeases, seconds_only).status, 400);

  json no_kind = LeaseBody("a", "x");
  no_kind.erase("kind");
  Reply nk = Send("POST", kLeases, no_kind);
  EXPECT_EQ(nk.status, 400);
  EXPECT_THAT(nk.body["message"].get<std::string>(), HasSubstr("Object 'Kind' is missing"));

  httplib::Result garbage = Client()->Post(kLeases, "{not json", "application/json");
  ASSERT_TRUE(garbage);
  EXPECT_EQ(garbage->status, 400);

  // A create that carries a resourceVersion is refused by storage.
  json with_rv = LeaseBody("a", "x");
  with_rv["metadata"]["resourceVersion"] = "5";
  EXPECT_EQ(Send("POST", kLeases, with_rv).status, 500);
}

TEST_F(FakeApiServerTest, TimesAreNormalisedToUtcAndUnknownFieldsDroppedWithAWarning) {
  json body = LeaseBody("a", "x");
  body["spec"]["renewTime"] = "2026-11-26T10:53:07.417335+02:00";
  body["spec"]["futureField"] = 1;
  body["spec"]["strategy"] = "OldestEmulationVersion";
  body["metadata"]["labels"] = {{"app", "demo"}};
  body["metadata"]["annotations"] = {{"note", "kept"}};
  body["extra"] = true;
  Reply r = Send("POST", kLeases, body);
  ASSERT_EQ(r.status, 201) << r.body.dump();
  EXPECT_EQ(r.body["spec"]["renewTime"], "2026-11-26T08:53:07.417335Z");
  EXPECT_FALSE(r.body["spec"].contains("futureField"));
  EXPECT_FALSE(r.body.contains("extra"));
  EXPECT_EQ(r.body["spec"]["strategy"], "OldestEmulationVersion");
  EXPECT_EQ(r.body["metadata"]["labels"]["app"], "demo");
  EXPECT_EQ(r.body["metadata"]["annotations"]["note"], "kept");
  std::string warnings;
  for (const auto& [k, v] : r.headers) {
    if (k == "Warning") warnings += v + "\n";
  }
  EXPECT_THAT(warnings, HasSubstr("unknown field \\\"spec.futureField\\\""));
  EXPECT_THAT(warnings, HasSubstr("unknown field \\\"extra\\\""));
}

TEST_F(FakeApiServerTest, DeleteHonoursPreconditions) {
  Reply created = Send("POST", kLeases, LeaseBody("a", "x"));
  ASSERT_EQ(created.status, 201);
  json stale = {{"kind", "DeleteOptions"},
                {"apiVersion", "v1"},
                {"preconditions", {{"resourceVersion", "1"}}}};
  EXPECT_EQ(Send("DELETE", LeasePath("a"), stale).status, 409);
  json current = {{"preconditions",
                   {{"uid", created.body["metadata"]["uid"]},
                    {"resourceVersion", created.body["metadata"]["resourceVersion"]}}}};
  Reply deleted = Send("DELETE", LeasePath("a"), current);
  EXPECT_EQ(deleted.status, 200);
  EXPECT_EQ(deleted.body["status"], "Success");
  EXPECT_EQ(Send("DELETE", LeasePath("a")).status, 404);
  EXPECT_FALSE(server_->GetLease("default", "a").has_value());
}

TEST_F(FakeApiServerTest, ListAndFieldSelectors) {
  ASSERT_EQ(Send("POST", kLeases, LeaseBody("a", "x")).status, 201);
  ASSERT_EQ(Send("POST", kLeases, LeaseBody("b", "y")).status, 201);
  Reply all = Send("GET", kLeases);
  ASSERT_EQ(all.status, 200);
  EXPECT_EQ(all.body["kind"], "LeaseList");
  EXPECT_EQ(all.body["items"].size(), 2u);
  Reply one = Send("GET", std::string(kLeases) + "?fieldSelector=metadata.name%3Db");
  ASSERT_EQ(one.status, 200);
  ASSERT_EQ(one.body["items"].size(), 1u);
  EXPECT_EQ(one.body["items"][0]["spec"]["holderIdentity"], "y");
  EXPECT_EQ(Send("GET", std::string(kLeases) + "?fieldSelector=spec.holderIdentity%3Dx").status,
            400);
}

// limit and continue page a list as the API server does; a bad limit or
// continue token is a 400.
TEST_F(FakeApiServerTest, ListsArePagedWithLimitAndContinue) {
  for (const char* name : {"c", "a", "b"}) {
    ASSERT_EQ(Send("POST", kLeases, LeaseBody(name, "x")).status, 201);
  }
  std::vector<std::string> seen;
  std::string next;
  int pages = 0;
  do {
    std::string path = std::string(kLeases) + "?limit=2";
    if (!next.empty()) path += "&continue=" + next;
    Reply page = Send("GET", path);
    ASSERT_EQ(page.status, 200);
    ASSERT_LE(page.body["items"].size(), 2u);
    for (const auto& item : page.body["items"]) seen.push_back(item["metadata"]["name"]);
    next = page.body["metadata"].value("continue", "");
    if (!next.empty()) {
      EXPECT_EQ(page.body["metadata"]["remainingItemCount"], 1);
    }
    ++pages;
  } while (!next.empty() && pages < 10);
  EXPECT_EQ(pages, 2);
  EXPECT_EQ(seen, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(Send("GET", std::string(kLeases) + "?limit=-1").status, 400);
  EXPECT_EQ(Send("GET", std::string(kLeases) + "?limit=2&continue=garbage").status, 400);
}

TEST_F(FakeApiServerTest, TokensAuthenticateAndCanBeRotated) {
  EXPECT_EQ(Send("GET", kLeases, nullptr, Client("").get()).status, 401);
  Reply wrong = Send("GET", kLeases, nullptr, Client("wrong").get());
  EXPECT_EQ(wrong.status, 401);
  EXPECT_EQ(wrong.body["reason"], "Unauthorized");
  EXPECT_EQ(Send("GET", kLeases).status, 200);

  server_->SetTokens({{"new-token", "system:serviceaccount:default:leasehold"}});
  EXPECT_EQ(Send("GET", kLeases).status, 401);
  EXPECT_EQ(Send("GET", kLeases, nullptr, Client("new-token").get()).status, 200);
}

TEST_F(FakeApiServerTest, DeniedVerbsGet403NamingTheVerbResourceAndNamespace) {
  server_->Deny("system:serviceaccount:default:leasehold", Verb::kUpdate);
  Reply created = Send("POST", kLeases, LeaseBody("a", "x"));
  ASSERT_EQ(created.status, 201);
  Reply denied = Send("PUT", LeasePath("a"), created.body);
  EXPECT_EQ(denied.status, 403);
  EXPECT_EQ(denied.body["reason"], "Forbidden");
  EXPECT_EQ(denied.body["message"],
            "leases.coordination.k8s.io \"a\" is forbidden: User "
            "\"system:serviceaccount:default:leasehold\" cannot update resource \"leases\" in API "
            "group \"coordination.k8s.io\" in the namespace \"default\"");
  server_->AllowAll();
  EXPECT_EQ(Send("PUT", LeasePath("a"), created.body).status, 200);
}

TEST_F(FakeApiServerTest, ClientCertificatesFromTheCaAuthenticateAsTheirCommonName) {
  const auto& pki = server_->pki();
  httplib::SSLClient client("127.0.0.1", server_->port(), pki.client_cert_file,
                            pki.client_key_file);
  client.set_ca_cert_path(pki.ca_file.c_str());
  client.enable_server_certificate_verification(true);
  ASSERT_EQ(Send("POST", kLeases, LeaseBody("a", "x"), &client).status, 201);
  auto log = server_->Requests();
  ASSERT_FALSE(log.empty());
  EXPECT_EQ(log.back().user, pki.client_name);

  // A certificate from another CA does not get through the handshake.
  httplib::SSLClient foreign("127.0.0.1", server_->port(), pki.foreign_client_cert_file,
                             pki.foreign_client_key_file);
  foreign.set_ca_cert_path(pki.ca_file.c_str());
  foreign.enable_server_certificate_verification(true);
  EXPECT_FALSE(foreign.Get(kLeases));
}

TEST_F(FakeApiServerTest, AClientTrustingAnotherCaRefusesTheServer) {
  httplib::SSLClient client("127.0.0.1", server_->port());
  client.set_ca_cert_path(server_->pki().other_ca_file.c_str());
  client.enable_server_certificate_verification(true);
  httplib::Result r = client.Get(kLeases);
  EXPECT_FALSE(r);
  EXPECT_EQ(server_->CountRequests(Verb::kList), 0u);
}

// Reads a watch stream on its own thread, a JSON line at a time.
class WatchReader {
 public:
  WatchReader(FakeApiServerTest* test, std::unique_ptr<httplib::SSLClient> client, std::string path)
      : client_(std::move(client)) {
    (void)test;
    thread_ = std::thread([this, path] {
      httplib::Result r = client_->Get(path.c_str(), [this](const char* data, size_t n) {
        std::lock_guard lock(mu_);
        buffer_.append(data, n);
        for (size_t nl; (nl = buffer_.find('\n')) != std::string::npos;) {
          events_.push_back(json::parse(buffer_.substr(0, nl), nullptr, false));
          buffer_.erase(0, nl + 1);
        }
        cv_.notify_all();
        return !stop_;
      });
      std::lock_guard lock(mu_);
      ended_ = true;
      status_ = r ? r->status : 0;
      cv_.notify_all();
    });
  }
  ~WatchReader() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    client_->stop();
    thread_.join();
  }
  // The next event, or null after `timeout`.
  json Next(std::chrono::milliseconds timeout = 3000ms) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !events_.empty() || ended_; });
    if (events_.empty()) return nullptr;
    json e = events_.front();
    events_.pop_front();
    return e;
  }
  bool WaitEnded(std::chrono::milliseconds timeout = 3000ms) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return ended_; });
  }

 private:
  std::unique_ptr<httplib::SSLClient> client_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string buffer_;
  std::deque<json> events_;
  bool stop_ = false;
  bool ended_ = false;
  int status_ = 0;
  std::thread thread_;
};

TEST_F(FakeApiServerTest, WatchFromAResourceVersionStreamsLaterChangesOfThatObjectOnly) {
  Reply a = Send("POST", kLeases, LeaseBody("a", "x"));
  ASSERT_EQ(a.status, 201);
  const std::string rv = a.body["metadata"]["resourceVersion"];
  WatchReader watch(
      this, Client(),
      std::string(kLeases) + "?watch=1&fieldSelector=metadata.name%3Da&resourceVersion=" + rv);

  ASSERT_EQ(Send("POST", kLeases, LeaseBody("b", "y")).status, 201);  // another object
  json obj = a.body;
  obj["spec"]["holderIdentity"] = "z";
  Reply updated = Send("PUT", LeasePath("a"), obj);
  ASSERT_EQ(updated.status, 200);
  ASSERT_EQ(Send("DELETE", LeasePath("a")).status, 200);

  json e1 = watch.Next();
  ASSERT_TRUE(e1.is_object());
  EXPECT_EQ(e1["type"], "MODIFIED");
  EXPECT_EQ(e1["object"]["spec"]["holderIdentity"], "z");
  EXPECT_EQ(e1["object"]["kind"], "Lease");
  json e2 = watch.Next();
  ASSERT_TRUE(e2.is_object());
  EXPECT_EQ(e2["type"], "DELETED");
  EXPECT_EQ(e2["object"]["metadata"]["name"], "a");
  EXPECT_EQ(server_->active_watches(), 1);
  EXPECT_EQ(server_->CountRequests(Verb::kWatch), 1u);
}

TEST_F(FakeApiServerTest, WatchWithoutAResourceVersionStartsWithTheCurrentState) {
  ASSERT_EQ(Send("POST", kLeases, LeaseBody("a", "x")).status, 201);
  WatchReader watch(this, Client(),
                    std::string(kLeases) + "?watch=true&fieldSelector=metadata.name%3Da");
  json e = watch.Next();
  ASSERT_TRUE(e.is_object());
  EXPECT_EQ(e["type"], "ADDED");
  EXPECT_EQ(e["object"]["spec"]["holderIdentity"], "x");
}

TEST_F(FakeApiServerTest, WatchFromACompactedResourceVersionGets410) {
  Reply a = Send("POST", kLeases, LeaseBody("a", "x"));
  ASSERT_EQ(a.status, 201);
  const std::string old_rv = a.body["metadata"]["resourceVersion"];
  ASSERT_TRUE(server_->PutLease("default", "a", LeaseBody("a", "y").dump()).ok());
  server_->Compact();
  WatchReader watch(this, Client(), std::string(kLeases) + "?watch=1&resourceVersion=" + old_rv);
  json e = watch.Next();
  ASSERT_TRUE(e.is_object());
  EXPECT_EQ(e["type"], "ERROR");
  EXPECT_EQ(e["object"]["code"], 410);
  EXPECT_EQ(e["object"]["reason"], "Expired");
  EXPECT_TRUE(watch.WaitEnded());
}

TEST_F(FakeApiServerTest, WatchesEndOnTimeoutOnCloseAndWhenTheClientGoes) {
  {
    WatchReader timed(this, Client(), std::string(kLeases) + "?watch=1&timeoutSeconds=1");
    EXPECT_TRUE(timed.WaitEnded(3000ms));
  }
  {
    WatchReader closed(this, Client(), std::string(kLeases) + "?watch=1");
    for (int i = 0; i < 100 && server_->active_watches() == 0; ++i)
      std::this_thread::sleep_for(10ms);
    EXPECT_EQ(server_->active_watches(), 1);
    server_->CloseWatches();
    EXPECT_TRUE(closed.WaitEnded());
  }
  {
    WatchReader left(this, Client(), std::string(kLeases) + "?watch=1");
    for (int i = 0; i < 100 && server_->active_watches() == 0; ++i)
      std::this_thread::sleep_for(10ms);
    EXPECT_EQ(server_->active_watches(), 1);
  }  // the client disconnects
  for (int i = 0; i < 100 && server_->active_watches() != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(server_->active_watches(), 0);
}

TEST_F(FakeApiServerTest, InjectedFailuresCarryRetryAfterAndTakeNoEffect) {
  server_->FailNext(1, 429, 2, Verb::kCreate);
  Reply throttled = Send("POST", kLeases, LeaseBody("a", "x"));
  EXPECT_EQ(throttled.status, 429);
  EXPECT_EQ(throttled.body["reason"], "TooManyRequests");
  EXPECT_EQ(throttled.body["details"]["retryAfterSeconds"], 2);
  bool has_retry_after = false;
  for (const auto& [k, v] : throttled.headers) has_retry_after |= (k == "Retry-After" && v == "2");
  EXPECT_TRUE(has_retry_after);
  EXPECT_FALSE(server_->GetLease("default", "a").has_value());

  server_->FailNext(1, 500);
  EXPECT_EQ(Send("GET", kLeases).status, 500);
  EXPECT_EQ(Send("GET", kLeases).status, 200);
}

TEST_F(FakeApiServerTest, DroppedRequestsLoseTheirAnswerBeforeOrAfterTakingEffect) {
  server_->DropNext(1, DropPoint::kBeforeApplying, Verb::kCreate);
  EXPECT_EQ(Send("POST", kLeases, LeaseBody("a", "x")).status, 0);
  EXPECT_FALSE(server_->GetLease("default", "a").has_value());

  server_->DropNext(1, DropPoint::kAfterApplying, Verb::kCreate);
  EXPECT_EQ(Send("POST", kLeases, LeaseBody("a", "x")).status, 0);
  EXPECT_TRUE(server_->GetLease("default", "a").has_value());
  auto log = server_->Requests();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[1].status, 0);
}

TEST_F(FakeApiServerTest, HungRequestsWaitAndDelayedOnesAreLate) {
  server_->SetHang(true);
  auto client = Client();
  client->set_read_timeout(300ms);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Send("GET", kLeases, nullptr, client.get()).status, 0);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 250ms);
  server_->SetHang(false);

  server_->SetDelay(200ms);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Send("GET", kLeases).status, 200);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 200ms);
}

TEST_F(FakeApiServerTest, SuspendRefusesConnectionsAndResumeKeepsTheObjects) {
  ASSERT_EQ(Send("POST", kLeases, LeaseBody("a", "x")).status, 201);
  auto client = Client();
  ASSERT_EQ(Send("GET", kLeases, nullptr, client.get()).status,
            200);  // an idle keep-alive connection
  const auto t0 = std::chrono::steady_clock::now();
  server_->Suspend();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s) << "an idle connection delayed Suspend()";
  EXPECT_EQ(Send("GET", kLeases).status, 0);
  ASSERT_TRUE(server_->Resume().ok());
  Reply got = Send("GET", LeasePath("a"));
  EXPECT_EQ(got.status, 200);
  EXPECT_EQ(got.body["spec"]["holderIdentity"], "x");
}

TEST_F(FakeApiServerTest, ConnectionsAreCountedAndKeptAlive) {
  auto client = Client();
  client->set_keep_alive(true);
  const size_t before = server_->connections_accepted();
  for (int i = 0; i < 5; ++i) ASSERT_EQ(Send("GET", kLeases, nullptr, client.get()).status, 200);
  EXPECT_EQ(server_->connections_accepted() - before, 1u);
  EXPECT_EQ(server_->CountRequests(Verb::kList), 5u);
}

TEST_F(FakeApiServerTest, PutLeaseStoresHostileRecordsAndWatchersSeeThem) {
  auto rv = server_->PutLease("default", "h",
                              R"({"spec":{"leaseDurationSeconds":-5,"renewTime":"garbage"}})");
  ASSERT_TRUE(rv.ok()) << rv.status().ToString();
  Reply got = Send("GET", LeasePath("h"));
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body["spec"]["leaseDurationSeconds"], -5);
  EXPECT_EQ(got.body["spec"]["renewTime"], "garbage");
  EXPECT_EQ(got.body["metadata"]["resourceVersion"], *rv);
  const std::string uid = got.body["metadata"]["uid"];
  // A second raw write keeps the object's identity.
  ASSERT_TRUE(server_->PutLease("default", "h", R"({"spec":{}})").ok());
  EXPECT_EQ(Send("GET", LeasePath("h")).body["metadata"]["uid"], uid);
  EXPECT_FALSE(server_->PutLease("default", "h", "[1,2]").ok());
  EXPECT_TRUE(server_->DeleteLease("default", "h"));
  EXPECT_FALSE(server_->DeleteLease("default", "h"));
}

// kubectl is the outside witness: it reads discovery, lists and gets leases
// from the fake as from a real cluster.

TEST_F(FakeApiServerTest, KubectlReadsLeasesFromTheFakeServer) {
  int code = 0;
  RunCommand("command -v kubectl >/dev/null 2>&1", &code);
  // kubectl is not a Debian package (kubernetes-client conflicts with the
  // machine's own); the witness runs where it is installed.
  if (code != 0) GTEST_SKIP() << "kubectl is not installed";
  leasehold::testing::TempDir dir("kubectl");
  ASSERT_TRUE(leasehold::testing::WriteFile(dir.File("config"), server_->Kubeconfig("test-token")));
  Reply created = Send("POST", kLeases, LeaseBody("demo", "holder-1"));
  ASSERT_EQ(created.status, 201);
  const std::string kubectl = "HOME=" + dir.path() + " kubectl --kubeconfig " + dir.File("config") +
                              " --cache-dir " + dir.File("cache") + " ";

  std::string json_out = RunCommand(kubectl + "get lease demo -o json 2>&1", &code);
  ASSERT_EQ(code, 0) << json_out;
  json lease = json::parse(json_out, nullptr, false);
  ASSERT_TRUE(lease.is_object()) << json_out;
  EXPECT_EQ(lease["spec"]["holderIdentity"], "holder-1");
  EXPECT_EQ(lease["spec"]["leaseTransitions"], 0);

  std::string table = RunCommand(kubectl + "get leases 2>&1", &code);
  ASSERT_EQ(code, 0) << table;
  EXPECT_THAT(table, HasSubstr("HOLDER"));
  EXPECT_THAT(table, HasSubstr("holder-1"));

  std::string missing = RunCommand(kubectl + "get lease nope 2>&1", &code);
  EXPECT_NE(code, 0);
  EXPECT_THAT(missing, HasSubstr("not found"));
}

}  // namespace
}  // namespace leasehold::kubernetes::testing
