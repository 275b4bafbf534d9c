#include "testing/test_pki.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <memory>
#include <string>

#include "testing/temp_dir.h"

namespace leasehold::testing {
namespace {

using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;

CertPtr Load(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr) return CertPtr(nullptr, X509_free);
  CertPtr cert(PEM_read_X509(f, nullptr, nullptr, nullptr), X509_free);
  std::fclose(f);
  return cert;
}

// 0 when `cert_file` chains to `ca_file` for `purpose`, else OpenSSL's reason code.
int Verify(const std::string& ca_file, const std::string& cert_file, int purpose) {
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  if (X509_STORE_load_file(store.get(), ca_file.c_str()) != 1) return -1;
  CertPtr cert = Load(cert_file);
  if (!cert) return -2;
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                      X509_STORE_CTX_free);
  X509_STORE_CTX_init(ctx.get(), store.get(), cert.get(), nullptr);
  X509_STORE_CTX_set_purpose(ctx.get(), purpose);
  if (X509_verify_cert(ctx.get()) == 1) return 0;
  return X509_STORE_CTX_get_error(ctx.get());
}

TEST(TestPkiTest, CertificatesChainToTheirOwnCaOnly) {
  TempDir dir("pki");
  ASSERT_TRUE(dir.ok());
  auto pki = TestPki::Create(dir.path(), "alice", "admins");
  ASSERT_TRUE(pki.ok()) << pki.status().ToString();

  EXPECT_EQ(Verify(pki->ca_file, pki->server_cert_file, X509_PURPOSE_SSL_SERVER), 0);
  EXPECT_EQ(Verify(pki->ca_file, pki->client_cert_file, X509_PURPOSE_SSL_CLIENT), 0);
  EXPECT_EQ(Verify(pki->other_ca_file, pki->foreign_client_cert_file, X509_PURPOSE_SSL_CLIENT), 0);
  // The wrong CA trusts none of the trusted CA's certificates, and vice versa.
  EXPECT_NE(Verify(pki->other_ca_file, pki->server_cert_file, X509_PURPOSE_SSL_SERVER), 0);
  EXPECT_NE(Verify(pki->ca_file, pki->foreign_client_cert_file, X509_PURPOSE_SSL_CLIENT), 0);
  // A client certificate is not a server certificate.
  EXPECT_NE(Verify(pki->ca_file, pki->client_cert_file, X509_PURPOSE_SSL_SERVER), 0);
}

TEST(TestPkiTest, TheServerCertificateNamesTheLoopbackAddresses) {
  TempDir dir("pki");
  auto pki = TestPki::Create(dir.path());
  ASSERT_TRUE(pki.ok()) << pki.status().ToString();
  CertPtr server = Load(pki->server_cert_file);
  ASSERT_TRUE(server);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(server.get(), "::1", 0), 1);
  EXPECT_EQ(X509_check_host(server.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_ip_asc(server.get(), "10.0.0.1", 0), 1);
}

TEST(TestPkiTest, TheClientCertificateCarriesItsNameAndGroup) {
  TempDir dir("pki");
  auto pki =
      TestPki::Create(dir.path(), "system:serviceaccount:default:sa", "system:serviceaccounts");
  ASSERT_TRUE(pki.ok()) << pki.status().ToString();
  CertPtr client = Load(pki->client_cert_file);
  ASSERT_TRUE(client);
  char cn[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(client.get()), NID_commonName, cn, sizeof cn);
  EXPECT_STREQ(cn, "system:serviceaccount:default:sa");
  char o[256] = {};
  X509_NAME_get_text_by_NID(X509_get_subject_name(client.get()), NID_organizationName, o, sizeof o);
  EXPECT_STREQ(o, "system:serviceaccounts");
  EXPECT_NE(pki->client_key_pem.find("PRIVATE KEY"), std::string::npos);
}

TEST(TempDirTest, WriteFileReplacesAtomicallyAndTheDirectoryIsRemoved) {
  std::string path;
  {
    TempDir dir("tmp");
    ASSERT_TRUE(dir.ok());
    path = dir.path();
    ASSERT_TRUE(WriteFile(dir.File("token"), "first"));
    ASSERT_TRUE(WriteFile(dir.File("token"), "second"));
    FILE* f = std::fopen(dir.File("token").c_str(), "r");
    ASSERT_NE(f, nullptr);
    char buf[16] = {};
    EXPECT_EQ(std::fread(buf, 1, sizeof buf - 1, f), 6u);
    std::fclose(f);
    EXPECT_STREQ(buf, "second");
  }
  FILE* gone = std::fopen(path.c_str(), "r");
  EXPECT_EQ(gone, nullptr);
  if (gone) std::fclose(gone);
}

}  // namespace
}  // namespace leasehold::testing
