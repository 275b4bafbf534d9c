#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <string>

#include "leasehold/backends/kubernetes_credentials.h"
#include "leasehold/clock.h"
#include "testing/temp_dir.h"

namespace leasehold::kubernetes {
namespace {

using leasehold::testing::TempDir;
using leasehold::testing::WriteFile;
using ::testing::HasSubstr;
using ::testing::Not;
using namespace std::chrono_literals;

constexpr char kCa[] = "-----BEGIN CERTIFICATE-----\nMIIBca\n-----END CERTIFICATE-----\n";
constexpr char kCert[] = "-----BEGIN CERTIFICATE-----\nMIIBcert\n-----END CERTIFICATE-----\n";
constexpr char kKey[] = "-----BEGIN PRIVATE KEY-----\nMIIBkey\n-----END PRIVATE KEY-----\n";

std::string Base64(const std::string& in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int shift : {18, 12, 6, 0}) out += kAlphabet[(n >> shift) & 63];
  }
  if (i + 1 == in.size()) {
    const uint32_t n = uint8_t(in[i]) << 16;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    for (int shift : {18, 12, 6}) out += kAlphabet[(n >> shift) & 63];
    out += "=";
  }
  return out;
}

// A kubeconfig with one context "ctx" -> cluster "c" and user "u".
std::string Kubeconfig(const std::string& cluster_fields, const std::string& user_fields,
                       const std::string& extra = "") {
  return "apiVersion: v1\nkind: Config\ncurrent-context: ctx\n"
         "contexts:\n- name: ctx\n  context:\n    cluster: c\n    user: u\n    namespace: team-a\n"
         "clusters:\n- name: c\n  cluster:\n" +
         cluster_fields + "users:\n- name: u\n  user:\n" + user_fields + extra;
}

class CredentialsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_.File(name);
    std::filesystem::create_directories(std::filesystem::path(path).parent_path());
    EXPECT_TRUE(WriteFile(path, text));
    return path;
  }

  // Options that see only `env` (never the test process's real environment).
  CredentialOptions Options(std::map<std::string, std::string> env = {}) {
    CredentialOptions options;
    options.environment = std::move(env);
    options.service_account_dir = dir_.File("sa");
    return options;
  }

  TempDir dir_{"k8s-credentials"};
};

TEST_F(CredentialsTest, ExplicitNeedsAllThree) {
  const std::string ca = Write("ca.crt", kCa);
  CredentialOptions options = Options();
  options.server = "https://api.example:6443/";
  options.token = "tok-123";
  options.ca_file = ca;
  Result<Credentials> creds = LoadCredentials(options);
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->server, "https://api.example:6443");
  EXPECT_EQ(creds->token, "tok-123");
  EXPECT_EQ(creds->ca_pem, kCa);
  EXPECT_EQ(creds->source, "explicit");

  CredentialOptions half = Options();
  half.server = "https://api.example:6443";
  half.token = "tok-123";
  Result<Credentials> missing_ca = LoadCredentials(half);
  ASSERT_EQ(missing_ca.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(missing_ca.status().message(), HasSubstr("missing: a CA file"));
  EXPECT_THAT(missing_ca.status().message(), Not(HasSubstr("tok-123")));

  CredentialOptions only_ca = Options();
  only_ca.ca_file = ca;
  Result<Credentials> missing_two = LoadCredentials(only_ca);
  ASSERT_EQ(missing_two.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(missing_two.status().message(),
              HasSubstr("missing: the API server URL, a token or token file"));

  CredentialOptions both = options;
  both.token_file = Write("token", "t\n");
  EXPECT_EQ(LoadCredentials(both).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(CredentialsTest, ExplicitRejectsBadParts) {
  CredentialOptions options = Options();
  options.server = "https://api.example:6443";
  options.token_file = Write("token", "from-file\n");
  options.ca_file = Write("not-a-ca", "hello");
  Result<Credentials> not_pem = LoadCredentials(options);
  ASSERT_EQ(not_pem.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(not_pem.status().message(), HasSubstr("PEM"));

  options.ca_file = dir_.File("absent.crt");
  EXPECT_THAT(LoadCredentials(options).status().message(), HasSubstr("absent.crt"));

  options.ca_file = Write("ca.crt", kCa);
  options.server = "http://api.example";
  EXPECT_EQ(LoadCredentials(options).status().code(), StatusCode::kPermissionDenied);
  options.allow_insecure = true;
  EXPECT_TRUE(LoadCredentials(options).ok());
  options.allow_insecure = false;

  for (const char* bad : {"api.example:6443", "https://", "https://:443", "https://h:0",
                          "https://h:65536", "https://h:12x", "https://h/p?q=1", "https://h/a b",
                          "https://[zz::1]:443", "https://user@h", "https://h:"}) {
    options.server = bad;
    EXPECT_EQ(LoadCredentials(options).status().code(), StatusCode::kInvalidArgument) << bad;
  }
  options.server = "https://[fd00::1]:6443/k8s/clusters/c-1";
  Result<Credentials> ok = LoadCredentials(options);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->token_file, options.token_file);
  EXPECT_EQ(ok->token, "");

  options.token_file.clear();
  options.token = "secret-value\r\nX-Injected: 1";
  Result<Credentials> injected = LoadCredentials(options);
  ASSERT_EQ(injected.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(injected.status().message(), Not(HasSubstr("secret-value")));
}

TEST_F(CredentialsTest, ExplicitWinsOverKubeconfigAndInCluster) {
  const std::string kubeconfig =
      Write("config", Kubeconfig("    server: https://from-kubeconfig\n", "    token: k\n"));
  CredentialOptions options = Options({{"KUBECONFIG", kubeconfig},
                                       {"KUBERNETES_SERVICE_HOST", "10.0.0.1"},
                                       {"KUBERNETES_SERVICE_PORT", "443"}});
  options.server = "https://explicit";
  options.token = "t";
  options.ca_file = Write("ca.crt", kCa);
  Result<Credentials> creds = LoadCredentials(options);
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->server, "https://explicit");
}

TEST_F(CredentialsTest, KubeconfigWithTokenAndCaData) {
  const std::string path = Write("kube/config", Kubeconfig("    server: https://10.1.2.3:6443\n"
                                                           "    certificate-authority-data: " +
                                                               Base64(kCa) + "\n",
                                                           "    token: abc.def\n"));
  CredentialOptions options = Options({{"KUBECONFIG", path}});
  Result<Credentials> creds = LoadCredentials(options);
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->server, "https://10.1.2.3:6443");
  EXPECT_EQ(creds->ca_pem, kCa);
  EXPECT_EQ(creds->token, "abc.def");
  EXPECT_EQ(creds->namespace_name, "team-a");
  EXPECT_THAT(creds->source, HasSubstr("context ctx"));
  EXPECT_FALSE(creds->insecure_skip_tls_verify);
}

TEST_F(CredentialsTest, KubeconfigRelativeFilesAndClientCertificate) {
  Write("kube/certs/ca.crt", kCa);
  Write("kube/certs/client.crt", kCert);
  Write("kube/certs/client.key", kKey);
  Write("kube/token", "rotating-token\n");
  const std::string path = Write(
      "kube/config", Kubeconfig("    server: https://h\n    certificate-authority: certs/ca.crt\n",
                                "    tokenFile: token\n"
                                "    client-certificate: certs/client.crt\n"
                                "    client-key: certs/client.key\n"));
  CredentialOptions options = Options();
  options.kubeconfig_path = path;
  Result<Credentials> creds = LoadCredentials(options);
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->ca_pem, kCa);
  EXPECT_EQ(creds->client_cert_pem, kCert);
  EXPECT_EQ(creds->client_key_pem, kKey);
  EXPECT_EQ(creds->token_file, dir_.File("kube/token"));
  TokenSource tokens(*creds);
  EXPECT_EQ(tokens.Current().value(), "rotating-token");

  // Data wins over a file, as in kubectl; a certificate needs its key.
  const std::string data_config =
      Write("kube/data",
            Kubeconfig("    server: https://h\n", "    client-certificate-data: " + Base64(kCert) +
                                                      "\n"
                                                      "    client-certificate: certs/absent.crt\n"
                                                      "    client-key-data: " +
                                                      Base64(kKey) + "\n"));
  options.kubeconfig_path = data_config;
  creds = LoadCredentials(options);
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->client_cert_pem, kCert);

  options.kubeconfig_path =
      Write("kube/halfcert", Kubeconfig("    server: https://h\n",
                                        "    client-certificate-data: " + Base64(kCert) + "\n"));
  Result<Credentials> half = LoadCredentials(options);
  ASSERT_EQ(half.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(half.status().message(), HasSubstr("user 'u'"));
}

TEST_F(CredentialsTest, KubeconfigRefusals) {
  CredentialOptions options = Options();
  struct Case {
    std::string cluster, user;
    StatusCode code;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"    server: https://h\n    insecure-skip-tls-verify: true\n", "    token: t\n",
       StatusCode::kPermissionDenied, "insecure-skip-tls-verify"},
      {"    server: https://h\n", "    exec:\n      command: /bin/evil\n",
       StatusCode::kUnimplemented, "exec"},
      {"    server: https://h\n", "    auth-provider:\n      name: gcp\n",
       StatusCode::kUnimplemented, "auth-provider"},
      {"    server: https://h\n", "    username: a\n    password: b\n", StatusCode::kUnimplemented,
       "basic"},
      {"    server: https://h\n    certificate-authority-data: '!!notbase64'\n", "    token: t\n",
       StatusCode::kInvalidArgument, "certificate-authority-data"},
      {"    server: https://h\n    certificate-authority-data: " + Base64("plain text") + "\n",
       "    token: t\n", StatusCode::kInvalidArgument, "PEM"},
      {"    server: https://h\n    certificate-authority: missing.crt\n", "    token: t\n",
       StatusCode::kInvalidArgument, "missing.crt"},
      {"    insecure-skip-tls-verify: false\n", "    token: t\n", StatusCode::kInvalidArgument,
       "has no server"},
      {"    server: [a, b]\n", "    token: t\n", StatusCode::kInvalidArgument, "server"},
      {"    server: https://h\n    insecure-skip-tls-verify: maybe\n", "    token: t\n",
       StatusCode::kInvalidArgument, "true or false"},
      {"    server: https://h\n", "    tokenFile: nowhere\n", StatusCode::kInvalidArgument,
       "tokenFile"},
  };
  for (const Case& c : cases) {
    options.kubeconfig_path = Write("config", Kubeconfig(c.cluster, c.user));
    Result<Credentials> creds = LoadCredentials(options);
    EXPECT_EQ(creds.status().code(), c.code) << c.cluster << c.user << creds.status().ToString();
    EXPECT_THAT(creds.status().message(), HasSubstr(c.says)) << c.cluster << c.user;
  }

  options.kubeconfig_path = Write(
      "config",
      Kubeconfig("    server: https://h\n    insecure-skip-tls-verify: true\n", "    token: t\n"));
  options.allow_insecure = true;
  Result<Credentials> insecure = LoadCredentials(options);
  ASSERT_TRUE(insecure.ok()) << insecure.status().ToString();
  EXPECT_TRUE(insecure->insecure_skip_tls_verify);
}

TEST_F(CredentialsTest, KubeconfigContexts) {
  const std::string text = Kubeconfig("    server: https://h\n", "    token: t\n",
                                      "- name: other\n  user:\n    token: other-token\n") +
                           "";
  CredentialOptions options = Options();
  options.kubeconfig_path = Write("config", text);
  options.context = "nope";
  Result<Credentials> missing = LoadCredentials(options);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("no context named 'nope'"));

  options.context.clear();
  options.kubeconfig_path =
      Write("config2", "current-context: x\ncontexts:\n- name: x\n  context:\n    cluster: gone\n");
  EXPECT_THAT(LoadCredentials(options).status().message(), HasSubstr("no cluster named 'gone'"));

  options.kubeconfig_path = Write("config3", "contexts: []\n");
  EXPECT_THAT(LoadCredentials(options).status().message(), HasSubstr("no current-context"));

  // A context given on the command line, but no kubeconfig anywhere.
  CredentialOptions no_file = Options({{"HOME", dir_.File("empty-home")}});
  no_file.context = "ctx";
  EXPECT_EQ(LoadCredentials(no_file).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(CredentialsTest, KubeconfigListMergesFirstWins) {
  const std::string first =
      Write("a",
            "current-context: one\ncontexts:\n- name: one\n  context: {cluster: c, user: u}\n"
            "clusters:\n- name: c\n  cluster: {server: 'https://first'}\n");
  const std::string second =
      Write("b",
            "current-context: two\ncontexts:\n- name: two\n  context: {cluster: c, user: u}\n"
            "clusters:\n- name: c\n  cluster: {server: 'https://second'}\n"
            "users:\n- name: u\n  user: {token: from-second}\n");
  CredentialOptions options =
      Options({{"KUBECONFIG", dir_.File("absent") + ":" + first + "::" + second}});
  Result<Credentials> creds = LoadCredentials(options);
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->server, "https://first");
  EXPECT_EQ(creds->token, "from-second");
  options.context = "two";
  EXPECT_EQ(LoadCredentials(options)->server, "https://first");

  CredentialOptions none = Options({{"KUBECONFIG", dir_.File("x") + ":" + dir_.File("y")}});
  Result<Credentials> empty = LoadCredentials(none);
  EXPECT_EQ(empty.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.status().message(), HasSubstr("KUBECONFIG names no existing file"));
}

TEST_F(CredentialsTest, HomeKubeconfigBeforeInCluster) {
  Write("home/.kube/config", Kubeconfig("    server: https://home\n", "    token: t\n"));
  CredentialOptions options = Options({{"HOME", dir_.File("home")},
                                       {"KUBERNETES_SERVICE_HOST", "10.0.0.1"},
                                       {"KUBERNETES_SERVICE_PORT", "443"}});
  Result<Credentials> creds = LoadCredentials(options);
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->server, "https://home");
}

TEST_F(CredentialsTest, InCluster) {
  Write("sa/token", "sa-token\n");
  Write("sa/ca.crt", kCa);
  Write("sa/namespace", "payments\n");
  CredentialOptions options = Options({{"HOME", dir_.File("nohome")},
                                       {"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                                       {"KUBERNETES_SERVICE_PORT", "443"}});
  Result<Credentials> creds = LoadCredentials(options);
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->server, "https://10.96.0.1:443");
  EXPECT_EQ(creds->token_file, dir_.File("sa/token"));
  EXPECT_EQ(creds->ca_pem, kCa);
  EXPECT_EQ(creds->namespace_name, "payments");
  EXPECT_EQ(creds->source, "in-cluster");

  options.environment->at("KUBERNETES_SERVICE_HOST") = "fd00:10:96::1";
  creds = LoadCredentials(options);
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->server, "https://[fd00:10:96::1]:443");

  options.environment->erase("KUBERNETES_SERVICE_PORT");
  EXPECT_THAT(LoadCredentials(options).status().message(), HasSubstr("only one is set"));

  options.environment->emplace("KUBERNETES_SERVICE_PORT", "443");
  std::filesystem::remove(dir_.File("sa/token"));
  EXPECT_THAT(LoadCredentials(options).status().message(), HasSubstr("service account token"));
}

TEST_F(CredentialsTest, NothingConfigured) {
  Result<Credentials> creds = LoadCredentials(Options({{"HOME", dir_.File("nohome")}}));
  EXPECT_EQ(creds.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(creds.status().message(), HasSubstr("KUBERNETES_SERVICE_HOST"));
}

TEST_F(CredentialsTest, HostileKubeconfigTextIsAnErrorNotACrash) {
  const std::vector<std::string> inputs = {
      "",
      ":",
      "- a\n- b\n",
      "current-context: [x]\n",
      "contexts: 5\n",
      "contexts:\n- 7\n",
      "contexts:\n- name: [1]\n",
      "contexts:\n- name: c\n  context: text\n",
      "current-context: c\ncontexts:\n- name: c\n",
      "current-context: c\ncontexts:\n- name: c\n  context: {cluster: [x]}\n",
      "{{{{",
      std::string(200, '[') + std::string(200, ']'),
      std::string(5000, '-') + " x\n",
      "a: &x [*x]\n",
      "a: !!binary zz\n",
      "\xff\xfe\x00\x01",
  };
  for (const std::string& text : inputs) {
    Result<Credentials> creds = ParseKubeconfig(text, dir_.path(), "", false);
    EXPECT_FALSE(creds.ok()) << text;
  }
  EXPECT_EQ(ParseKubeconfig(std::string(2 << 20, ' '), "", "", false).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(TokenSourceTest, FollowsRotation) {
  TempDir dir("k8s-token");
  ASSERT_TRUE(dir.ok());
  const std::string file = dir.File("token");
  ASSERT_TRUE(WriteFile(file, "first\n"));
  Credentials creds;
  creds.token_file = file;
  FakeClock clock;
  TokenSource tokens(creds, &clock, 60s);
  EXPECT_EQ(tokens.Current().value(), "first");
  ASSERT_TRUE(WriteFile(file, "second\n"));
  clock.Advance(59s);
  EXPECT_EQ(tokens.Current().value(), "first");  // cached
  clock.Advance(1s);
  EXPECT_EQ(tokens.Current().value(), "second");  // a minute old: re-read
  ASSERT_TRUE(WriteFile(file, "third\n"));
  tokens.Invalidate();  // after a 401
  EXPECT_EQ(tokens.Current().value(), "third");
  EXPECT_EQ(tokens.reads(), 3u);

  // The kubelet is mid-rewrite: keep the last good token.
  std::filesystem::remove(file);
  tokens.Invalidate();
  EXPECT_EQ(tokens.Current().value(), "third");
}

TEST(TokenSourceTest, InlineTokenAndMissingFile) {
  Credentials inline_creds;
  inline_creds.token = "static";
  TokenSource fixed(inline_creds);
  EXPECT_EQ(fixed.Current().value(), "static");
  EXPECT_EQ(fixed.reads(), 0u);

  Credentials missing;
  missing.token_file = "/nonexistent/leasehold/token";
  TokenSource never(missing);
  Result<std::string> token = never.Current();
  EXPECT_EQ(token.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(token.status().message(), HasSubstr("/nonexistent/leasehold/token"));
}

}  // namespace
}  // namespace leasehold::kubernetes
