#include "fake_http_front.h"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fake_discovery.h"
#include "fake_faults.h"
#include "fake_registry.h"
#include "fake_state.h"
#include "fake_validation.h"
#include "fake_watch.h"

namespace leasehold::kubernetes::testing::detail {
namespace {

// --- TLS ---------------------------------------------------------------------

// The connection's user from a verified client certificate, or "".
std::string CertificateUser(const SSL* ssl) {
  if (ssl == nullptr) return "";
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr || SSL_get_verify_result(ssl) != X509_V_OK) return "";
  char cn[256] = {};
  if (X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn, sizeof cn) <= 0) {
    return "";
  }
  return cn;
}

void Forget(void* parent, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  if (ptr == nullptr) return;
  auto* conns = static_cast<Connections*>(ptr);
  std::lock_guard lock(conns->mu);
  conns->open.erase(static_cast<SSL*>(parent));
}

int CtxIndex() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}
int SslIndex() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, Forget);
  return index;
}

void TrackHandshakes(const SSL* cssl, int where, int /*ret*/) {
  if ((where & SSL_CB_HANDSHAKE_DONE) == 0) return;
  SSL* ssl = const_cast<SSL*>(cssl);
  auto* conns = static_cast<Connections*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), CtxIndex()));
  if (conns == nullptr || SSL_get_ex_data(ssl, SslIndex()) != nullptr) return;
  std::lock_guard lock(conns->mu);
  SSL_set_ex_data(ssl, SslIndex(), conns);
  conns->open.insert(ssl);
  conns->accepted.fetch_add(1);
}

// --- Routing -----------------------------------------------------------------

// Where a request is going.
struct Route {
  Verb verb = Verb::kOther;
  bool lease_api = false;  // under the Lease resource (faults apply)
  std::string ns;          // empty: all namespaces
  std::string name;        // empty: the collection
};

std::vector<std::string> Split(const std::string& path) {
  std::vector<std::string> parts;
  size_t i = 0;
  while (i < path.size()) {
    while (i < path.size() && path[i] == '/') ++i;
    size_t j = path.find('/', i);
    if (j == std::string::npos) j = path.size();
    if (j > i) parts.push_back(path.substr(i, j - i));
    i = j;
  }
  return parts;
}

Route Classify(const httplib::Request& req) {
  Route r;
  const std::vector<std::string> p = Split(req.path);
  if (IsDiscoveryPath(req.path)) {
    r.verb = req.method == "GET" ? Verb::kDiscovery : Verb::kOther;
    return r;
  }
  // apis / coordination.k8s.io / v1 / [watch /] [namespaces / NS /] leases [/ NAME]
  if (p.size() < 4 || p[0] != "apis" || p[1] != kGroup || p[2] != "v1") return r;
  size_t i = 3;
  bool legacy_watch = false;
  if (p[i] == "watch") {
    legacy_watch = true;
    ++i;
  }
  if (i + 1 < p.size() && p[i] == "namespaces") {
    r.ns = p[i + 1];
    i += 2;
  }
  if (i >= p.size() || p[i] != "leases" || p.size() > i + 2) return r;
  if (i + 1 < p.size()) r.name = p[i + 1];
  if (r.ns.empty() && !r.name.empty()) return r;  // names live in namespaces
  r.lease_api = true;
  const bool watch_param =
      req.get_param_value("watch") == "1" || req.get_param_value("watch") == "true";
  if (req.method == "GET") {
    r.verb = legacy_watch || watch_param ? Verb::kWatch : r.name.empty() ? Verb::kList : Verb::kGet;
  } else if (legacy_watch) {
    r.verb = Verb::kOther;
  } else if (req.method == "POST") {
    r.verb = r.name.empty() ? Verb::kCreate : Verb::kOther;
  } else if (req.method == "PUT") {
    r.verb = r.name.empty() ? Verb::kOther : Verb::kUpdate;
  } else if (req.method == "PATCH") {
    r.verb = r.name.empty() ? Verb::kOther : Verb::kPatch;
  } else if (req.method == "DELETE") {
    r.verb = r.name.empty() ? Verb::kDeleteCollection : Verb::kDelete;
  }
  if (r.verb == Verb::kOther) r.lease_api = false;
  return r;
}

json MethodNotAllowed() {
  return StatusObject(405, "MethodNotAllowed",
                      "the server does not allow this method on the requested resource");
}

// --- Lease requests ------------------------------------------------------------

void Get(ServerState& st, const httplib::Request& req, httplib::Response& res, const Route& r) {
  std::lock_guard lock(st.mu);
  const json* obj = st.registry.Find(r.ns, r.name);
  if (obj == nullptr) return Reply(res, 404, NotFound(r.name));
  Reply(res, 200,
        WantsTable(req.get_header_value("Accept")) ? Table({*obj}, st.registry.rv()) : *obj);
}

void List(ServerState& st, const httplib::Request& req, httplib::Response& res, const Route& r) {
  const Selector sel = ParseSelector(req.get_param_value("fieldSelector"), r.ns, r.name);
  if (!sel.error.empty()) return Reply(res, 400, StatusObject(400, "BadRequest", sel.error));
  // Pages as the API server gives them: `limit` items at most, in key
  // order, and metadata.continue (opaque to clients; here the last key
  // given) while more remain.
  size_t limit = 0;
  if (const std::string l = req.get_param_value("limit"); !l.empty()) {
    if (l.size() > 9 || l.find_first_not_of("0123456789") != std::string::npos) {
      return Reply(res, 400, StatusObject(400, "BadRequest", "limit: must be a positive integer"));
    }
    limit = std::stoul(l);
  }
  const std::string after = req.get_param_value("continue");
  std::lock_guard lock(st.mu);
  std::vector<json> items = st.registry.Select(sel);
  if (!after.empty()) {
    const size_t slash = after.find('/');
    if (slash == std::string::npos) {
      return Reply(res, 400, StatusObject(400, "BadRequest", "continue: malformed token"));
    }
    const std::pair<std::string, std::string> last(after.substr(0, slash), after.substr(slash + 1));
    std::erase_if(items, [&](const json& o) {
      const json& m = o["metadata"];
      return std::make_pair(m.value("namespace", ""), m.value("name", "")) <= last;
    });
  }
  std::string next;
  size_t remaining = 0;
  if (limit > 0 && items.size() > limit) {
    remaining = items.size() - limit;
    items.resize(limit);
    const json& m = items.back()["metadata"];
    next = m.value("namespace", "") + "/" + m.value("name", "");
  }
  if (WantsTable(req.get_header_value("Accept"))) {
    return Reply(res, 200, Table(items, st.registry.rv()));
  }
  json list = st.registry.ListObject(std::move(items));
  if (!next.empty()) {
    list["metadata"]["continue"] = next;
    list["metadata"]["remainingItemCount"] = remaining;
  }
  Reply(res, 200, list);
}

// Decodes and validates a create/update body. Returns nullopt after replying
// with the error.
std::optional<json> Admitted(const httplib::Request& req, httplib::Response& res, const Route& r) {
  Admission a = Admit(req.body, r.verb, r.ns, r.name);
  for (const std::string& w : a.warnings) res.set_header("Warning", w);
  if (a.code != 0) {
    Reply(res, a.code, a.status);
    return std::nullopt;
  }
  return std::move(a.object);
}

void Create(ServerState& st, const httplib::Request& req, httplib::Response& res, const Route& r) {
  std::optional<json> obj = Admitted(req, res, r);
  if (!obj) return;
  std::lock_guard lock(st.mu);
  const Answer a = st.registry.Create(r.ns, std::move(*obj));
  Reply(res, a.code, a.body);
}

void Update(ServerState& st, const httplib::Request& req, httplib::Response& res, const Route& r) {
  std::optional<json> obj = Admitted(req, res, r);
  if (!obj) return;
  std::lock_guard lock(st.mu);
  const Answer a = st.registry.Update(r.ns, r.name, std::move(*obj));
  Reply(res, a.code, a.body);
}

void Delete(ServerState& st, const httplib::Request& req, httplib::Response& res, const Route& r) {
  json options;
  if (std::optional<std::string> error = DecodeDeleteOptions(req.body, options)) {
    return Reply(res, 400, StatusObject(400, "BadRequest", *error));
  }
  std::lock_guard lock(st.mu);
  const Answer a = st.registry.Delete(r.ns, r.name, options);
  Reply(res, a.code, a.body);
}

}  // namespace

void Connections::ShutdownAll() {
  std::lock_guard lock(mu);
  // Each SSL is freed (under mu, see Forget) before httplib closes its
  // socket, so every fd here is still the connection's own.
  for (SSL* ssl : open) shutdown(SSL_get_fd(ssl), SHUT_RDWR);
}

void Reply(httplib::Response& res, int code, const json& body) {
  res.status = code;
  res.set_content(body.dump(), "application/json");
}

HttpFront::HttpFront(std::shared_ptr<ServerState> state, uint64_t epoch)
    : state_(std::move(state)), epoch_(epoch) {}

HttpFront::~HttpFront() {
  if (!server_) return;
  server_->stop();
  state_->connections.ShutdownAll();
  if (thread_.joinable()) thread_.join();
}

Status HttpFront::Start() {
  ServerState& st = *state_;
  server_ = std::make_unique<httplib::SSLServer>([&st](SSL_CTX& ctx) {
    if (SSL_CTX_use_certificate_chain_file(&ctx, st.pki.server_cert_file.c_str()) != 1 ||
        SSL_CTX_use_PrivateKey_file(&ctx, st.pki.server_key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_load_verify_locations(&ctx, st.pki.ca_file.c_str(), nullptr) != 1) {
      return false;
    }
    // Like an API server: a client certificate is requested and verified
    // when presented (VerifyClientCertIfGiven), not required.
    SSL_CTX_set_verify(&ctx, SSL_VERIFY_PEER, nullptr);
    SSL_CTX_set_client_CA_list(&ctx, SSL_load_client_CA_file(st.pki.ca_file.c_str()));
    SSL_CTX_set_ex_data(&ctx, CtxIndex(), &st.connections);
    SSL_CTX_set_info_callback(&ctx, TrackHandshakes);
    return true;
  });
  if (!server_->is_valid()) return InternalError("fake API server: TLS setup failed");
  const size_t threads = st.options.threads;
  server_->new_task_queue = [this, threads] {
    auto* pool = new httplib::ThreadPool(threads);
    pool_ready_.store(true);
    return pool;
  };
  server_->set_keep_alive_max_count(1000000);
  server_->set_keep_alive_timeout(60);
  server_->set_read_timeout(std::chrono::seconds(30));
  server_->set_write_timeout(std::chrono::seconds(30));
  // Responses go out at once: a lease API answers in one round trip.
  server_->set_socket_options([](int sock) {
    int one = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  });
  auto handler = [this](const httplib::Request& req, httplib::Response& res) { Handle(req, res); };
  server_->Get(".*", handler);
  server_->Post(".*", handler);
  server_->Put(".*", handler);
  server_->Delete(".*", handler);
  server_->Patch(".*", handler);
  if (st.port == 0) {
    st.port = server_->bind_to_any_port("127.0.0.1");
    if (st.port <= 0) return UnavailableError("fake API server: cannot bind 127.0.0.1");
  } else if (!server_->bind_to_port("127.0.0.1", st.port)) {
    return UnavailableError("fake API server: cannot bind 127.0.0.1:" + std::to_string(st.port));
  }
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // httplib's stop() does nothing before the listening loop has started,
  // and the loop would then block in accept() forever: a server stopped
  // right after it was started (a short test) would never be joined. The
  // loop starts once the thread pool is built, which with hundreds of
  // threads under a sanitizer on a loaded machine outlasts a client's
  // request timeout: a server resumed mid-test must answer at once.
  while (!pool_ready_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return Status::Ok();
}

void HttpFront::Handle(const httplib::Request& req, httplib::Response& res) {
  ServerState& st = *state_;
  const Route route = Classify(req);
  RequestRecord rec;
  rec.method = req.method;
  rec.path = req.path;
  if (const size_t q = req.target.find('?'); q != std::string::npos) {
    rec.query = req.target.substr(q + 1);
  }
  rec.verb = route.verb;

  // Authentication: a bearer token, else a verified client certificate.
  const std::string auth = req.get_header_value("Authorization");
  {
    std::lock_guard lock(st.mu);
    if (auth.rfind("Bearer ", 0) == 0) {
      auto it = st.tokens.find(auth.substr(7));
      if (it != st.tokens.end()) rec.user = it->second;
    } else if (auth.empty()) {
      rec.user = CertificateUser(req.ssl);
    }
  }
  if (rec.user.empty()) {
    Reply(res, 401, StatusObject(401, "Unauthorized", "Unauthorized"));
    return st.Record(std::move(rec), res.status);
  }
  if (route.verb == Verb::kDiscovery) {
    Reply(res, 200, DiscoveryDocument(req.path, st.port));
    return st.Record(std::move(rec), res.status);
  }
  if (route.verb == Verb::kOther) {
    if (route.lease_api || req.path.rfind(std::string(kGroupPath) + "/", 0) == 0) {
      Reply(res, 405, MethodNotAllowed());
    } else {
      Reply(res, 404,
            StatusObject(404, "NotFound", "the server could not find the requested resource"));
    }
    return st.Record(std::move(rec), res.status);
  }

  // Authorization.
  bool denied;
  {
    std::lock_guard lock(st.mu);
    denied = st.denied.count({rec.user, route.verb}) > 0;
  }
  if (denied) {
    const std::string what = route.name.empty()
                                 ? "leases.coordination.k8s.io"
                                 : "leases.coordination.k8s.io \"" + route.name + "\"";
    std::string msg = what + " is forbidden: User \"" + rec.user + "\" cannot " +
                      std::string(VerbName(route.verb)) +
                      " resource \"leases\" in API group \"coordination.k8s.io\"";
    msg += route.ns.empty() ? " at the cluster scope" : " in the namespace \"" + route.ns + "\"";
    Reply(res, 403, StatusObject(403, "Forbidden", msg, LeaseDetails(route.name)));
    return st.Record(std::move(rec), res.status);
  }

  // Faults.
  const FaultOutcome faults = AwaitFaults(st, epoch_, route.verb);
  if (faults.stopping) {
    CutConnection(res);
    return st.Record(std::move(rec), 0);
  }
  const std::optional<PendingFault>& fault = faults.fault;
  if (fault && fault->status != 0) {
    if (fault->retry_after) res.set_header("Retry-After", std::to_string(*fault->retry_after));
    Reply(res, fault->status, InjectedStatus(fault->status, fault->retry_after));
    return st.Record(std::move(rec), res.status);
  }
  if (fault && fault->drop == DropPoint::kBeforeApplying) {
    CutConnection(res);
    return st.Record(std::move(rec), 0);
  }

  switch (route.verb) {
    case Verb::kWatch:
      return ServeWatch(state_, epoch_, req, res, route.ns, route.name, std::move(rec));
    case Verb::kGet:
      Get(st, req, res, route);
      break;
    case Verb::kList:
      List(st, req, res, route);
      break;
    case Verb::kCreate:
      Create(st, req, res, route);
      break;
    case Verb::kUpdate:
      Update(st, req, res, route);
      break;
    case Verb::kDelete:
      Delete(st, req, res, route);
      break;
    default:
      Reply(res, 405, MethodNotAllowed());
  }
  if (fault && fault->drop == DropPoint::kAfterApplying) {
    CutConnection(res);
    return st.Record(std::move(rec), 0);
  }
  st.Record(std::move(rec), res.status);
}

}  // namespace leasehold::kubernetes::testing::detail
