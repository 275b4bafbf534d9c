// Unit tests of the --store URL and duration parsers, the default store URL,
// OpenStore and ExitCodeFor.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cli.h"

namespace leasehold::cli {
namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;
using Kind = StoreSpec::Kind;

StoreSpec MustParse(std::string_view url) {
  auto spec = ParseStoreUrl(url);
  EXPECT_TRUE(spec.ok()) << url << ": " << spec.status().ToString();
  return spec.ok() ? *spec : StoreSpec{};
}

// The message of the error ParseStoreUrl gives for `url` ("" if it accepted it).
std::string ErrorOf(std::string_view url) {
  auto spec = ParseStoreUrl(url);
  if (spec.ok()) return "";
  EXPECT_EQ(spec.status().code(), StatusCode::kInvalidArgument) << url;
  return spec.status().message();
}

// --- accepted forms -----------------------------------------------------------

TEST(StoreUrlTest, MemoryAcceptsBothSpellings) {
  EXPECT_EQ(MustParse("memory:").kind, Kind::kMemory);
  EXPECT_EQ(MustParse("memory://").kind, Kind::kMemory);
  EXPECT_EQ(MustParse("memory:").url, "memory:");
}

TEST(StoreUrlTest, SqliteTakesAnAbsolutePath) {
  StoreSpec s = MustParse("sqlite:///var/lib/app/leases.db");
  EXPECT_EQ(s.kind, Kind::kSqlite);
  EXPECT_EQ(s.path, "/var/lib/app/leases.db");
  EXPECT_EQ(s.url, "sqlite:///var/lib/app/leases.db");
  EXPECT_THAT(s.endpoints, IsEmpty());
}

TEST(StoreUrlTest, SqlitePathIsPercentDecoded) {
  EXPECT_EQ(MustParse("sqlite:///tmp/with%20space.db").path, "/tmp/with space.db");
  EXPECT_EQ(MustParse("sqlite:///tmp/q%3Fmark%23.db").path, "/tmp/q?mark#.db");
  EXPECT_EQ(MustParse("sqlite:///tmp/%e2%9c%93.db").path, "/tmp/\xe2\x9c\x93.db");
}

TEST(StoreUrlTest, EtcdSingleEndpoint) {
  StoreSpec s = MustParse("etcd://127.0.0.1:2379");
  EXPECT_EQ(s.kind, Kind::kEtcd);
  EXPECT_FALSE(s.tls);
  EXPECT_THAT(s.endpoints, ElementsAre("127.0.0.1:2379"));
  EXPECT_EQ(s.prefix, "");
}

TEST(StoreUrlTest, EtcdSeveralEndpointsAndAPrefix) {
  StoreSpec s = MustParse("etcd://etcd-0.example:2379,etcd-1.example:2380,10.1.2.3:1/app/leases");
  EXPECT_THAT(s.endpoints, ElementsAre("etcd-0.example:2379", "etcd-1.example:2380", "10.1.2.3:1"));
  EXPECT_EQ(s.prefix, "app/leases");
}

TEST(StoreUrlTest, EtcdIpv6Endpoints) {
  StoreSpec s = MustParse("etcd://[::1]:2379,[2001:db8::7]:65535,[::ffff:10.0.0.1]:2379");
  EXPECT_THAT(s.endpoints,
              ElementsAre("[::1]:2379", "[2001:db8::7]:65535", "[::ffff:10.0.0.1]:2379"));
}

TEST(StoreUrlTest, EtcdsTakesTlsFilesAndCredentials) {
  StoreSpec s = MustParse(
      "etcds://h:2379/p?ca-file=/etc/ca.pem&cert-file=/etc/c.pem&key-file=/etc/k.pem"
      "&username=bob&password-file=/run/pw");
  EXPECT_EQ(s.kind, Kind::kEtcd);
  EXPECT_TRUE(s.tls);
  EXPECT_EQ(s.prefix, "p");
  EXPECT_EQ(s.ca_file, "/etc/ca.pem");
  EXPECT_EQ(s.cert_file, "/etc/c.pem");
  EXPECT_EQ(s.key_file, "/etc/k.pem");
  EXPECT_EQ(s.username, "bob");
  EXPECT_EQ(s.password_file, "/run/pw");
}

TEST(StoreUrlTest, EtcdsWithOnlyACaFileIsEnough) {
  StoreSpec s = MustParse("etcds://h:2379?ca-file=/ca.pem");
  EXPECT_TRUE(s.tls);
  EXPECT_EQ(s.ca_file, "/ca.pem");
  EXPECT_EQ(s.cert_file, "");
}

TEST(StoreUrlTest, PlainEtcdTakesCredentials) {
  StoreSpec s = MustParse("etcd://h:2379?username=alice&password-file=/pw");
  EXPECT_EQ(s.username, "alice");
  EXPECT_EQ(s.password_file, "/pw");
}

TEST(StoreUrlTest, QueryValuesArePercentDecoded) {
  StoreSpec s =
      MustParse("etcds://h:2379?ca-file=%2Fetc%2Fmy%20ca.pem&username=a%26b&password-file=/p");
  EXPECT_EQ(s.ca_file, "/etc/my ca.pem");
  EXPECT_EQ(s.username, "a&b");
}

TEST(StoreUrlTest, EmptyQueryPairsAreIgnored) {
  StoreSpec s = MustParse("etcd://h:2379?&username=a&&password-file=/p&");
  EXPECT_EQ(s.username, "a");
  EXPECT_EQ(MustParse("etcd://h:2379?").username, "");
  // Without password-file the password comes from LEASEHOLD_ETCD_PASSWORD.
  EXPECT_EQ(MustParse("etcd://h:2379?username=bob").username, "bob");
  EXPECT_EQ(MustParse("etcd://h:2379?username=bob").password_file, "");
}

TEST(StoreUrlTest, KubernetesInClusterNamespace) {
  StoreSpec s = MustParse("kubernetes:///kube-system");
  EXPECT_EQ(s.kind, Kind::kKubernetes);
  EXPECT_EQ(s.ns, "kube-system");
  EXPECT_THAT(s.endpoints, IsEmpty());
  EXPECT_TRUE(s.tls);
}

TEST(StoreUrlTest, KubernetesExplicitApiServer) {
  StoreSpec s = MustParse("kubernetes://10.0.0.1:6443/default?token-file=/t&ca-file=/c");
  EXPECT_THAT(s.endpoints, ElementsAre("10.0.0.1:6443"));
  EXPECT_EQ(s.ns, "default");
  EXPECT_EQ(s.token_file, "/t");
  EXPECT_EQ(s.ca_file, "/c");
  EXPECT_THAT(MustParse("kubernetes://[fd00::1]:6443/a1?ca-file=/c&token-file=/t").endpoints,
              ElementsAre("[fd00::1]:6443"));
}

TEST(StoreUrlTest, NamespaceOfSixtyThreeCharactersIsAccepted) {
  EXPECT_EQ(MustParse("kubernetes:///" + std::string(63, 'a')).ns, std::string(63, 'a'));
}

// --- malformed forms: each error names what is wrong ------------------------

struct BadUrl {
  std::string url;
  std::string says;
};

class MalformedStoreUrlTest : public ::testing::TestWithParam<BadUrl> {};

TEST_P(MalformedStoreUrlTest, IsRejectedWithAMessageNamingTheProblem) {
  const BadUrl& bad = GetParam();
  const std::string message = ErrorOf(bad.url);
  ASSERT_NE(message, "") << "accepted: " << bad.url;
  EXPECT_THAT(message, HasSubstr(bad.says)) << bad.url;
  if (bad.url.find('\0') == std::string::npos) {
    EXPECT_THAT(message, StartsWith("store URL \"" + bad.url + "\": "));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Everything, MalformedStoreUrlTest,
    ::testing::Values(
        BadUrl{"", "expected memory:"}, BadUrl{"memory", "expected memory:"},
        BadUrl{"/tmp/leases.db", "expected memory:"},
        BadUrl{"sqlite:/tmp/x.db", "expected memory:"}, BadUrl{"memory:x", "expected memory:"},
        BadUrl{"zookeeper://h:2181", "unknown scheme \"zookeeper\""},
        BadUrl{"SQLITE:///tmp/x.db", "unknown scheme \"SQLITE\""},
        BadUrl{"://h:1", "unknown scheme \"\""},
        // sqlite
        BadUrl{"sqlite://relative.db", "must be absolute"}, BadUrl{"sqlite://", "must be absolute"},
        BadUrl{"sqlite://host/tmp/x.db", "must be absolute"},
        BadUrl{"sqlite:///tmp/dir/", "names a directory"},
        BadUrl{"sqlite:///", "names a directory"},
        BadUrl{"sqlite:///tmp/x.db?mode=ro", "take no query parameters"},
        BadUrl{"sqlite:///tmp/x.db#frag", "fragments (#) are not allowed"},
        BadUrl{"sqlite:///tmp/x%zz.db", "malformed percent-escape"},
        BadUrl{"sqlite:///tmp/x%2", "malformed percent-escape"},
        BadUrl{"sqlite:///tmp/x%", "malformed percent-escape"},
        BadUrl{"sqlite:///tmp/x%00.db", "NUL byte (%00)"},
        BadUrl{std::string("sqlite:///tmp/x\0.db", 19), "NUL byte"},
        // etcd endpoints
        BadUrl{"etcd://", "at least one HOST:PORT"},
        BadUrl{"etcd:///app", "at least one HOST:PORT"},
        BadUrl{"etcd://?username=a&password-file=/p", "at least one HOST:PORT"},
        BadUrl{"etcd://host", "needs a port (HOST:PORT)"},
        BadUrl{"etcd://host:", "port \"\" is not a number"},
        BadUrl{"etcd://host:http", "port \"http\" is not a number"},
        BadUrl{"etcd://host:-1", "port \"-1\" is not a number"},
        BadUrl{"etcd://host:123456", "port \"123456\" is not a number"},
        BadUrl{"etcd://host:0", "port 0 is out of range"},
        BadUrl{"etcd://host:65536", "port 65536 is out of range"},
        BadUrl{"etcd://:2379", "\"\" is not a host name"},
        BadUrl{"etcd://ho st:2379", "\"ho st\" is not a host name"},
        BadUrl{"etcd://user@host:2379", "\"user@host\" is not a host name"},
        BadUrl{"etcd://h:1,,h:2", "endpoint \"\" needs a port"},
        BadUrl{"etcd://h:1,", "endpoint \"\" needs a port"},
        BadUrl{"etcd://h:1,h2", "endpoint \"h2\" needs a port"},
        // IPv6
        BadUrl{"etcd://::1:2379", "\"::1\" is not a host name"},
        BadUrl{"etcd://[::1]", "needs a port after the address"},
        BadUrl{"etcd://[::1]2379", "needs a port after the address"},
        BadUrl{"etcd://[::1:2379", "unclosed '['"},
        BadUrl{"etcd://[]:2379", "\"\" is not an IPv6 address"},
        BadUrl{"etcd://[fe80::1%eth0]:2379", "is not an IPv6 address"},
        BadUrl{"etcd://[g::1]:2379", "\"g::1\" is not an IPv6 address"},
        BadUrl{"etcd://[::1]:99999", "port 99999 is out of range"},
        // etcd query
        BadUrl{"etcd://h:1?bogus=1", "unknown query parameter \"bogus\""},
        BadUrl{"etcd://h:1?token-file=/t", "unknown query parameter \"token-file\""},
        BadUrl{"etcd://h:1?username", "\"username\" needs KEY=VALUE"},
        BadUrl{"etcd://h:1?=x", "\"=x\" needs KEY=VALUE"},
        BadUrl{"etcd://h:1?username=&password-file=/p", "\"username\" is empty"},
        BadUrl{"etcd://h:1?username=a&username=b&password-file=/p", "\"username\" given twice"},
        BadUrl{"etcd://h:1?username=a%zz&password-file=/p", "malformed percent-escape"},
        BadUrl{"etcd://h:1?ca-file=/ca", "TLS files need the etcds:// scheme"},
        BadUrl{"etcd://h:1?cert-file=/c&key-file=/k", "TLS files need the etcds:// scheme"},
        BadUrl{"etcd://h:1/p#x", "fragments (#) are not allowed"},
        // half credentials
        BadUrl{"etcd://h:1?password-file=/pw", "password-file needs a username"},
        BadUrl{"etcds://h:1?cert-file=/c", "cert-file and key-file go together"},
        BadUrl{"etcds://h:1?key-file=/k&ca-file=/ca", "cert-file and key-file go together"},
        // kubernetes
        BadUrl{"kubernetes://", "needs a namespace"},
        BadUrl{"kubernetes://h:6443", "needs a namespace"},
        BadUrl{"kubernetes:///", "namespace \"\" is not a valid"},
        BadUrl{"kubernetes:///Default", "namespace \"Default\" is not a valid"},
        BadUrl{"kubernetes:///-ns", "namespace \"-ns\" is not a valid"},
        BadUrl{"kubernetes:///ns-", "namespace \"ns-\" is not a valid"},
        BadUrl{"kubernetes:///a_b", "namespace \"a_b\" is not a valid"},
        BadUrl{"kubernetes:///a/b", "namespace \"a/b\" is not a valid"},
        BadUrl{"kubernetes:///" + std::string(64, 'a'), "is not a valid Kubernetes namespace"},
        BadUrl{"kubernetes:///ns?token-file=/t", "unknown query parameter \"token-file\""},
        BadUrl{"kubernetes://h:6443/ns", "needs both token-file and ca-file"},
        BadUrl{"kubernetes://h:6443/ns?token-file=/t", "needs both token-file and ca-file"},
        BadUrl{"kubernetes://h:6443/ns?ca-file=/c", "needs both token-file and ca-file"},
        BadUrl{"kubernetes://h/ns?token-file=/t&ca-file=/c", "needs a port"},
        BadUrl{"kubernetes://h:6443/ns?username=a&token-file=/t&ca-file=/c",
               "unknown query parameter \"username\""}));

TEST(StoreUrlTest, UrlIsKeptAsGivenForMessages) {
  const std::string url = "etcds://h:2379/p?ca-file=/ca.pem";
  EXPECT_EQ(MustParse(url).url, url);
}

// --- durations ---------------------------------------------------------------

TEST(ParseDurationTest, AcceptsEveryUnit) {
  const std::vector<std::pair<std::string, Duration>> cases = {
      {"10ns", 10ns},  {"250us", 250us}, {"500ms", 500ms}, {"15s", 15s},
      {"2m", 2min},    {"1h", 1h},       {"1.5s", 1500ms}, {"0.5ms", 500us},
      {".25s", 250ms}, {"007s", 7s},     {"1ns", 1ns},     {"100000h", 100000h},
  };
  for (const auto& [text, want] : cases) {
    auto d = ParseDuration(text);
    ASSERT_TRUE(d.ok()) << text << ": " << d.status().ToString();
    EXPECT_EQ(*d, want) << text;
  }
}

TEST(ParseDurationTest, RejectsMalformedWithTheReasonAndExamples) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "needs a number"},
      {"ms", "needs a number"},
      {"-1s", "needs a number"},
      {"+1s", "needs a number"},
      {".s", "needs a number"},
      {"1.2.3s", "needs a number"},
      {" 1s", "needs a number"},
      {"15", "needs a unit"},
      {"1.5", "needs a unit"},
      {"15 s", "unknown unit \" s\""},
      {"15S", "unknown unit \"S\""},
      {"15sec", "unknown unit \"sec\""},
      {"1e3s", "unknown unit \"e3s\""},
      {"2d", "unknown unit \"d\""},
      {"0s", "must be > 0"},
      {"0.0ms", "must be > 0"},
      {"0.1ns", "must be > 0"},
      {"9999999h", "is too long"},
      {"99999999999999999999999s", "is too long"},
  };
  for (const auto& [text, says] : cases) {
    auto d = ParseDuration(text);
    ASSERT_FALSE(d.ok()) << "accepted \"" << text << "\"";
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(d.status().message(), HasSubstr(says)) << text;
    EXPECT_THAT(d.status().message(), HasSubstr("duration \"" + text + "\""));
    EXPECT_THAT(d.status().message(), HasSubstr("examples: 500ms, 15s, 2m"));
  }
}

// --- the default store --------------------------------------------------------

// Sets (or, with nullopt, unsets) environment variables for one test.
class ScopedEnv {
 public:
  void Set(const char* name, std::optional<std::string> value) {
    const char* old = getenv(name);
    saved_.emplace_back(name, old ? std::optional<std::string>(old) : std::nullopt);
    Apply(name, value);
  }
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) Apply(it->first, it->second);
  }

 private:
  static void Apply(const char* name, const std::optional<std::string>& value) {
    if (value) {
      setenv(name, value->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  std::vector<std::pair<const char*, std::optional<std::string>>> saved_;
};

TEST(DefaultStoreUrlTest, LeaseholdStoreWins) {
  ScopedEnv env;
  env.Set("LEASEHOLD_STORE", "etcd://h:2379");
  env.Set("XDG_STATE_HOME", "/xdg");
  EXPECT_EQ(DefaultStoreUrl(), "etcd://h:2379");
}

TEST(DefaultStoreUrlTest, EmptyLeaseholdStoreFallsBackToTheStateDirectory) {
  ScopedEnv env;
  env.Set("LEASEHOLD_STORE", "");
  env.Set("XDG_STATE_HOME", "/xdg/state");
  EXPECT_EQ(DefaultStoreUrl(), "sqlite:///xdg/state/leasehold/leases.db");
}

TEST(DefaultStoreUrlTest, XdgStateHomeThenHome) {
  ScopedEnv env;
  env.Set("LEASEHOLD_STORE", std::nullopt);
  env.Set("XDG_STATE_HOME", std::nullopt);
  env.Set("HOME", "/home/ann");
  EXPECT_EQ(DefaultStoreUrl(), "sqlite:///home/ann/.local/state/leasehold/leases.db");
  // A relative XDG_STATE_HOME is invalid per the XDG spec and ignored.
  env.Set("XDG_STATE_HOME", "relative/state");
  EXPECT_EQ(DefaultStoreUrl(), "sqlite:///home/ann/.local/state/leasehold/leases.db");
  env.Set("XDG_STATE_HOME", "/s");
  EXPECT_EQ(DefaultStoreUrl(), "sqlite:///s/leasehold/leases.db");
}

TEST(DefaultStoreUrlTest, NoHomeFallsBackToTmp) {
  ScopedEnv env;
  env.Set("LEASEHOLD_STORE", std::nullopt);
  env.Set("XDG_STATE_HOME", std::nullopt);
  env.Set("HOME", std::nullopt);
  EXPECT_EQ(DefaultStoreUrl(), "sqlite:///tmp/leasehold/leases.db");
}

TEST(DefaultStoreUrlTest, TheDefaultAlwaysParses) {
  ScopedEnv env;
  env.Set("LEASEHOLD_STORE", std::nullopt);
  env.Set("XDG_STATE_HOME", "/with space/state");
  // Not percent-encoded by DefaultStoreUrl, and parsing leaves it as is.
  StoreSpec s = MustParse(DefaultStoreUrl());
  EXPECT_EQ(s.kind, Kind::kSqlite);
  EXPECT_EQ(s.path, "/with space/state/leasehold/leases.db");
}

// --- OpenStore and exit codes --------------------------------------------------

TEST(OpenStoreTest, BackendsNotBuiltInAreUnimplementedAndNameTheBackend) {
#ifdef LEASEHOLD_HAVE_ETCD
  // Built in: an etcd nobody serves is unavailable, naming the endpoint.
  auto etcd = OpenStore(MustParse("etcd://127.0.0.1:1"), Runtime::Create());
  ASSERT_FALSE(etcd.ok());
  EXPECT_EQ(etcd.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(etcd.status().message(), HasSubstr("127.0.0.1:1"));
#else
  auto etcd = OpenStore(MustParse("etcd://127.0.0.1:2379"), Runtime::Create());
  ASSERT_FALSE(etcd.ok());
  EXPECT_EQ(etcd.status().code(), StatusCode::kUnimplemented);
  EXPECT_THAT(etcd.status().message(), HasSubstr("etcd"));
#endif
  EXPECT_EQ(ExitCodeFor(etcd.status()), kExitUnavailable);
  // Kubernetes is built in: a missing kubeconfig is named.
  auto k8s = OpenStore(MustParse("kubernetes:///default?kubeconfig=/nonexistent/kubeconfig"),
                       Runtime::Create());
  ASSERT_FALSE(k8s.ok());
  EXPECT_THAT(k8s.status().message(), HasSubstr("/nonexistent/kubeconfig"));
}

TEST(OpenStoreTest, SqliteCreatesTheDatabaseDirectory) {
  char tmpl[] = "/tmp/leasehold-url-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  const std::string db = dir + "/a/b/leases.db";
  {
    auto store = OpenStore(MustParse("sqlite://" + db), Runtime::Create());
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    EXPECT_EQ((*store)->Describe(), "sqlite://" + db);
  }
  EXPECT_TRUE(std::filesystem::exists(db));
  std::filesystem::remove_all(dir);
}

TEST(OpenStoreTest, SqliteUnderAFileIsUnavailable) {
  auto store = OpenStore(MustParse("sqlite:///proc/self/status/x/leases.db"), Runtime::Create());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(ExitCodeFor(store.status()), kExitUnavailable) << store.status().ToString();
}

TEST(OpenStoreTest, MemoryOpens) {
  auto store = OpenStore(MustParse("memory:"), Runtime::Create());
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->Describe(), "memory:");
}

TEST(ExitCodeForTest, BadInputIsUsageEverythingElseUnavailable) {
  EXPECT_EQ(ExitCodeFor(InvalidArgumentError("x")), kExitUsage);
  EXPECT_EQ(ExitCodeFor(UnavailableError("x")), kExitUnavailable);
  EXPECT_EQ(ExitCodeFor(DeadlineExceededError("x")), kExitUnavailable);
  EXPECT_EQ(ExitCodeFor(DataLossError("x")), kExitUnavailable);
  EXPECT_EQ(ExitCodeFor(UnimplementedError("x")), kExitUnavailable);
  EXPECT_EQ(ExitCodeFor(PermissionDeniedError("x")), kExitUnavailable);
}

}  // namespace
}  // namespace leasehold::cli
