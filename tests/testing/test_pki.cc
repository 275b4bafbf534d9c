#include "testing/test_pki.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdint>
#include <memory>
#include <utility>

#include "testing/temp_dir.h"

namespace leasehold::testing {
namespace {

using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;

Status OpenSslError(const std::string& what) {
  std::string why;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    why += (why.empty() ? "" : "; ") + std::string(buf);
  }
  return InternalError("test PKI: " + what + ": " + (why.empty() ? "unknown OpenSSL error" : why));
}

struct Issued {
  KeyPtr key{nullptr, EVP_PKEY_free};
  CertPtr cert{nullptr, X509_free};
};

bool AddExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) return false;
  const bool ok = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok;
}

enum class Kind { kCa, kServer, kClient };

// Issues a certificate for a fresh key; self-signed when `issuer` is null.
Result<Issued> Issue(Kind kind, const std::string& cn, const std::string& org,
                     const Issued* issuer) {
  Issued out;
  out.key.reset(EVP_EC_gen("P-256"));
  if (!out.key) return OpenSslError("generating a P-256 key");
  out.cert.reset(X509_new());
  X509* x = out.cert.get();
  uint64_t serial = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial) != 1) {
    return OpenSslError("random serial");
  }
  serial >>= 1;  // positive
  bool ok = X509_set_version(x, 2) == 1 &&
            ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), serial) == 1 &&
            X509_gmtime_adj(X509_getm_notBefore(x), -3600) != nullptr &&
            X509_gmtime_adj(X509_getm_notAfter(x), 24 * 3600) != nullptr &&
            X509_set_pubkey(x, out.key.get()) == 1;
  X509_NAME* name = X509_get_subject_name(x);
  const auto* cn_bytes = reinterpret_cast<const unsigned char*>(cn.c_str());
  ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, cn_bytes, -1, -1, 0) == 1;
  if (!org.empty()) {
    const auto* o_bytes = reinterpret_cast<const unsigned char*>(org.c_str());
    ok = ok && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, o_bytes, -1, -1, 0) == 1;
  }
  X509* signer = issuer ? issuer->cert.get() : x;
  ok = ok && X509_set_issuer_name(x, X509_get_subject_name(signer)) == 1;
  ok = ok && AddExtension(x, signer, NID_subject_key_identifier, "hash");
  // A self-signed CA's authority key id is its own subject key id, which
  // exists only now.
  ok = ok && AddExtension(x, signer, NID_authority_key_identifier, "keyid:always");
  switch (kind) {
    case Kind::kCa:
      ok = ok && AddExtension(x, signer, NID_basic_constraints, "critical,CA:TRUE") &&
           AddExtension(x, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
      break;
    case Kind::kServer:
      ok = ok && AddExtension(x, signer, NID_basic_constraints, "critical,CA:FALSE") &&
           AddExtension(x, signer, NID_key_usage, "critical,digitalSignature,keyEncipherment") &&
           AddExtension(x, signer, NID_ext_key_usage, "serverAuth,clientAuth") &&
           AddExtension(x, signer, NID_subject_alt_name, "IP:127.0.0.1,IP:::1,DNS:localhost");
      break;
    case Kind::kClient:
      ok = ok && AddExtension(x, signer, NID_basic_constraints, "critical,CA:FALSE") &&
           AddExtension(x, signer, NID_key_usage, "critical,digitalSignature,keyEncipherment") &&
           AddExtension(x, signer, NID_ext_key_usage, "clientAuth");
      break;
  }
  EVP_PKEY* signing_key = issuer ? issuer->key.get() : out.key.get();
  ok = ok && X509_sign(x, signing_key, EVP_sha256()) > 0;
  if (!ok) return OpenSslError("issuing the certificate for \"" + cn + "\"");
  return out;
}

template <typename WriteFn>
Result<std::string> Pem(WriteFn write, const std::string& what) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || write(bio.get()) != 1) return OpenSslError("writing " + what + " as PEM");
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

Result<std::string> CertPem(const Issued& i) {
  return Pem([&](BIO* b) { return PEM_write_bio_X509(b, i.cert.get()); }, "a certificate");
}
Result<std::string> KeyPem(const Issued& i) {
  return Pem(
      [&](BIO* b) {
        return PEM_write_bio_PrivateKey(b, i.key.get(), nullptr, nullptr, 0, nullptr, nullptr);
      },
      "a private key");
}

Status Save(const std::string& path, const std::string& pem) {
  return WriteFile(path, pem) ? Status::Ok() : InternalError("test PKI: cannot write " + path);
}

}  // namespace

Result<TestPki> TestPki::Create(const std::string& dir, const std::string& client_name,
                                const std::string& client_group) {
  auto ca = Issue(Kind::kCa, "leasehold test CA", "", nullptr);
  if (!ca.ok()) return ca.status();
  auto server = Issue(Kind::kServer, "127.0.0.1", "", &*ca);
  if (!server.ok()) return server.status();
  auto client = Issue(Kind::kClient, client_name, client_group, &*ca);
  if (!client.ok()) return client.status();
  auto other_ca = Issue(Kind::kCa, "leasehold unrelated test CA", "", nullptr);
  if (!other_ca.ok()) return other_ca.status();
  auto foreign = Issue(Kind::kClient, client_name, client_group, &*other_ca);
  if (!foreign.ok()) return foreign.status();

  TestPki pki;
  pki.client_name = client_name;
  pki.client_group = client_group;
  pki.ca_file = dir + "/ca.crt";
  pki.server_cert_file = dir + "/server.crt";
  pki.server_key_file = dir + "/server.key";
  pki.client_cert_file = dir + "/client.crt";
  pki.client_key_file = dir + "/client.key";
  pki.other_ca_file = dir + "/other-ca.crt";
  pki.foreign_client_cert_file = dir + "/foreign-client.crt";
  pki.foreign_client_key_file = dir + "/foreign-client.key";

  struct Out {
    const std::string& path;
    Result<std::string> pem;
    std::string* keep;
  };
  Out outs[] = {
      {pki.ca_file, CertPem(*ca), &pki.ca_pem},
      {pki.server_cert_file, CertPem(*server), nullptr},
      {pki.server_key_file, KeyPem(*server), nullptr},
      {pki.client_cert_file, CertPem(*client), &pki.client_cert_pem},
      {pki.client_key_file, KeyPem(*client), &pki.client_key_pem},
      {pki.other_ca_file, CertPem(*other_ca), &pki.other_ca_pem},
      {pki.foreign_client_cert_file, CertPem(*foreign), nullptr},
      {pki.foreign_client_key_file, KeyPem(*foreign), nullptr},
  };
  for (Out& o : outs) {
    if (!o.pem.ok()) return o.pem.status();
    if (Status s = Save(o.path, *o.pem); !s.ok()) return s;
    if (o.keep) *o.keep = *o.pem;
  }
  return pki;
}

}  // namespace leasehold::testing
