#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <utility>

#include "http_client.h"
#include "kit/lease_label.h"
#include "kit/observations.h"
#include "kit/sync_store.h"
#include "kubernetes_watch.h"
#include "lease_codec.h"
#include "leasehold/backends/kubernetes.h"
#include "leasehold/detail/io.h"

namespace leasehold::kubernetes {
namespace {

using json = nlohmann::json;
using detail::ApiStatus;
using detail::HttpClient;
using detail::HttpResponse;
using detail::LeaseObject;

constexpr int64_t kMaxTransitions = std::numeric_limits<int32_t>::max();

int64_t DurationSeconds(Duration ttl) {
  const auto ns = ttl.count();
  int64_t secs = (ns + 999'999'999) / 1'000'000'000;
  return std::clamp<int64_t>(secs, 1, std::numeric_limits<int32_t>::max());
}

std::string UrlEncode(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

// The holder's own fields; everything else in `object` is kept.
void SetSpec(json& object, const std::string& holder, int64_t duration_seconds,
             const std::string& acquire_time, const std::string& renew_time,
             std::optional<int64_t> transitions) {
  if (!object.contains("spec") || !object["spec"].is_object()) object["spec"] = json::object();
  json& spec = object["spec"];
  if (holder.empty()) {
    spec.erase("holderIdentity");
  } else {
    spec["holderIdentity"] = holder;
  }
  if (duration_seconds > 0) spec["leaseDurationSeconds"] = duration_seconds;
  if (!acquire_time.empty()) spec["acquireTime"] = acquire_time;
  if (!renew_time.empty()) spec["renewTime"] = renew_time;
  if (transitions) spec["leaseTransitions"] = *transitions;
}

void SetIncarnation(json& object, const std::string& incarnation) {
  if (!object.contains("metadata") || !object["metadata"].is_object()) {
    object["metadata"] = json::object();
  }
  json& meta = object["metadata"];
  if (!meta.contains("annotations") || !meta["annotations"].is_object()) {
    meta["annotations"] = json::object();
  }
  meta["annotations"][std::string(kIncarnationAnnotation)] = incarnation;
}

// A clean copy of `object` with only what a Lease needs: used when the server
// rejects the object we read (a hostile writer stored invalid fields).
json Minimal(const json& object) {
  json out = {{"apiVersion", "coordination.k8s.io/v1"}, {"kind", "Lease"}};
  json meta = json::object();
  if (object.contains("metadata") && object["metadata"].is_object()) {
    const json& m = object["metadata"];
    for (const char* key : {"name", "namespace", "uid", "resourceVersion"}) {
      if (m.contains(key) && m[key].is_string()) meta[key] = m[key];
    }
  }
  out["metadata"] = std::move(meta);
  out["spec"] = json::object();
  return out;
}

}  // namespace

struct KubernetesStore::State final : kit::SyncOps {
  State(std::shared_ptr<Runtime> rt, KubernetesOptions o, std::string ns_in)
      : runtime(std::move(rt)),
        clock(runtime->clock()),
        options(std::move(o)),
        ns(std::move(ns_in)),
        description("kubernetes://" + ns + " (" + options.credentials.server + ")"),
        incarnation(leasehold::detail::RandomHexId()),
        book(kit::ObservationBook::For(options.share_observations, runtime)),
        book_prefix(options.credentials.server + "|" + ns + "|"),
        collection("/apis/coordination.k8s.io/v1/namespaces/" + ns + "/leases"),
        http(std::make_shared<HttpClient>(options.credentials, clock, options.request_timeout,
                                          options.token_max_age, description)) {}

  const std::shared_ptr<Runtime> runtime;
  const Clock& clock;
  const KubernetesOptions options;
  const std::string ns;
  const std::string description;
  const std::string incarnation;
  const std::shared_ptr<kit::ObservationBook> book;
  const std::string book_prefix;
  const std::string collection;
  const std::shared_ptr<HttpClient> http;

  struct Tenure {
    json object;
    std::string holder;
    std::string uid;
    uint64_t sequence = 0;
    FencingToken token;
  };
  std::mutex mu;
  std::unordered_map<std::string, Tenure> tenures;
  std::unordered_map<std::string, uint64_t> highest;  // name + "/" + uid -> sequence issued

  // The waiters' watch streams, all on one thread (kubernetes_watch.h).
  detail::Watches watches{http, runtime};

  std::string Path(const std::string& name) const { return collection + "/" + name; }
  std::string What(const std::string& name) const {
    return description + ": " + kit::LeaseLabel(name);
  }

  FencingToken Token(const std::string& name, const std::string& uid, uint64_t seq) const {
    return {"kubernetes/" + ns + "/" + name + "/" + uid + "/" + std::to_string(seq), seq};
  }

  // Sends a request. A GET answered 429/5xx with a Retry-After asks the
  // adapter to run the whole operation again then (at most twice; the
  // operation's writes are compare-and-swaps, so repeating it is safe), and
  // the answer stands if that time is past the deadline.
  Result<HttpResponse> Call(kit::SyncCall& call, std::string_view method, const std::string& path,
                            const std::string* body) {
    Result<HttpResponse> r = http->Send(method, path, body, call.deadline);
    if (r.ok() && (r->status == 429 || r->status >= 500) && r->retry_after && method == "GET" &&
        call.attempt < 2) {
      call.RerunAt(clock.Now() + *r->retry_after);
    }
    return r;
  }

  Status HttpError(const HttpResponse& r, std::string_view verb, const std::string& name) const {
    return HttpErrorAbout(r, verb, What(name));
  }
  // `about` starts the message (the store and what the request was for).
  Status HttpErrorAbout(const HttpResponse& r, std::string_view verb,
                        const std::string& about) const {
    const ApiStatus st = detail::DecodeStatus(r.body);
    const std::string words = st.message.empty() ? "" : ": " + st.message;
    const std::string code = std::to_string(r.status);
    switch (r.status) {
      case 401:
        return UnauthenticatedError(
            about + ": the API server refused our credentials (401" + words +
            "); check the token or client certificate of " +
            (options.credentials.source.empty() ? "the credentials" : options.credentials.source));
      case 403:
        return PermissionDeniedError(about + ": RBAC: not allowed to " + std::string(verb) +
                                     " leases.coordination.k8s.io in namespace " + ns + words +
                                     "; grant verbs get, create, update, watch (and list, for "
                                     "listing) on leases (group coordination.k8s.io) in "
                                     "namespace " +
                                     ns);
      case 422:
        return InvalidArgumentError(about + ": the API server rejected the Lease (422 Invalid" +
                                    words + (st.causes.empty() ? "" : "; causes: " + st.causes) +
                                    ")");
      default:
        break;
    }
    if (r.status == 429 || r.status >= 500) {
      std::string retry;
      if (r.retry_after) {
        retry = "; retry after " +
                std::to_string(
                    std::chrono::duration_cast<std::chrono::seconds>(*r.retry_after).count()) +
                "s";
      }
      const std::string msg = about + ": the API server answered " + std::string(verb) +
                              " with HTTP " + code + words + retry;
      return r.status == 429 ? ResourceExhaustedError(msg) : UnavailableError(msg);
    }
    return InternalError(about + ": unexpected HTTP " + code + " to " + std::string(verb) + words);
  }

  Result<LeaseObject> Decode(const HttpResponse& r, const std::string& name) const {
    Result<LeaseObject> obj = detail::DecodeLease(r.body);
    if (!obj.ok())
      return DataLossError(What(name) + ": malformed reply: " + obj.status().message());
    if (obj->name != name) {
      return DataLossError(What(name) + ": the reply is for another object (\"" +
                           obj->name.substr(0, 64) + "\")");
    }
    return obj;
  }

  bool Ours(const LeaseObject& obj, const std::string& holder) const {
    return !holder.empty() && obj.holder == holder && obj.incarnation == incarnation;
  }

  // How long a foreign record must be seen unchanged before it is free.
  Duration Window(const LeaseObject& obj, Duration our_ttl) const {
    std::optional<Duration> stated;
    // Seconds beyond what a Duration holds state "longer than the cap".
    if (obj.duration_seconds && *obj.duration_seconds > 0) {
      stated = *obj.duration_seconds < std::numeric_limits<int32_t>::max()
                   ? Duration(std::chrono::seconds(*obj.duration_seconds))
                   : Duration::max();
    }
    return kit::ObservationWindow(stated, our_ttl, options.max_observe_factor);
  }

  // Records this read; returns for how long this resourceVersion has been seen.
  Duration Observe(const std::string& name, const std::string& resource_version, TimePoint now) {
    return book->Observe(book_prefix + name, resource_version, now);
  }

  Result<AcquireOutcome> Granted(const AcquireRequest& req, const HttpResponse& r,
                                 uint64_t sequence) {
    Result<LeaseObject> obj = Decode(r, req.name);
    if (!obj.ok()) return obj.status();
    Tenure t;
    t.holder = req.holder;
    t.uid = obj->uid;
    t.sequence = sequence;
    t.token = Token(req.name, obj->uid, sequence);
    t.object = std::move(obj->object);
    Acquired out{.token = t.token, .ttl = req.ttl};
    Observe(req.name, obj->uid + "/" + obj->resource_version, clock.Now());
    std::lock_guard lock(mu);
    uint64_t& h = highest[req.name + "/" + t.uid];
    h = std::max(h, sequence);
    tenures[req.name] = std::move(t);
    return AcquireOutcome(std::move(out));
  }

  Result<AcquireOutcome> Create(const AcquireRequest& req, kit::SyncCall& call) {
    const std::string now = detail::FormatMicroTime(clock.WallNow());
    json body = {{"apiVersion", "coordination.k8s.io/v1"},
                 {"kind", "Lease"},
                 {"metadata", {{"name", req.name}, {"namespace", ns}}}};
    SetIncarnation(body, incarnation);
    SetSpec(body, req.holder, DurationSeconds(req.ttl), now, now, 1);
    const std::string text = body.dump();
    Result<HttpResponse> r = Call(call, "POST", collection, &text);
    if (!r.ok()) return r.status().WithContext(kit::LeaseLabel(req.name));
    if (r->status == 200 || r->status == 201) return Granted(req, *r, 1);
    if (r->status == 409) {
      return AbortedError(What(req.name) + ": created concurrently by another client; re-read");
    }
    return HttpError(*r, "create", req.name);
  }

  Result<AcquireOutcome> TakeOver(const AcquireRequest& req, const LeaseObject& obj,
                                  kit::SyncCall& call) {
    int64_t transitions = obj.transitions.value_or(0);
    if (transitions < 0) transitions = 0;
    {
      std::lock_guard lock(mu);
      auto it = highest.find(req.name + "/" + obj.uid);
      if (it != highest.end() && static_cast<int64_t>(it->second) > transitions &&
          it->second <= static_cast<uint64_t>(kMaxTransitions)) {
        transitions = static_cast<int64_t>(it->second);
      }
    }
    if (transitions >= kMaxTransitions) {
      return FailedPreconditionError(
          What(req.name) +
          ": spec.leaseTransitions is at its maximum (2147483647): no higher "
          "fencing sequence can be issued; delete the Lease object to restart "
          "its sequence (fenced resources must then be reset)");
    }
    const int64_t next = transitions + 1;
    const std::string now = detail::FormatMicroTime(clock.WallNow());
    for (int attempt = 0; attempt < 2; ++attempt) {
      json body = attempt == 0 ? obj.object : Minimal(obj.object);
      SetIncarnation(body, incarnation);
      SetSpec(body, req.holder, DurationSeconds(req.ttl), now, now, next);
      const std::string text = body.dump();
      Result<HttpResponse> r = Call(call, "PUT", Path(req.name), &text);
      if (!r.ok()) return r.status().WithContext(kit::LeaseLabel(req.name));
      if (r->status == 200 || r->status == 201) {
        return Granted(req, *r, static_cast<uint64_t>(next));
      }
      if (r->status == 409 || r->status == 404) {
        return AbortedError(What(req.name) + ": the Lease changed between our read and write");
      }
      if (r->status == 422 && attempt == 0) continue;  // drop the fields the server rejects
      return HttpError(*r, "update", req.name);
    }
    return InternalError(What(req.name) + ": unreachable");
  }

  Result<AcquireOutcome> Acquire(const AcquireRequest& req, kit::SyncCall& call) override {
    if (Status s = CheckName(req.name); !s.ok()) return s;
    Result<HttpResponse> r = Call(call, "GET", Path(req.name), nullptr);
    if (!r.ok()) return r.status().WithContext(kit::LeaseLabel(req.name));
    const TimePoint now = clock.Now();
    if (r->status == 404) return Create(req, call);
    if (r->status != 200) return HttpError(*r, "get", req.name);
    Result<LeaseObject> obj = Decode(*r, req.name);
    if (!obj.ok()) return obj.status();
    if (!obj->holder.empty() && !Ours(*obj, req.holder)) {
      const Duration window = Window(*obj, req.ttl);
      const Duration seen = Observe(obj->name, obj->uid + "/" + obj->resource_version, now);
      if (seen < window) {
        return AcquireOutcome(Contended{
            .holder = obj->holder, .version = obj->resource_version, .retry_after = window - seen});
      }
    }
    return TakeOver(req, *obj, call);
  }

  bool StillOurs(const LeaseObject& obj, const std::string& holder, const Tenure& t) const {
    return Ours(obj, holder) && obj.uid == t.uid && obj.transitions &&
           *obj.transitions == static_cast<int64_t>(t.sequence);
  }

  Result<RenewOutcome> RenewOne(const RenewRequest& req, kit::SyncCall& call) {
    Tenure t;
    {
      std::lock_guard lock(mu);
      auto it = tenures.find(req.name);
      if (it == tenures.end() || it->second.token != req.token) {
        return RenewOutcome(
            Lost{LossReason::kTakenOver, What(req.name) + ": this store knows no such tenure"});
      }
      t = it->second;
    }
    for (int attempt = 0; attempt < 2; ++attempt) {
      json body = t.object;
      SetSpec(body, req.holder, DurationSeconds(req.ttl), "",
              detail::FormatMicroTime(clock.WallNow()), std::nullopt);
      const std::string text = body.dump();
      // resourceVersion (and uid) in the body make this PUT a compare-and-swap.
      Result<HttpResponse> r = Call(call, "PUT", Path(req.name), &text);
      if (!r.ok()) return r.status().WithContext(kit::LeaseLabel(req.name));
      if (r->status == 200) {
        Result<LeaseObject> obj = Decode(*r, req.name);
        if (!obj.ok()) return obj.status();
        Observe(req.name, obj->uid + "/" + obj->resource_version, clock.Now());
        Remember(req.name, req.token, std::move(obj->object));
        return RenewOutcome(Renewed{.ttl = req.ttl});
      }
      if (r->status == 404) {
        return RenewOutcome(Lost{LossReason::kDeleted, What(req.name) + ": the Lease was deleted"});
      }
      if (r->status == 401 || r->status == 403) {
        return RenewOutcome(
            Lost{LossReason::kUnauthorized, HttpError(*r, "update", req.name).message()});
      }
      if (r->status == 422) {
        return RenewOutcome(
            Lost{LossReason::kBackendError, HttpError(*r, "update", req.name).message()});
      }
      if (r->status != 409 || attempt > 0) return HttpError(*r, "update", req.name);
      // 409: someone wrote after our last read -- another holder, or our own
      // earlier renewal whose answer we never got. One read tells.
      Result<HttpResponse> g = Call(call, "GET", Path(req.name), nullptr);
      if (!g.ok()) return g.status().WithContext(kit::LeaseLabel(req.name));
      if (g->status == 404) {
        return RenewOutcome(Lost{LossReason::kDeleted, What(req.name) + ": the Lease was deleted"});
      }
      if (g->status != 200) return HttpError(*g, "get", req.name);
      Result<LeaseObject> obj = Decode(*g, req.name);
      if (!obj.ok()) return obj.status();
      if (obj->uid != t.uid) {
        return RenewOutcome(
            Lost{LossReason::kDeleted, What(req.name) + ": the Lease was deleted and recreated"});
      }
      if (!StillOurs(*obj, req.holder, t)) {
        return RenewOutcome(Lost{LossReason::kTakenOver, What(req.name) + ": taken over by \"" +
                                                             obj->holder.substr(0, 253) + "\""});
      }
      // Our earlier write landed. Others may have been observing that version
      // since before this request was sent, so renew once more from it: the
      // tenure is anchored on a write sent by this request.
      t.object = std::move(obj->object);
    }
    return UnavailableError(What(req.name) + ": renewal kept conflicting");
  }

  void Remember(const std::string& name, const FencingToken& token, json object) {
    std::lock_guard lock(mu);
    auto it = tenures.find(name);
    if (it != tenures.end() && it->second.token == token) it->second.object = std::move(object);
  }

  // Clears holderIdentity while the record is `t`'s; OK when it is not.
  Status Clear(const std::string& name, const std::string& holder, std::optional<Tenure> t,
               kit::SyncCall& call, bool breaking) {
    std::optional<json> object;
    if (t) object = t->object;
    for (int attempt = 0; attempt < 4; ++attempt) {
      if (!object) {
        Result<HttpResponse> g = Call(call, "GET", Path(name), nullptr);
        if (!g.ok()) return g.status().WithContext(kit::LeaseLabel(name));
        if (g->status == 404) return Status::Ok();
        if (g->status != 200) return HttpError(*g, "get", name);
        Result<LeaseObject> obj = Decode(*g, name);
        if (!obj.ok()) return obj.status();
        if (obj->holder.empty()) return Status::Ok();
        if (!breaking && (!t || !StillOurs(*obj, holder, *t))) return Status::Ok();
        object = std::move(obj->object);
      }
      json body = std::move(*object);
      object.reset();
      SetSpec(body, "", 0, "", "", std::nullopt);
      const std::string text = body.dump();
      Result<HttpResponse> r = Call(call, "PUT", Path(name), &text);
      if (!r.ok()) return r.status().WithContext(kit::LeaseLabel(name));
      if (r->status == 200 || r->status == 404) return Status::Ok();
      if (r->status != 409) return HttpError(*r, "update", name);
    }
    return AbortedError(What(name) + ": the Lease kept changing while we cleared it");
  }

  Result<LeaseRecord> Inspect(const std::string& name, kit::SyncCall& call) override {
    if (Status s = CheckName(name); !s.ok()) return s;
    Result<HttpResponse> r = Call(call, "GET", Path(name), nullptr);
    if (!r.ok()) return r.status().WithContext(kit::LeaseLabel(name));
    const TimePoint now = clock.Now();
    if (r->status == 404) return NotFoundError(What(name) + ": no Lease object");
    if (r->status != 200) return HttpError(*r, "get", name);
    Result<LeaseObject> obj = Decode(*r, name);
    if (!obj.ok()) return obj.status();
    return Record(*obj, now);
  }

  // Pages of the namespace's Lease collection (limit/continue, in the API
  // server's name order); Lease objects of other programs are leases too.
  Result<std::vector<LeaseRecord>> List(const std::string& prefix, kit::SyncCall& call) override {
    const std::string about = description + ": " + call.what;
    std::vector<LeaseRecord> records;
    std::string next;
    do {
      std::string path = collection + "?limit=500";
      if (!next.empty()) path += "&continue=" + UrlEncode(next);
      Result<HttpResponse> r = Call(call, "GET", path, nullptr);
      if (!r.ok()) return r.status().WithContext(call.what);
      const TimePoint now = clock.Now();
      if (r->status != 200) return HttpErrorAbout(*r, "list", about);
      nlohmann::json list = nlohmann::json::parse(r->body, nullptr, /*allow_exceptions=*/false);
      if (!list.is_object() || !list.contains("items") || !list["items"].is_array()) {
        return DataLossError(about + ": malformed reply: not a LeaseList");
      }
      for (nlohmann::json& item : list["items"]) {
        Result<LeaseObject> obj = detail::DecodeLeaseJson(std::move(item));
        if (!obj.ok()) return DataLossError(about + ": malformed item: " + obj.status().message());
        if (obj->name.starts_with(prefix)) records.push_back(Record(*obj, now));
      }
      next.clear();
      if (const auto m = list.find("metadata"); m != list.end() && m->is_object()) {
        if (const auto c = m->find("continue"); c != m->end() && c->is_string()) {
          next = c->get<std::string>();
        }
      }
    } while (!next.empty());
    std::sort(records.begin(), records.end(),
              [](const LeaseRecord& a, const LeaseRecord& b) { return a.name < b.name; });
    return records;
  }

  // A Lease as Inspect reports it: the time left counts from when this client
  // first saw its version (the expiry rule), read at `now`.
  LeaseRecord Record(const LeaseObject& obj, TimePoint now) {
    LeaseRecord rec;
    rec.name = obj.name;
    rec.holder = obj.holder;
    const int64_t tr = std::max<int64_t>(0, obj.transitions.value_or(0));
    rec.token = Token(obj.name, obj.uid, static_cast<uint64_t>(tr));
    rec.version = obj.resource_version;
    if (obj.acquire_time) rec.acquired_at = *obj.acquire_time;
    if (obj.renew_time) rec.renewed_at = *obj.renew_time;
    if (!obj.holder.empty()) {
      const Duration seen = Observe(obj.name, obj.uid + "/" + obj.resource_version, now);
      if (obj.duration_seconds && *obj.duration_seconds > 0 &&
          *obj.duration_seconds <= std::numeric_limits<int32_t>::max()) {
        const Duration d = std::chrono::seconds(*obj.duration_seconds);
        rec.remaining = std::max(Duration::zero(), d - seen);
      }
    }
    return rec;
  }

  // --- the SyncOps the adapter (kit/sync_store.h) runs ---

  const std::string& describe() const noexcept override { return description; }

  std::vector<Result<RenewOutcome>> Renew(const std::vector<RenewRequest>& batch,
                                          kit::SyncCall& call) override {
    std::vector<Result<RenewOutcome>> out;  // one by one: a batch of one
    for (const RenewRequest& req : batch) out.push_back(RenewOne(req, call));
    return out;
  }

  Status Release(const ReleaseRequest& request, kit::SyncCall& call) override {
    std::optional<Tenure> t;
    {
      std::lock_guard lock(mu);
      auto it = tenures.find(request.name);
      if (it != tenures.end() && it->second.token == request.token) t = it->second;
    }
    if (!t) return Status::Ok();  // no tenure of this token in this store: nothing of ours left
    Status s = Clear(request.name, request.holder, t, call, false);
    if (s.ok()) {
      std::lock_guard lock(mu);
      auto it = tenures.find(request.name);
      if (it != tenures.end() && it->second.token == request.token) tenures.erase(it);
    }
    return s;
  }

  Status Break(const std::string& name, kit::SyncCall& call) override {
    if (Status s = CheckName(name); !s.ok()) return s;
    return Clear(name, "", std::nullopt, call, true);
  }

  Status CheckName(std::string_view name) const {
    if (detail::IsDnsSubdomain(name)) return Status::Ok();
    std::string shown(name.substr(0, 100));
    for (char& c : shown) {
      if (static_cast<unsigned char>(c) < 0x20) c = '?';
    }
    return InvalidArgumentError(
        description + ": lease name \"" + shown + "\"" + (name.size() > 100 ? "..." : "") +
        " is not a valid Lease object name: it must be a DNS-1123 subdomain of at most 253 "
        "characters (lowercase letters, digits, '-' and '.', starting and ending with a letter or "
        "digit)");
  }
};

Result<std::shared_ptr<KubernetesStore>> KubernetesStore::Open(KubernetesOptions options,
                                                               std::shared_ptr<Runtime> runtime) {
  if (options.credentials.server.empty()) {
    return InvalidArgumentError("kubernetes store: credentials.server is empty");
  }
  if (options.credentials.server.rfind("https://", 0) != 0 &&
      options.credentials.server.rfind("http://", 0) != 0) {
    return InvalidArgumentError("kubernetes store: credentials.server \"" +
                                options.credentials.server + "\" is not an http(s) URL");
  }
  if (!options.allow_insecure && options.credentials.server.rfind("http://", 0) == 0) {
    return PermissionDeniedError("kubernetes store: " + options.credentials.server +
                                 " is plain http: the bearer token would cross the network in "
                                 "the clear; set allow_insecure to use it anyway");
  }
  if (!options.allow_insecure && options.credentials.insecure_skip_tls_verify) {
    return PermissionDeniedError(
        "kubernetes store: the credentials skip TLS verification; set allow_insecure to use "
        "them anyway");
  }
  while (!options.credentials.server.empty() && options.credentials.server.back() == '/') {
    options.credentials.server.pop_back();
  }
  if (!(options.max_observe_factor >= 1.0) || !(options.max_observe_factor <= 1000.0)) {
    return InvalidArgumentError("kubernetes store: max_observe_factor must be in [1, 1000], got " +
                                std::to_string(options.max_observe_factor));
  }
  if (options.request_timeout <= Duration::zero()) {
    return InvalidArgumentError("kubernetes store: request_timeout must be > 0");
  }
  if (options.token_max_age <= Duration::zero()) {
    return InvalidArgumentError("kubernetes store: token_max_age must be > 0");
  }
  std::string ns = options.namespace_name;
  if (ns.empty()) ns = options.credentials.namespace_name;
  if (ns.empty()) ns = "default";
  if (!leasehold::detail::IsDnsLabel(ns)) {
    return InvalidArgumentError("kubernetes store: namespace \"" + ns.substr(0, 100) +
                                "\" is not a DNS-1123 label");
  }
  if (!runtime) runtime = Runtime::Default();
  auto state = std::make_shared<State>(runtime, std::move(options), std::move(ns));
  return std::shared_ptr<KubernetesStore>(
      new KubernetesStore(std::move(runtime), std::move(state)));
}

KubernetesStore::KubernetesStore(std::shared_ptr<Runtime> runtime, std::shared_ptr<State> state)
    : Store(std::move(runtime)), state_(std::move(state)) {
  // A thread of the blocking lane for this client's requests (see
  // Runtime::ReserveBlocking): many clients in one process do not queue.
  this->runtime()->ReserveBlocking(1);
}

KubernetesStore::~KubernetesStore() {
  state_->watches.CancelAll();
  runtime()->ReserveBlocking(-1);
}

std::string KubernetesStore::Describe() const { return state_->description; }

StoreCapabilities KubernetesStore::capabilities() const {
  return {.fencing = true, .watch = state_->options.watch};
}

Status KubernetesStore::ValidateName(std::string_view name) const {
  return state_->CheckName(name);
}

// The five operations are synchronous code run by the kit's adapter: on a
// thread that may block, within the deadline, Retry-After on a timer, a
// renewal batch one Lease per call, side by side -- at most kRenewalsAtOnce
// at a time, so that a process holding hundreds of Leases keeps a few
// connections to the API server busy rather than opening hundreds at once.
constexpr size_t kRenewalsAtOnce = 8;

void KubernetesStore::Acquire(AcquireRequest request, AcquireCallback done) {
  kit::SyncAcquire(runtime(), state_, std::move(request), std::move(done));
}
void KubernetesStore::Renew(std::vector<RenewRequest> batch, RenewCallback done) {
  kit::SyncRenew(runtime(), state_, {.renew_one_by_one = true, .max_parallel = kRenewalsAtOnce},
                 std::move(batch), std::move(done));
}
void KubernetesStore::Release(ReleaseRequest request, StatusCallback done) {
  kit::SyncRelease(runtime(), state_, std::move(request), std::move(done));
}
void KubernetesStore::Inspect(std::string name, TimePoint deadline, InspectCallback done) {
  kit::SyncInspect(runtime(), state_, std::move(name), deadline, std::move(done));
}
void KubernetesStore::Break(std::string name, TimePoint deadline, StatusCallback done) {
  kit::SyncBreak(runtime(), state_, std::move(name), deadline, std::move(done));
}
void KubernetesStore::List(std::string prefix, TimePoint deadline, ListCallback done) {
  kit::SyncList(runtime(), state_, std::move(prefix), deadline, std::move(done));
}

WatchId KubernetesStore::Watch(const std::string& name, const std::string& version,
                               Task on_change) {
  if (!state_->options.watch || !ValidateName(name).ok()) return 0;
  return state_->watches.Open(
      state_->collection + "?watch=1&fieldSelector=" + UrlEncode("metadata.name=" + name) +
          "&resourceVersion=" + UrlEncode(version) + "&allowWatchBookmarks=true",
      std::move(on_change));
}

void KubernetesStore::CancelWatch(WatchId id) noexcept { state_->watches.Cancel(id); }

const std::string& KubernetesStore::namespace_name() const noexcept { return state_->ns; }
const std::string& KubernetesStore::incarnation() const noexcept { return state_->incarnation; }

}  // namespace leasehold::kubernetes
