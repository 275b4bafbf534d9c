// A fake Kubernetes API server for tests: the coordination.k8s.io/v1 Lease
// REST API over real TLS, faithful to what a real API server does with the
// requests a lease client makes.
//
// No API server can run on the machines that test leasehold, so the backend's
// tests run against this one. It is written from the API conventions and the
// observed behaviour of real servers (the team's notes on them), independently of
// the client, so that a misreading of the protocol by one shows up as a test
// failure against the other:
//
//   * Objects: GET, LIST, POST, PUT, DELETE on
//     /apis/coordination.k8s.io/v1/namespaces/NS/leases[/NAME]. One global
//     resourceVersion counter (an opaque decimal string to clients); the server
//     sets uid, creationTimestamp and resourceVersion; a PUT is a
//     compare-and-swap on metadata.resourceVersion (409 Conflict when stale; an
//     empty one updates unconditionally, as Leases allow) and on metadata.uid if
//     given; PUT of a missing object is 404 (Leases are not created on update);
//     POST of an existing name is 409 AlreadyExists; a POST that carries a
//     resourceVersion is a 500, as on a real server. An update that changes
//     nothing keeps the resourceVersion and emits no event.
//   * Decoding (400 BadRequest) and validation (422 Invalid, with causes):
//     kind/apiVersion, field types (int32 durations and transitions, MicroTimes
//     with exactly six fractional digits, normalised to UTC on write), names
//     (DNS-1123 subdomains of at most 253 characters),
//     leaseDurationSeconds > 0, leaseTransitions >= 0. Fields the server does
//     not know are dropped with a `Warning: 299` header, as with the default
//     field validation; fields it knows (labels, annotations, ownerReferences,
//     spec.strategy, spec.preferredHolder, ...) are kept. Errors are Status
//     objects worded as the real server words them.
//   * Watch: `?watch=1` on the collection (or the legacy /watch/ path) with
//     fieldSelector=metadata.name=NAME, resourceVersion, allowWatchBookmarks and
//     timeoutSeconds; chunked JSON lines of ADDED/MODIFIED/DELETED/BOOKMARK
//     events. No or "0" resourceVersion: synthetic ADDED events for the current
//     state first. A resourceVersion older than the compaction point: a 200
//     stream with one ERROR event carrying a 410 Expired Status (or a plain 410
//     response, options.gone_as_http_status, as older servers did).
//   * Authentication: bearer tokens (each maps to a user) and client
//     certificates signed by the server's CA (user = CN); anything else is 401.
//     Authorization: everything is allowed except what Deny() forbids (403,
//     naming the user, verb, resource, group and namespace).
//   * Discovery (/version, /api, /api/v1, /apis, /apis/coordination.k8s.io/v1)
//     and server-side Table output, so kubectl works against it.
//
// Tests change the world behind the client's back through the direct-access
// methods (a foreign or hostile writer), inject faults, and read the request
// log to count API calls.
//
// Thread-safety: every method is safe from any thread.
#ifndef LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_API_SERVER_H_
#define LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_API_SERVER_H_

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "leasehold/clock.h"
#include "leasehold/status.h"
#include "testing/test_pki.h"

namespace leasehold::kubernetes::testing {

namespace detail {
struct ServerState;
class HttpFront;
}  // namespace detail

// What a request asked for, in Kubernetes' authorization vocabulary.
enum class Verb {
  kGet,
  kList,
  kWatch,
  kCreate,
  kUpdate,
  kPatch,
  kDelete,
  kDeleteCollection,
  kDiscovery,  // /version, /api..., /apis...
  kOther,      // anything else (answered 404)
};

// "get", "list", "watch", "create", "update", "patch", "delete",
// "deletecollection", "discovery", "other".
std::string_view VerbName(Verb verb);

struct FakeApiServerOptions {
  // Accepted bearer tokens and the user each authenticates as.
  std::map<std::string, std::string> tokens = {
      {"test-token", "system:serviceaccount:default:leasehold"}};
  // Where to write the PKI files; empty: a temporary directory owned (and
  // removed) by the server.
  std::string pki_dir{};
  // Events kept for watches; a watch from before the oldest kept event gets
  // 410 Gone.
  size_t history_limit = 10000;
  // Answer a too-old watch resourceVersion with a plain HTTP 410 rather than a
  // 200 stream carrying an ERROR event.
  bool gone_as_http_status = false;
  // How often watches that allow bookmarks get a BOOKMARK event; 0: never.
  Duration bookmark_interval{0};
  // Server threads. Each open watch occupies one.
  size_t threads = 64;
};

// One request as the server saw it.
struct RequestRecord {
  std::string method;
  std::string path;
  std::string query;  // raw, without '?'
  Verb verb = Verb::kOther;
  int status = 0;    // as answered; 0 when the connection was cut
  std::string user;  // empty when not authenticated
};

// When a dropped request loses its connection.
enum class DropPoint {
  kBeforeApplying,  // the request has no effect; the client gets no answer
  kAfterApplying,   // the request takes effect; the answer is cut off
};

class FakeApiServer {
 public:
  // Generates the PKI and starts serving on 127.0.0.1 on a free port.
  // kInternal/kUnavailable with the reason if it cannot.
  static Result<std::unique_ptr<FakeApiServer>> Start(FakeApiServerOptions options = {});
  // Stops serving: open watches end, hung requests are cut off.
  ~FakeApiServer();
  FakeApiServer(const FakeApiServer&) = delete;
  FakeApiServer& operator=(const FakeApiServer&) = delete;

  // "https://127.0.0.1:PORT".
  std::string url() const;
  int port() const;
  // The CA that signed the server certificate (pki().ca_file), a client
  // certificate the server accepts, and an unrelated CA.
  const leasehold::testing::TestPki& pki() const;

  // A kubeconfig (YAML) whose current context points at this server with
  // `token` and the CA as file paths, namespace `ns`.
  std::string Kubeconfig(const std::string& token, const std::string& ns = "default") const;

  // --- Availability ---------------------------------------------------------
  // Stops listening (new connections are refused, open ones are cut) until
  // Resume(), which serves again on the same port with the same objects.
  void Suspend();
  // kUnavailable if the port could not be bound again.
  Status Resume();

  // --- Credentials ----------------------------------------------------------
  // Replaces the accepted tokens (rotation: the old ones now get 401).
  void SetTokens(std::map<std::string, std::string> tokens);
  // Forbids `verb` on leases to `user` (403); AllowAll() lifts every denial.
  void Deny(const std::string& user, Verb verb);
  void AllowAll();

  // --- Direct access, as another (possibly hostile) writer --------------------
  // The stored object as JSON text, or nullopt.
  std::optional<std::string> GetLease(const std::string& ns, const std::string& name) const;
  // Stores `json_text` as the object, bypassing authentication, decoding and
  // validation (hostile records). The server still sets kind, apiVersion,
  // metadata.name/namespace/resourceVersion, and metadata.uid and
  // creationTimestamp when absent. Returns the new resourceVersion, or
  // kInvalidArgument if `json_text` is not a JSON object.
  Result<std::string> PutLease(const std::string& ns, const std::string& name,
                               const std::string& json_text);
  // Deletes the object (watchers see DELETED). False if there was none.
  bool DeleteLease(const std::string& ns, const std::string& name);
  // The newest resourceVersion issued.
  std::string resource_version() const;
  // Forgets the event history: watches from any earlier resourceVersion get
  // 410 Gone.
  void Compact();
  // Ends every open watch stream cleanly, as an API server restart or the
  // server-side watch timeout would.
  void CloseWatches();

  // --- Faults on lease requests (discovery is never affected) ----------------
  // Every lease request waits `d` before it is handled.
  void SetDelay(Duration d);
  // The next `n` lease requests (of `only` that verb, if given) are answered
  // with `status` and a matching Status object (429/503 with Retry-After when
  // `retry_after_seconds` is set) without taking effect.
  void FailNext(int n, int status, std::optional<int> retry_after_seconds = std::nullopt,
                std::optional<Verb> only = std::nullopt);
  // The next `n` lease requests (of `only` that verb, if given) lose their
  // connection at `point`.
  void DropNext(int n, DropPoint point = DropPoint::kAfterApplying,
                std::optional<Verb> only = std::nullopt);
  // While on, lease requests are accepted and never answered; turning it off
  // lets them proceed.
  void SetHang(bool on);

  // --- Observation ------------------------------------------------------------
  std::vector<RequestRecord> Requests() const;
  // Lease requests of `verb` since the last ClearRequests().
  size_t CountRequests(Verb verb) const;
  void ClearRequests();
  // Watch streams open now (one that the client closed is noticed within
  // ~50 ms).
  int active_watches() const;
  // TLS connections accepted since start (connection reuse shows as few).
  size_t connections_accepted() const;

 private:
  FakeApiServer() = default;
  std::shared_ptr<detail::ServerState> state_;
  std::unique_ptr<detail::HttpFront> listener_;
};

}  // namespace leasehold::kubernetes::testing

#endif  // LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_API_SERVER_H_
