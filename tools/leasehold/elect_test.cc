// `leasehold elect`, the leader-election sidecar: two sidecars fail over on
// SQLite and etcd (the fake Kubernetes API server's: kubernetes_cli_test.cc),
// hooks run, and bad input is refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "binary_test_util.h"
#include "cli.h"
#include "elect_test_util.h"
#include "testing/temp_dir.h"
#ifdef LEASEHOLD_HAVE_ETCD
#include "etcd_cluster.h"
#endif

namespace leasehold::cli {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

TEST(ElectTest, TwoSidecarsFailOverOnSqlite) {
  testing::TempDir dir("elect-sqlite");
  ExpectSidecarsFailOver("sqlite://" + dir.File("leases.db"), 2s);
}

#ifdef LEASEHOLD_HAVE_ETCD
TEST(ElectTest, TwoSidecarsFailOverOnEtcd) {
  auto cluster = etcd_test::EtcdCluster::Start({.members = 1});
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  ExpectSidecarsFailOver("etcd://" + (*cluster)->endpoint(0) + "/elect-test", 2s);
}
#endif

TEST(ElectTest, HooksRunWithTheTenureInTheirEnvironment) {
  testing::TempDir dir("elect-hooks");
  const std::string elected = dir.File("elected"), lost = dir.File("lost");
  {
    Sidecar s("sqlite://" + dir.File("leases.db"), "a", 2s,
              {"--on-elected", "echo \"$LEASEHOLD_NAME $LEASEHOLD_SEQUENCE\" > " + elected,
               "--on-lost", "echo \"lost $LEASEHOLD_SEQUENCE\" > " + lost});
    ASSERT_TRUE(testing::Eventually([&] { return s.IsLeader(); }, 20s)) << s.Log();
    auto read = [](const std::string& path) {
      std::ifstream f(path);
      std::string line;
      std::getline(f, line);
      return line;
    };
    ASSERT_TRUE(testing::Eventually([&] { return read(elected) == "job 1"; }, 10s))
        << read(elected) << "\n"
        << s.Log();
    ASSERT_TRUE(s.Terminate(10s).has_value());
    ASSERT_TRUE(testing::Eventually([&] { return read(lost) == "lost 1"; }, 10s)) << s.Log();
  }
}

TEST(ElectTest, BadListenAddressesAreRefusedNamingThem) {
  for (const char* bad : {"8080", ":8080", "127.0.0.1:", "127.0.0.1:http", "127.0.0.1:0",
                          "127.0.0.1:70000", "::1:8080", "[::1]8080", "[::1:8080"}) {
    auto r = ParseListenAddress(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(r.status().message(), HasSubstr(std::string("--listen \"") + bad + "\""));
  }
  EXPECT_EQ(ParseListenAddress("127.0.0.1:8080").value(),
            std::make_pair(std::string("127.0.0.1"), 8080));
  EXPECT_EQ(ParseListenAddress("[::1]:9").value(), std::make_pair(std::string("::1"), 9));
}

TEST(ElectTest, AnAddressInUseIsUnavailable) {
  testing::TempDir dir("elect-busy");
  Sidecar first("sqlite://" + dir.File("leases.db"), "a", 2s);
  ASSERT_TRUE(testing::Eventually([&] { return first.Get("/healthz").first == 200; }, 20s))
      << first.Log();
  // A second sidecar on the first one's port.
  int code = -1;
  const std::string port = first.Port();
  const std::string out =
      RunBinary("sqlite://" + dir.File("leases.db"), "elect job --listen 127.0.0.1:" + port, &code);
  EXPECT_EQ(code, kExitUnavailable) << out;
  EXPECT_THAT(out, HasSubstr("cannot listen on 127.0.0.1:" + port));
}

}  // namespace
}  // namespace leasehold::cli
