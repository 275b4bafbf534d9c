// The CLI's kubernetes:// stores against the in-tree fake API server: URL
// parameters, credentials from a kubeconfig, and the `leasehold` binary
// running a command under a Lease object.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli.h"
#include "elect_test_util.h"
#include "fake_api_server.h"
#include "leasehold/lease.h"
#include "testing/temp_dir.h"

namespace leasehold::cli {
namespace {

using namespace std::chrono_literals;
using kubernetes::testing::FakeApiServer;
using ::testing::HasSubstr;

TEST(KubernetesStoreUrlTest, KubeconfigContextAndInsecureAreParsed) {
  auto spec =
      ParseStoreUrl("kubernetes:///team-a?kubeconfig=/etc/kube%20config&context=prod&insecure=1");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->kind, StoreSpec::Kind::kKubernetes);
  EXPECT_EQ(spec->ns, "team-a");
  EXPECT_EQ(spec->kubeconfig, "/etc/kube config");
  EXPECT_EQ(spec->context, "prod");
  EXPECT_TRUE(spec->insecure);
  EXPECT_FALSE(ParseStoreUrl("kubernetes:///a").value().insecure);
  for (const std::string bad :
       {"kubernetes:///a?insecure=maybe", "kubernetes:///a?token-file=/t",
        "kubernetes:///a?kubeconfig=/a&kubeconfig=/b", "kubernetes:///a?context="}) {
    auto r = ParseStoreUrl(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

class KubernetesCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = FakeApiServer::Start();
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
    ASSERT_TRUE(leasehold::testing::WriteFile(dir_.File("config"),
                                              server_->Kubeconfig("test-token", "team")));
    url_ = "kubernetes:///team?kubeconfig=" + dir_.File("config");
  }

  std::unique_ptr<FakeApiServer> server_;
  leasehold::testing::TempDir dir_{"k8s-cli"};
  std::string url_;
};

TEST_F(KubernetesCliTest, AKubeconfigStoreHoldsLeasesAndStatusShowsThem) {
  auto spec = ParseStoreUrl(url_);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto store = OpenStore(*spec, Runtime::Create());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto lease = Lease::Create(*store, {.name = "cli-lease", .owner = "me", .ttl = 3s});
  ASSERT_TRUE(lease.ok());
  auto got = (*lease)->Acquire();
  ASSERT_TRUE(got.ok() && *got) << got.status().ToString();
  auto object = server_->GetLease("team", "cli-lease");
  ASSERT_TRUE(object.has_value());
  EXPECT_EQ(nlohmann::json::parse(*object)["spec"]["holderIdentity"], (*lease)->identity());

  std::ostringstream out, err;
  EXPECT_EQ(StatusCommand({.store_url = url_, .name = "cli-lease"}, out, err), 0) << err.str();
  EXPECT_THAT(out.str(), HasSubstr((*lease)->identity()));
  EXPECT_THAT(out.str(), HasSubstr("sequence  1"));
  EXPECT_THAT(out.str(), HasSubstr("kubernetes://team"));

  std::ostringstream lout, lerr;
  EXPECT_EQ(ListCommand({.store_url = url_, .prefix = "cli-"}, lout, lerr), 0) << lerr.str();
  EXPECT_THAT(lout.str(), ::testing::MatchesRegex("NAME +HOLDER +SEQUENCE +TIME LEFT\n"
                                                  "cli-lease +" +
                                                  (*lease)->identity() + " +1 +[0-9.]+m?s\n"));
}

TEST_F(KubernetesCliTest, TheBinaryRunsACommandUnderALeaseObjectAndReleasesIt) {
  const std::string cmd = std::string(LEASEHOLD_BINARY) + " run --store '" + url_ +
                          "' --ttl 5s job -- sh -c 'exit 0' 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  char buf[4096];
  std::string output;
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
  const int status = pclose(pipe);
  ASSERT_TRUE(WIFEXITED(status)) << output;
  EXPECT_EQ(WEXITSTATUS(status), 0) << output;
  auto object = server_->GetLease("team", "job");
  ASSERT_TRUE(object.has_value()) << output;
  const auto lease = nlohmann::json::parse(*object);
  EXPECT_EQ(lease["spec"]["leaseTransitions"], 1);
  EXPECT_FALSE(lease["spec"].contains("holderIdentity")) << "released";
}

// The sidecar on Lease objects (elect_test_util.h): two instances, the
// leader SIGKILLed, the standby leads within TTL + 1 s.
TEST_F(KubernetesCliTest, TwoSidecarsFailOver) {
  ExpectSidecarsFailOver(url_, std::chrono::seconds(2));
}

TEST_F(KubernetesCliTest, AnInsecureKubeconfigIsRefusedUnlessTheUrlOptsIn) {
  std::string config = server_->Kubeconfig("test-token", "team");
  const std::string ca_line = "    certificate-authority: " + server_->pki().ca_file + "\n";
  const size_t at = config.find(ca_line);
  ASSERT_NE(at, std::string::npos) << config;
  config.replace(at, ca_line.size(), "    insecure-skip-tls-verify: true\n");
  ASSERT_TRUE(leasehold::testing::WriteFile(dir_.File("insecure"), config));
  const std::string url = "kubernetes:///team?kubeconfig=" + dir_.File("insecure");
  auto refused = OpenStore(ParseStoreUrl(url).value(), Runtime::Create());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied) << refused.status().ToString();
  auto allowed = OpenStore(ParseStoreUrl(url + "&insecure=1").value(), Runtime::Create());
  EXPECT_TRUE(allowed.ok()) << allowed.status().ToString();
}

TEST_F(KubernetesCliTest, AMissingKubeconfigIsAClearError) {
  auto r = OpenStore(ParseStoreUrl("kubernetes:///team?kubeconfig=" + dir_.File("nope")).value(),
                     Runtime::Create());
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("nope"));
}

}  // namespace
}  // namespace leasehold::cli
