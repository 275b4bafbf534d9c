// leasehold: how the Kubernetes backend finds the API server and proves who it
// is -- explicit settings, a kubeconfig, or the pod's service account.
//
// Precedence (the first source that is configured wins; a source that is
// configured but broken is an error, never a silent fall-through):
//   1. Explicit: server URL + (token or token file) + CA file. All three or
//      none: half a credential is kInvalidArgument naming what is missing.
//   2. Kubeconfig: CredentialOptions::kubeconfig_path, else $KUBECONFIG (the
//      files of its ':'-separated list, merged as kubectl merges them: the
//      first file to name a context, cluster or user wins, and the first
//      current-context set wins), else ~/.kube/config when it exists. The current context (or
//      CredentialOptions::context) names a cluster (server, certificate-authority[-data],
//      insecure-skip-tls-verify) and a user (token, tokenFile,
//      client-certificate[-data] + client-key[-data]). Relative file paths are
//      relative to the kubeconfig's directory. Exec and auth-provider plugins
//      are refused (kUnimplemented): leasehold never runs programs named in a
//      file.
//   3. In-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (an
//      IPv6 host is bracketed in the URL), the service account's token,
//      ca.crt and namespace under
//      /var/run/secrets/kubernetes.io/serviceaccount/ (or
//      CredentialOptions::service_account_dir).
//   None configured: kFailedPrecondition saying which three were tried.
//
// TLS is always verified against the CA (or the system trust store when a
// kubeconfig names none). `insecure-skip-tls-verify: true` in a kubeconfig is
// refused with kPermissionDenied unless CredentialOptions::allow_insecure.
//
// Secrets (tokens, keys) never appear in a Status message or in Describe().
//
// Thread-safety: LoadCredentials is reentrant (it reads the environment and
// files only). TokenSource is safe from any thread.
#ifndef LEASEHOLD_BACKENDS_KUBERNETES_CREDENTIALS_H_
#define LEASEHOLD_BACKENDS_KUBERNETES_CREDENTIALS_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "leasehold/clock.h"
#include "leasehold/status.h"

namespace leasehold::kubernetes {

// Everything needed to talk to one API server as one identity.
struct Credentials {
  std::string server{};           // "https://host:port", no trailing slash
  std::string ca_pem{};           // trusted CA bundle; empty: the system store
  std::string client_cert_pem{};  // client certificate (with client_key_pem)
  std::string client_key_pem{};
  std::string token{};                    // bearer token as read at load time
  std::string token_file{};               // when set, the token is re-read from here
  std::string namespace_name{};           // from the context / service account; may be empty
  bool insecure_skip_tls_verify = false;  // only ever true when allowed
  std::string source{};                   // "explicit", "kubeconfig FILE context C", "in-cluster"
};

struct CredentialOptions {
  // Explicit credentials (all of server, token-or-token_file and ca_file, or
  // none of them).
  std::string server{};
  std::string token{};
  std::string token_file{};
  std::string ca_file{};
  // Kubeconfig: this file instead of $KUBECONFIG / ~/.kube/config; and a
  // context instead of current-context.
  std::string kubeconfig_path{};
  std::string context{};
  // Where the in-cluster service account files live.
  std::string service_account_dir = "/var/run/secrets/kubernetes.io/serviceaccount";
  // Honour insecure-skip-tls-verify and plain-http servers (never the
  // default).
  bool allow_insecure = false;
  // For tests: look variables up here instead of in the process environment
  // (KUBECONFIG, HOME, KUBERNETES_SERVICE_HOST, KUBERNETES_SERVICE_PORT).
  std::optional<std::map<std::string, std::string>> environment{};
};

// Finds and reads the credentials, by the precedence above. Errors:
// kInvalidArgument (half an explicit credential, a malformed kubeconfig or
// server URL, a missing referenced file), kNotFound (a context, cluster or user
// the kubeconfig names is not in it), kPermissionDenied (insecure TLS not
// allowed), kUnimplemented (exec/auth-provider plugins), kFailedPrecondition
// (nothing configured). Messages name the file and the field.
Result<Credentials> LoadCredentials(const CredentialOptions& options);

// Parses one kubeconfig's YAML text (the loader's core; exposed for tests and
// the fuzzer). `dir` resolves relative paths; `context` overrides
// current-context. Input over 1 MiB or nested deeper than 64 levels is refused
// before parsing.
Result<Credentials> ParseKubeconfig(std::string_view yaml_text, const std::string& dir,
                                    const std::string& context, bool allow_insecure);

// The bearer token to send now. Projected service-account tokens rotate (the
// kubelet rewrites the file, typically hourly), so a token file is re-read when
// the cached copy is older than `max_age` and at once after Invalidate() (the
// client calls it on a 401 and retries once). A failed re-read keeps the last
// good token and is reported by the next Current() only if no token was ever
// read.
class TokenSource {
 public:
  // `clock` (default RealClock()) must outlive the TokenSource.
  explicit TokenSource(Credentials credentials, const Clock* clock = nullptr,
                       Duration max_age = std::chrono::minutes(1));

  // The current token ("" when the credentials use a client certificate only).
  Result<std::string> Current();
  // Forget the cached token: the next Current() re-reads the file.
  void Invalidate();
  // How many times the file was read (for tests and metrics).
  uint64_t reads() const;

 private:
  const Credentials credentials_;
  const Clock* const clock_;
  const Duration max_age_;
  mutable std::mutex mu_;
  std::string token_{};
  TimePoint read_at_{};
  bool fresh_ = false;
  uint64_t reads_ = 0;
};

}  // namespace leasehold::kubernetes

#endif  // LEASEHOLD_BACKENDS_KUBERNETES_CREDENTIALS_H_
