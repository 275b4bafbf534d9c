#include "fake_api_server.h"

#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "fake_common.h"
#include "fake_discovery.h"
#include "fake_validation.h"
#include "testing/temp_dir.h"

namespace leasehold::kubernetes::testing {

using detail::Admission;
using detail::Conflict;
using detail::DecodeDeleteOptions;
using detail::DiscoveryDocument;
using detail::FormatTime;
using detail::IsDiscoveryPath;
using detail::kApiVersion;
using detail::kGroup;
using detail::kGroupPath;
using detail::LeaseDetails;
using detail::NotFound;
using detail::ReasonFor;
using detail::StatusObject;
using detail::Table;
using detail::WantsTable;
using json = nlohmann::json;
using leasehold::testing::TempDir;
using leasehold::testing::TestPki;

std::string_view VerbName(Verb verb) {
  switch (verb) {
    case Verb::kGet:
      return "get";
    case Verb::kList:
      return "list";
    case Verb::kWatch:
      return "watch";
    case Verb::kCreate:
      return "create";
    case Verb::kUpdate:
      return "update";
    case Verb::kPatch:
      return "patch";
    case Verb::kDelete:
      return "delete";
    case Verb::kDeleteCollection:
      return "deletecollection";
    case Verb::kDiscovery:
      return "discovery";
    case Verb::kOther:
      return "other";
  }
  return "other";
}

namespace {

// An injected failure, as the server would say it.
json InjectedStatus(int status, std::optional<int> retry_after) {
  std::string message;
  json details = nullptr;
  switch (status) {
    case 429:
      message = "Too many requests, please try again later.";
      break;
    case 500:
      message = "Internal error occurred: injected fault";
      details = {{"causes", json::array({{{"message", "injected fault"}}})}};
      break;
    case 503:
      message = "the server is currently unable to handle the request";
      break;
    case 504:
      message = "Timeout: request did not complete within the allotted timeout";
      break;
    default:
      message = "injected fault";
  }
  if (retry_after) {
    if (details.is_null()) details = json::object();
    details["retryAfterSeconds"] = *retry_after;
  }
  return StatusObject(status, ReasonFor(status), message, std::move(details));
}

std::string RandomUid() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard lock(mu);
  const uint64_t a = rng(), b = rng();
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(a >> 32),
                static_cast<unsigned>(a >> 16) & 0xffff, static_cast<unsigned>(a) & 0xfff,
                static_cast<unsigned>((b >> 48) & 0x3fff) | 0x8000,
                static_cast<unsigned long long>(b & 0xffffffffffffULL));
  return buf;
}

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

// True when the peer has closed its end of the connection (watch streams
// notice a client that went away without waiting for the next event).
bool PeerClosed(const SSL* ssl) {
  if (ssl == nullptr) return false;
  const int fd = SSL_get_fd(ssl);
  if (fd < 0) return true;
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

// The server's open TLS connections. httplib keeps an idle keep-alive
// connection's thread waiting for the next request until its keep-alive
// timeout, whatever stop() says; Suspend() therefore shuts the sockets down
// itself, as a dying server's kernel would.
struct Connections {
  std::mutex mu;
  std::set<SSL*> open;
  std::atomic<size_t> accepted{0};

  void ShutdownAll() {
    std::lock_guard lock(mu);
    // Each SSL is freed (under mu, see Forget) before httplib closes its
    // socket, so every fd here is still the connection's own.
    for (SSL* ssl : open) shutdown(SSL_get_fd(ssl), SHUT_RDWR);
  }
};

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

}  // namespace

// ---------------------------------------------------------------------------
// Shared state: objects, history, credentials, faults, log. Outlives any one
// listener (Suspend/Resume).

struct FakeApiServer::State {
  explicit State(FakeApiServerOptions o) : options(std::move(o)), tokens(options.tokens) {}

  const FakeApiServerOptions options;
  std::unique_ptr<TempDir> own_dir;
  TestPki pki;
  int port = 0;
  Connections connections;

  mutable std::mutex mu;
  std::condition_variable cv;  // objects changed, hang lifted, watches closed, stopping

  struct Event {
    uint64_t rv;
    std::string type;
    std::string ns;
    std::string name;
    json object;
  };
  std::map<std::pair<std::string, std::string>, json> objects;  // (ns, name) -> object
  uint64_t rv = 1000;  // arbitrary start: clients must not assume small numbers
  uint64_t compacted = 1000;
  std::deque<Event> history;
  uint64_t watch_epoch = 0;     // CloseWatches()
  uint64_t listener_epoch = 0;  // Suspend(): requests of an older listener end
  int watches_open = 0;

  std::map<std::string, std::string> tokens;
  std::set<std::pair<std::string, Verb>> denied;

  Duration delay{0};
  bool hang = false;
  struct PendingFault {
    int remaining = 0;
    std::optional<Verb> only;
    int status = 0;  // FailNext
    std::optional<int> retry_after;
    std::optional<DropPoint> drop;  // DropNext
  };
  std::vector<PendingFault> faults;

  std::vector<RequestRecord> log;

  // REQUIRES: mu held. Records a change for watchers and wakes them.
  void Emit(const std::string& type, const std::string& ns, const std::string& name,
            const json& object) {
    history.push_back({rv, type, ns, name, object});
    while (history.size() > options.history_limit) {
      compacted = history.front().rv;
      history.pop_front();
    }
    cv.notify_all();
  }

  // REQUIRES: mu held. Sets the server-owned fields of a stored object.
  json Stamp(json obj, const std::string& ns, const std::string& name, const json* previous) {
    obj["kind"] = "Lease";
    obj["apiVersion"] = kApiVersion;
    json& m = obj["metadata"];
    if (!m.is_object()) m = json::object();
    m["name"] = name;
    m["namespace"] = ns;
    if (previous) {
      const json pm = previous->value("metadata", json::object());
      m["uid"] = pm.value("uid", json(RandomUid()));
      m["creationTimestamp"] = pm.value("creationTimestamp", json(nullptr));
    } else {
      if (!m.contains("uid") || !m["uid"].is_string()) m["uid"] = RandomUid();
      if (!m.contains("creationTimestamp")) {
        m["creationTimestamp"] = FormatTime(RealClock().WallNow(), false);
      }
    }
    m["resourceVersion"] = std::to_string(++rv);
    return obj;
  }

  // REQUIRES: mu held. Takes the fault the next lease request of `verb` gets.
  std::optional<PendingFault> TakeFault(Verb verb) {
    for (auto it = faults.begin(); it != faults.end(); ++it) {
      if (it->only && *it->only != verb) continue;
      PendingFault f = *it;
      if (--it->remaining <= 0) faults.erase(it);
      return f;
    }
    return std::nullopt;
  }
};

// ---------------------------------------------------------------------------
// One listening httplib server on the state's port; replaced on Resume().

class FakeApiServer::Listener {
 public:
  Listener(std::shared_ptr<State> state, uint64_t epoch)
      : state_(std::move(state)), epoch_(epoch) {}

  ~Listener() {
    if (!server_) return;
    server_->stop();
    state_->connections.ShutdownAll();
    if (thread_.joinable()) thread_.join();
  }

  // Binds state_->port (a free one when 0).
  Status Start() {
    State& st = *state_;
    server_ = std::make_unique<httplib::SSLServer>([&st](SSL_CTX& ctx) {
      if (SSL_CTX_use_certificate_chain_file(&ctx, st.pki.server_cert_file.c_str()) != 1 ||
          SSL_CTX_use_PrivateKey_file(&ctx, st.pki.server_key_file.c_str(), SSL_FILETYPE_PEM) !=
              1 ||
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
    server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
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
    auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      Handle(req, res);
    };
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
    // right after it was started (a short test) would never be joined.
    while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return Status::Ok();
  }

 private:
  // Where a request is going.
  struct Route {
    Verb verb = Verb::kOther;
    bool lease_api = false;  // under the Lease resource (faults apply)
    std::string ns;          // empty: all namespaces
    std::string name;        // empty: the collection
  };

  static std::vector<std::string> Split(const std::string& path) {
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

  static Route Classify(const httplib::Request& req) {
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
      r.verb = legacy_watch || watch_param ? Verb::kWatch
               : r.name.empty()            ? Verb::kList
                                           : Verb::kGet;
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

  static void Reply(httplib::Response& res, int code, const json& body) {
    res.status = code;
    res.set_content(body.dump(), "application/json");
  }

  void Handle(const httplib::Request& req, httplib::Response& res) {
    State& st = *state_;
    const Route route = Classify(req);
    RequestRecord rec;
    rec.method = req.method;
    rec.path = req.path;
    if (const size_t q = req.target.find('?'); q != std::string::npos)
      rec.query = req.target.substr(q + 1);
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
      return Record(std::move(rec), res.status);
    }
    if (route.verb == Verb::kDiscovery) {
      Reply(res, 200, DiscoveryDocument(req.path, st.port));
      return Record(std::move(rec), res.status);
    }
    if (route.verb == Verb::kOther) {
      if (route.lease_api || req.path.rfind(std::string(kGroupPath) + "/", 0) == 0) {
        Reply(res, 405,
              StatusObject(405, "MethodNotAllowed",
                           "the server does not allow this method on the requested resource"));
      } else {
        Reply(res, 404,
              StatusObject(404, "NotFound", "the server could not find the requested resource"));
      }
      return Record(std::move(rec), res.status);
    }

    // Authorization.
    bool denied;
    {
      std::lock_guard lock(st.mu);
      denied = st.denied.count({rec.user, route.verb}) > 0;
    }
    {
      if (denied) {
        const std::string what = route.name.empty()
                                     ? "leases.coordination.k8s.io"
                                     : "leases.coordination.k8s.io \"" + route.name + "\"";
        std::string msg = what + " is forbidden: User \"" + rec.user + "\" cannot " +
                          std::string(VerbName(route.verb)) +
                          " resource \"leases\" in API group \"coordination.k8s.io\"";
        msg +=
            route.ns.empty() ? " at the cluster scope" : " in the namespace \"" + route.ns + "\"";
        Reply(res, 403, StatusObject(403, "Forbidden", msg, LeaseDetails(route.name)));
        return Record(std::move(rec), res.status);
      }
    }

    // Faults.
    std::optional<State::PendingFault> fault;
    {
      std::unique_lock lock(st.mu);
      if (st.delay > Duration::zero()) {
        const auto until = std::chrono::steady_clock::now() + st.delay;
        st.cv.wait_until(lock, until, [&] { return Stopping(); });
      }
      st.cv.wait(lock, [&] { return !st.hang || Stopping(); });
      if (Stopping()) {
        lock.unlock();  // Record() takes st.mu
        Drop(res);
        return Record(std::move(rec), 0);
      }
      fault = st.TakeFault(route.verb);
    }
    if (fault && fault->status != 0) {
      if (fault->retry_after) res.set_header("Retry-After", std::to_string(*fault->retry_after));
      Reply(res, fault->status, InjectedStatus(fault->status, fault->retry_after));
      return Record(std::move(rec), res.status);
    }
    if (fault && fault->drop == DropPoint::kBeforeApplying) {
      Drop(res);
      return Record(std::move(rec), 0);
    }

    if (route.verb == Verb::kWatch) {
      Watch(req, res, route, rec);
      return;  // recorded by Watch
    }
    switch (route.verb) {
      case Verb::kGet:
        Get(req, res, route);
        break;
      case Verb::kList:
        List(req, res, route);
        break;
      case Verb::kCreate:
        Create(req, res, route);
        break;
      case Verb::kUpdate:
        Update(req, res, route);
        break;
      case Verb::kDelete:
        Delete(req, res, route);
        break;
      default:
        Reply(res, 405,
              StatusObject(405, "MethodNotAllowed",
                           "the server does not allow this method on the requested resource"));
    }
    if (fault && fault->drop == DropPoint::kAfterApplying) {
      Drop(res);
      return Record(std::move(rec), 0);
    }
    Record(std::move(rec), res.status);
  }

  bool Stopping() const { return state_->listener_epoch != epoch_; }

  void Record(RequestRecord rec, int status) {
    rec.status = status;
    std::lock_guard lock(state_->mu);
    state_->log.push_back(std::move(rec));
  }

  // Cuts the connection: headers announce a body that never comes.
  static void Drop(httplib::Response& res) {
    res.status = 200;
    res.body.clear();
    res.set_content_provider(1024, "application/json", [](size_t, size_t, httplib::DataSink& sink) {
      sink.write("{\"kind\":", 8);
      return false;  // httplib closes the connection
    });
  }

  // --- Objects -----------------------------------------------------------------

  void Get(const httplib::Request& req, httplib::Response& res, const Route& r) {
    std::lock_guard lock(state_->mu);
    auto it = state_->objects.find({r.ns, r.name});
    if (it == state_->objects.end()) return Reply(res, 404, NotFound(r.name));
    Reply(
        res, 200,
        WantsTable(req.get_header_value("Accept")) ? Table({it->second}, state_->rv) : it->second);
  }

  // metadata.name=X / metadata.namespace=Y selectors; empty means all.
  struct Selector {
    std::string name;
    std::string ns;
    std::string error;
  };
  static Selector ParseSelector(const std::string& text) {
    Selector s;
    size_t i = 0;
    while (i < text.size()) {
      size_t j = text.find(',', i);
      if (j == std::string::npos) j = text.size();
      const std::string term = text.substr(i, j - i);
      i = j + 1;
      if (term.empty()) continue;
      size_t eq = term.find("==");
      size_t len = 2;
      if (eq == std::string::npos) {
        eq = term.find('=');
        len = 1;
      }
      if (eq == std::string::npos || term.find("!=") != std::string::npos) {
        s.error = "unsupported field selector \"" + term + "\"";
        return s;
      }
      const std::string key = term.substr(0, eq);
      const std::string value = term.substr(eq + len);
      if (key == "metadata.name") {
        s.name = value;
      } else if (key == "metadata.namespace") {
        s.ns = value;
      } else {
        s.error = "field label not supported: " + key;
        return s;
      }
    }
    return s;
  }
  static bool Matches(const Selector& s, const Route& r, const std::string& ns,
                      const std::string& name) {
    if (!r.ns.empty() && ns != r.ns) return false;
    if (!r.name.empty() && name != r.name) return false;
    if (!s.ns.empty() && ns != s.ns) return false;
    if (!s.name.empty() && name != s.name) return false;
    return true;
  }

  void List(const httplib::Request& req, httplib::Response& res, const Route& r) {
    const Selector sel = ParseSelector(req.get_param_value("fieldSelector"));
    if (!sel.error.empty()) return Reply(res, 400, StatusObject(400, "BadRequest", sel.error));
    std::lock_guard lock(state_->mu);
    std::vector<json> items;
    for (const auto& [key, obj] : state_->objects) {
      if (Matches(sel, r, key.first, key.second)) items.push_back(obj);
    }
    if (WantsTable(req.get_header_value("Accept"))) {
      return Reply(res, 200, Table(items, state_->rv));
    }
    json list = {{"kind", "LeaseList"},
                 {"apiVersion", kApiVersion},
                 {"metadata", {{"resourceVersion", std::to_string(state_->rv)}}},
                 {"items", json::array()}};
    for (json& o : items) {
      // Items of a list carry no kind/apiVersion of their own.
      o.erase("kind");
      o.erase("apiVersion");
      list["items"].push_back(std::move(o));
    }
    Reply(res, 200, list);
  }

  // Decodes and validates a create/update body. Returns false after replying
  // with the error.
  static bool Admit(const httplib::Request& req, httplib::Response& res, const Route& r,
                    json& obj) {
    Admission a = detail::Admit(req.body, r.verb, r.ns, r.name);
    for (const std::string& w : a.warnings) res.set_header("Warning", w);
    if (a.code != 0) {
      Reply(res, a.code, a.status);
      return false;
    }
    obj = std::move(a.object);
    return true;
  }

  void Create(const httplib::Request& req, httplib::Response& res, const Route& r) {
    json obj;
    if (!Admit(req, res, r, obj)) return;
    const std::string name = obj["metadata"]["name"];
    State& st = *state_;
    std::lock_guard lock(st.mu);
    if (st.objects.count({r.ns, name})) {
      return Reply(res, 409,
                   StatusObject(409, "AlreadyExists",
                                "leases.coordination.k8s.io \"" + name + "\" already exists",
                                LeaseDetails(name)));
    }
    if (obj["metadata"].contains("resourceVersion") &&
        !obj["metadata"]["resourceVersion"].get<std::string>().empty()) {
      // The storage layer refuses it; the API server reports that as a 500.
      return Reply(res, 500,
                   StatusObject(500, "InternalError",
                                "resourceVersion should not be set on objects to be created"));
    }
    obj["metadata"].erase("uid");  // the server assigns it
    obj["metadata"].erase("creationTimestamp");
    json stored = st.Stamp(std::move(obj), r.ns, name, nullptr);
    st.objects[{r.ns, name}] = stored;
    st.Emit("ADDED", r.ns, name, stored);
    Reply(res, 201, stored);
  }

  void Update(const httplib::Request& req, httplib::Response& res, const Route& r) {
    json obj;
    if (!Admit(req, res, r, obj)) return;
    State& st = *state_;
    std::lock_guard lock(st.mu);
    auto it = st.objects.find({r.ns, r.name});
    // Leases are not created by an update (AllowCreateOnUpdate is false).
    if (it == st.objects.end()) return Reply(res, 404, NotFound(r.name));
    const json& cur = it->second;
    json& m = obj["metadata"];
    const std::string uid = m.value("uid", "");
    if (!uid.empty() && uid != cur["metadata"].value("uid", "")) {
      return Reply(
          res, 409,
          Conflict(r.name, "Precondition failed: UID in precondition: " + uid +
                               ", UID in object meta: " + cur["metadata"].value("uid", "")));
    }
    const std::string want = m.value("resourceVersion", "");
    const std::string have = cur["metadata"].value("resourceVersion", "");
    if (!want.empty() && want != have) {
      return Reply(res, 409,
                   Conflict(r.name,
                            "the object has been modified; please apply your "
                            "changes to the latest version and try again"));
    }
    // An update that changes nothing is not written: same resourceVersion, no event.
    json candidate = obj;
    candidate["kind"] = "Lease";
    candidate["apiVersion"] = kApiVersion;
    candidate["metadata"]["namespace"] = r.ns;
    candidate["metadata"]["uid"] = cur["metadata"].value("uid", json(nullptr));
    candidate["metadata"]["creationTimestamp"] =
        cur["metadata"].value("creationTimestamp", json(nullptr));
    candidate["metadata"]["resourceVersion"] = have;
    if (candidate == cur) return Reply(res, 200, cur);
    json stored = st.Stamp(std::move(obj), r.ns, r.name, &cur);
    it->second = stored;
    st.Emit("MODIFIED", r.ns, r.name, stored);
    Reply(res, 200, stored);
  }

  void Delete(const httplib::Request& req, httplib::Response& res, const Route& r) {
    json options;
    if (std::optional<std::string> error = DecodeDeleteOptions(req.body, options)) {
      return Reply(res, 400, StatusObject(400, "BadRequest", *error));
    }
    State& st = *state_;
    std::lock_guard lock(st.mu);
    auto it = st.objects.find({r.ns, r.name});
    if (it == st.objects.end()) return Reply(res, 404, NotFound(r.name));
    const json& meta = it->second["metadata"];
    if (options.contains("preconditions") && options["preconditions"].is_object()) {
      const json& pre = options["preconditions"];
      if (pre.contains("uid") && pre["uid"].is_string() && pre["uid"] != meta["uid"]) {
        return Reply(res, 409,
                     Conflict(r.name, "Precondition failed: UID in precondition: " +
                                          pre["uid"].get<std::string>() +
                                          ", UID in object meta: " + meta.value("uid", "")));
      }
      if (pre.contains("resourceVersion") && pre["resourceVersion"].is_string() &&
          pre["resourceVersion"] != meta["resourceVersion"]) {
        return Reply(res, 409,
                     Conflict(r.name, "Precondition failed: ResourceVersion in precondition: " +
                                          pre["resourceVersion"].get<std::string>() +
                                          ", ResourceVersion in object meta: " +
                                          meta.value("resourceVersion", "")));
      }
    }
    json last = it->second;
    const std::string uid = meta.value("uid", "");
    st.objects.erase(it);
    last["metadata"]["resourceVersion"] = std::to_string(++st.rv);
    st.Emit("DELETED", r.ns, r.name, last);
    Reply(res, 200,
          {{"kind", "Status"},
           {"apiVersion", "v1"},
           {"metadata", json::object()},
           {"status", "Success"},
           {"details", {{"name", r.name}, {"group", kGroup}, {"kind", "leases"}, {"uid", uid}}}});
  }

  // --- Watch -------------------------------------------------------------------

  static std::string EventLine(const std::string& type, const json& object) {
    return json({{"type", type}, {"object", object}}).dump() + "\n";
  }

  void Watch(const httplib::Request& req, httplib::Response& res, const Route& r,
             RequestRecord rec) {
    State& st = *state_;
    const Selector sel = ParseSelector(req.get_param_value("fieldSelector"));
    if (!sel.error.empty()) {
      Reply(res, 400, StatusObject(400, "BadRequest", sel.error));
      return Record(std::move(rec), res.status);
    }
    const std::string rv_text = req.get_param_value("resourceVersion");
    uint64_t from = 0;
    bool initial = rv_text.empty() || rv_text == "0";
    if (!initial) {
      char* end = nullptr;
      errno = 0;
      from = std::strtoull(rv_text.c_str(), &end, 10);
      if (end == rv_text.c_str() || *end != '\0' || errno == ERANGE) {
        Reply(
            res, 400,
            StatusObject(400, "BadRequest",
                         "resourceVersion: Invalid value: \"" + rv_text +
                             "\": strconv.ParseUint: parsing \"" + rv_text + "\": invalid syntax"));
        return Record(std::move(rec), res.status);
      }
    }
    Duration timeout = Duration::max();
    if (const std::string t = req.get_param_value("timeoutSeconds"); !t.empty()) {
      timeout = std::chrono::seconds(std::atoll(t.c_str()));
    }
    const bool bookmarks = req.get_param_value("allowWatchBookmarks") == "true" ||
                           req.get_param_value("allowWatchBookmarks") == "1";

    std::string first;  // events known at the start
    uint64_t cursor;
    {
      std::lock_guard lock(st.mu);
      if (!initial && from < st.compacted) {
        const json gone = StatusObject(
            410, st.options.gone_as_http_status ? "Gone" : "Expired",
            "too old resource version: " + rv_text + " (" + std::to_string(st.compacted) + ")");
        if (st.options.gone_as_http_status) {
          st.log.push_back(rec);
          st.log.back().status = 410;
          res.status = 410;
          res.set_content(gone.dump(), "application/json");
          return;
        }
        rec.status = 200;
        st.log.push_back(rec);
        res.status = 200;
        res.set_content(EventLine("ERROR", gone), "application/json");
        return;
      }
      if (initial) {
        for (const auto& [key, obj] : st.objects) {
          if (Matches(sel, r, key.first, key.second)) first += EventLine("ADDED", obj);
        }
        cursor = st.rv;
      } else {
        cursor = from;
      }
      rec.status = 200;
      st.log.push_back(rec);
      ++st.watches_open;
    }

    struct Stream {
      std::string pending;
      uint64_t cursor;
      uint64_t watch_epoch;
      std::chrono::steady_clock::time_point end;
      std::chrono::steady_clock::time_point next_bookmark;
    };
    auto stream = std::make_shared<Stream>();
    const auto now = std::chrono::steady_clock::now();
    stream->pending = std::move(first);
    stream->cursor = cursor;
    {
      std::lock_guard lock(st.mu);
      stream->watch_epoch = st.watch_epoch;
    }
    stream->end =
        timeout == Duration::max() ? std::chrono::steady_clock::time_point::max() : now + timeout;
    const Duration every = st.options.bookmark_interval;
    stream->next_bookmark = bookmarks && every > Duration::zero()
                                ? now + every
                                : std::chrono::steady_clock::time_point::max();
    const SSL* ssl = req.ssl;
    auto state = state_;
    res.status = 200;
    res.set_chunked_content_provider(
        "application/json",
        [this, state, stream, sel, r, ssl, every](size_t, httplib::DataSink& sink) {
          State& st = *state;
          while (true) {
            if (!stream->pending.empty()) {
              std::string out = std::move(stream->pending);
              stream->pending.clear();
              if (!sink.write(out.data(), out.size())) return false;
              continue;
            }
            std::unique_lock lock(st.mu);
            const auto now = std::chrono::steady_clock::now();
            if (Stopping() || PeerClosed(ssl)) return false;
            if (st.watch_epoch != stream->watch_epoch || now >= stream->end) {
              lock.unlock();
              sink.done();
              return true;
            }
            if (stream->cursor < st.compacted) {
              // Fell behind a compaction while streaming: the real server ends
              // such a watch with 410 too.
              stream->pending = EventLine(
                  "ERROR",
                  StatusObject(410, "Expired",
                               "too old resource version: " + std::to_string(stream->cursor) +
                                   " (" + std::to_string(st.compacted) + ")"));
              stream->end = now;
              continue;
            }
            for (const State::Event& e : st.history) {
              if (e.rv <= stream->cursor) continue;
              stream->cursor = e.rv;
              if (Matches(sel, r, e.ns, e.name)) stream->pending += EventLine(e.type, e.object);
            }
            stream->cursor = std::max(stream->cursor, st.rv);
            if (!stream->pending.empty()) continue;
            if (now >= stream->next_bookmark) {
              stream->next_bookmark = now + every;
              stream->pending = EventLine(
                  "BOOKMARK", {{"kind", "Lease"},
                               {"apiVersion", kApiVersion},
                               {"metadata", {{"resourceVersion", std::to_string(st.rv)}}}});
              continue;
            }
            // Wake for new events, and every 50 ms to notice a vanished client.
            st.cv.wait_for(lock, std::chrono::milliseconds(50));
          }
        },
        [state](bool) {
          std::lock_guard lock(state->mu);
          --state->watches_open;
        });
  }

  const std::shared_ptr<State> state_;
  const uint64_t epoch_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
};

// ---------------------------------------------------------------------------
// FakeApiServer.

Result<std::unique_ptr<FakeApiServer>> FakeApiServer::Start(FakeApiServerOptions options) {
  std::unique_ptr<FakeApiServer> server(new FakeApiServer());
  server->state_ = std::make_shared<State>(std::move(options));
  State& st = *server->state_;
  std::string dir = st.options.pki_dir;
  if (dir.empty()) {
    st.own_dir = std::make_unique<TempDir>("fake-apiserver");
    if (!st.own_dir->ok())
      return InternalError("fake API server: cannot create a temporary directory");
    dir = st.own_dir->path();
  }
  auto pki = TestPki::Create(dir, "leasehold-client", "leasehold-testers");
  if (!pki.ok()) return pki.status();
  st.pki = std::move(*pki);
  server->listener_ = std::make_unique<Listener>(server->state_, 0);
  if (Status s = server->listener_->Start(); !s.ok()) return s;
  return server;
}

FakeApiServer::~FakeApiServer() { Suspend(); }

std::string FakeApiServer::url() const {
  return "https://127.0.0.1:" + std::to_string(state_->port);
}
int FakeApiServer::port() const { return state_->port; }
const TestPki& FakeApiServer::pki() const { return state_->pki; }

std::string FakeApiServer::Kubeconfig(const std::string& token, const std::string& ns) const {
  return "apiVersion: v1\n"
         "kind: Config\n"
         "clusters:\n"
         "- name: fake\n"
         "  cluster:\n"
         "    server: " +
         url() +
         "\n"
         "    certificate-authority: " +
         state_->pki.ca_file +
         "\n"
         "users:\n"
         "- name: tester\n"
         "  user:\n"
         "    token: " +
         token +
         "\n"
         "contexts:\n"
         "- name: fake\n"
         "  context:\n"
         "    cluster: fake\n"
         "    user: tester\n"
         "    namespace: " +
         ns +
         "\n"
         "current-context: fake\n";
}

void FakeApiServer::Suspend() {
  {
    std::lock_guard lock(state_->mu);
    ++state_->listener_epoch;  // requests in handlers of the old listener end
    state_->cv.notify_all();
  }
  listener_.reset();
}

Status FakeApiServer::Resume() {
  if (listener_) return Status::Ok();
  uint64_t epoch;
  {
    std::lock_guard lock(state_->mu);
    epoch = state_->listener_epoch;
  }
  auto listener = std::make_unique<Listener>(state_, epoch);
  if (Status s = listener->Start(); !s.ok()) return s;
  listener_ = std::move(listener);
  return Status::Ok();
}

void FakeApiServer::SetTokens(std::map<std::string, std::string> tokens) {
  std::lock_guard lock(state_->mu);
  state_->tokens = std::move(tokens);
}

void FakeApiServer::Deny(const std::string& user, Verb verb) {
  std::lock_guard lock(state_->mu);
  state_->denied.insert({user, verb});
}

void FakeApiServer::AllowAll() {
  std::lock_guard lock(state_->mu);
  state_->denied.clear();
}

std::optional<std::string> FakeApiServer::GetLease(const std::string& ns,
                                                   const std::string& name) const {
  std::lock_guard lock(state_->mu);
  auto it = state_->objects.find({ns, name});
  if (it == state_->objects.end()) return std::nullopt;
  return it->second.dump();
}

Result<std::string> FakeApiServer::PutLease(const std::string& ns, const std::string& name,
                                            const std::string& json_text) {
  json obj;
  try {
    obj = json::parse(json_text);
  } catch (const json::exception& e) {
    return InvalidArgumentError(std::string("PutLease: not JSON: ") + e.what());
  }
  if (!obj.is_object()) return InvalidArgumentError("PutLease: not a JSON object");
  State& st = *state_;
  std::lock_guard lock(st.mu);
  auto it = st.objects.find({ns, name});
  const bool existed = it != st.objects.end();
  // Another writer updating the object keeps its identity unless it says
  // otherwise (a test simulating a recreated object passes a new uid).
  if (existed && obj.contains("metadata") && obj["metadata"].is_object()) {
    json& m = obj["metadata"];
    const json& old = it->second["metadata"];
    if (!m.contains("uid")) m["uid"] = old.value("uid", json(RandomUid()));
    if (!m.contains("creationTimestamp"))
      m["creationTimestamp"] = old.value("creationTimestamp", json(nullptr));
  } else if (existed && !obj.contains("metadata")) {
    obj["metadata"] = {{"uid", it->second["metadata"].value("uid", json(RandomUid()))}};
  }
  json stored = st.Stamp(std::move(obj), ns, name, nullptr);
  st.objects[{ns, name}] = stored;
  st.Emit(existed ? "MODIFIED" : "ADDED", ns, name, stored);
  return stored["metadata"]["resourceVersion"].get<std::string>();
}

bool FakeApiServer::DeleteLease(const std::string& ns, const std::string& name) {
  State& st = *state_;
  std::lock_guard lock(st.mu);
  auto it = st.objects.find({ns, name});
  if (it == st.objects.end()) return false;
  json last = it->second;
  st.objects.erase(it);
  last["metadata"]["resourceVersion"] = std::to_string(++st.rv);
  st.Emit("DELETED", ns, name, last);
  return true;
}

std::string FakeApiServer::resource_version() const {
  std::lock_guard lock(state_->mu);
  return std::to_string(state_->rv);
}

void FakeApiServer::Compact() {
  std::lock_guard lock(state_->mu);
  state_->compacted = state_->rv;
  state_->history.clear();
  state_->cv.notify_all();
}

void FakeApiServer::CloseWatches() {
  std::lock_guard lock(state_->mu);
  ++state_->watch_epoch;
  state_->cv.notify_all();
}

void FakeApiServer::SetDelay(Duration d) {
  std::lock_guard lock(state_->mu);
  state_->delay = d;
  state_->cv.notify_all();
}

void FakeApiServer::FailNext(int n, int status, std::optional<int> retry_after_seconds,
                             std::optional<Verb> only) {
  std::lock_guard lock(state_->mu);
  state_->faults.push_back({n, only, status, retry_after_seconds, std::nullopt});
}

void FakeApiServer::DropNext(int n, DropPoint point, std::optional<Verb> only) {
  std::lock_guard lock(state_->mu);
  state_->faults.push_back({n, only, 0, std::nullopt, point});
}

void FakeApiServer::SetHang(bool on) {
  std::lock_guard lock(state_->mu);
  state_->hang = on;
  state_->cv.notify_all();
}

std::vector<RequestRecord> FakeApiServer::Requests() const {
  std::lock_guard lock(state_->mu);
  return state_->log;
}

size_t FakeApiServer::CountRequests(Verb verb) const {
  std::lock_guard lock(state_->mu);
  return static_cast<size_t>(std::count_if(state_->log.begin(), state_->log.end(),
                                           [&](const RequestRecord& r) { return r.verb == verb; }));
}

void FakeApiServer::ClearRequests() {
  std::lock_guard lock(state_->mu);
  state_->log.clear();
}

int FakeApiServer::active_watches() const {
  std::lock_guard lock(state_->mu);
  return state_->watches_open;
}

size_t FakeApiServer::connections_accepted() const { return state_->connections.accepted.load(); }

}  // namespace leasehold::kubernetes::testing
