// Fuzzes the kubeconfig reader with arbitrary bytes: it must never crash, and
// whatever it accepts must be usable as the loader promises (an https server
// URL without a trailing slash, PEM material where a CA or client certificate
// is set, a certificate only with its key, no insecure TLS unless allowed).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "leasehold/backends/kubernetes_credentials.h"

namespace {

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the options; the rest is the file.
  const bool allow_insecure = (data[0] & 1) != 0;
  const std::string context = (data[0] & 2) != 0 ? "ctx" : "";
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  // An empty dir: relative file references resolve against the fuzzer's
  // working directory, where they are absent.
  leasehold::Result<leasehold::kubernetes::Credentials> creds =
      leasehold::kubernetes::ParseKubeconfig(text, "/nonexistent-leasehold-fuzz", context,
                                             allow_insecure);
  if (!creds.ok()) {
    Require(!creds.status().message().empty());
    return 0;
  }
  const std::string& server = creds->server;
  Require(server.starts_with("https://") || (allow_insecure && server.starts_with("http://")));
  Require(!server.ends_with('/'));
  Require(allow_insecure || !creds->insecure_skip_tls_verify);
  Require(creds->client_cert_pem.empty() == creds->client_key_pem.empty());
  if (!creds->ca_pem.empty()) Require(creds->ca_pem.find("-----BEGIN ") != std::string::npos);
  for (unsigned char c : creds->token) Require(c > 0x20 && c < 0x7f);
  return 0;
}
