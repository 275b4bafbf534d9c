#include "fake_registry.h"

#include <cstdio>
#include <mutex>
#include <random>

namespace leasehold::kubernetes::testing::detail {
namespace {

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

}  // namespace

bool Selector::Matches(const std::string& object_ns, const std::string& object_name) const {
  if (!url_ns.empty() && object_ns != url_ns) return false;
  if (!url_name.empty() && object_name != url_name) return false;
  if (!ns.empty() && object_ns != ns) return false;
  if (!name.empty() && object_name != name) return false;
  return true;
}

Selector ParseSelector(const std::string& field_selector, std::string url_ns,
                       std::string url_name) {
  Selector s;
  s.url_ns = std::move(url_ns);
  s.url_name = std::move(url_name);
  const std::string& text = field_selector;
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

const json* Registry::Find(const std::string& ns, const std::string& name) const {
  auto it = objects_.find({ns, name});
  return it == objects_.end() ? nullptr : &it->second;
}

std::vector<json> Registry::Select(const Selector& selector) const {
  std::vector<json> items;
  for (const auto& [key, obj] : objects_) {
    if (selector.Matches(key.first, key.second)) items.push_back(obj);
  }
  return items;
}

json Registry::ListObject(std::vector<json> items) const {
  json list = {{"kind", "LeaseList"},
               {"apiVersion", kApiVersion},
               {"metadata", {{"resourceVersion", std::to_string(rv_)}}},
               {"items", json::array()}};
  for (json& o : items) {
    // Items of a list carry no kind/apiVersion of their own.
    o.erase("kind");
    o.erase("apiVersion");
    list["items"].push_back(std::move(o));
  }
  return list;
}

Answer Registry::Create(const std::string& ns, json obj) {
  const std::string name = obj["metadata"]["name"];
  if (objects_.count({ns, name})) {
    return {409, StatusObject(409, "AlreadyExists",
                              "leases.coordination.k8s.io \"" + name + "\" already exists",
                              LeaseDetails(name))};
  }
  if (obj["metadata"].contains("resourceVersion") &&
      !obj["metadata"]["resourceVersion"].get<std::string>().empty()) {
    // The storage layer refuses it; the API server reports that as a 500.
    return {500, StatusObject(500, "InternalError",
                              "resourceVersion should not be set on objects to be created")};
  }
  obj["metadata"].erase("uid");  // the server assigns it
  obj["metadata"].erase("creationTimestamp");
  json stored = Stamp(std::move(obj), ns, name, nullptr);
  objects_[{ns, name}] = stored;
  Emit("ADDED", ns, name, stored);
  return {201, stored};
}

Answer Registry::Update(const std::string& ns, const std::string& name, json obj) {
  auto it = objects_.find({ns, name});
  // Leases are not created by an update (AllowCreateOnUpdate is false).
  if (it == objects_.end()) return {404, NotFound(name)};
  const json& cur = it->second;
  json& m = obj["metadata"];
  const std::string uid = m.value("uid", "");
  if (!uid.empty() && uid != cur["metadata"].value("uid", "")) {
    return {409, Conflict(name, "Precondition failed: UID in precondition: " + uid +
                                    ", UID in object meta: " + cur["metadata"].value("uid", ""))};
  }
  const std::string want = m.value("resourceVersion", "");
  const std::string have = cur["metadata"].value("resourceVersion", "");
  if (!want.empty() && want != have) {
    return {409, Conflict(name,
                          "the object has been modified; please apply your "
                          "changes to the latest version and try again")};
  }
  // An update that changes nothing is not written: same resourceVersion, no event.
  json candidate = obj;
  candidate["kind"] = "Lease";
  candidate["apiVersion"] = kApiVersion;
  candidate["metadata"]["namespace"] = ns;
  candidate["metadata"]["uid"] = cur["metadata"].value("uid", json(nullptr));
  candidate["metadata"]["creationTimestamp"] =
      cur["metadata"].value("creationTimestamp", json(nullptr));
  candidate["metadata"]["resourceVersion"] = have;
  if (candidate == cur) return {200, cur};
  json stored = Stamp(std::move(obj), ns, name, &cur);
  it->second = stored;
  Emit("MODIFIED", ns, name, stored);
  return {200, stored};
}

Answer Registry::Delete(const std::string& ns, const std::string& name, const json& options) {
  auto it = objects_.find({ns, name});
  if (it == objects_.end()) return {404, NotFound(name)};
  const json& meta = it->second["metadata"];
  if (options.contains("preconditions") && options["preconditions"].is_object()) {
    const json& pre = options["preconditions"];
    if (pre.contains("uid") && pre["uid"].is_string() && pre["uid"] != meta["uid"]) {
      return {409, Conflict(name, "Precondition failed: UID in precondition: " +
                                      pre["uid"].get<std::string>() +
                                      ", UID in object meta: " + meta.value("uid", ""))};
    }
    if (pre.contains("resourceVersion") && pre["resourceVersion"].is_string() &&
        pre["resourceVersion"] != meta["resourceVersion"]) {
      return {409, Conflict(name, "Precondition failed: ResourceVersion in precondition: " +
                                      pre["resourceVersion"].get<std::string>() +
                                      ", ResourceVersion in object meta: " +
                                      meta.value("resourceVersion", ""))};
    }
  }
  json last = it->second;
  const std::string uid = meta.value("uid", "");
  objects_.erase(it);
  last["metadata"]["resourceVersion"] = std::to_string(++rv_);
  Emit("DELETED", ns, name, last);
  return {200,
          {{"kind", "Status"},
           {"apiVersion", "v1"},
           {"metadata", json::object()},
           {"status", "Success"},
           {"details", {{"name", name}, {"group", kGroup}, {"kind", "leases"}, {"uid", uid}}}}};
}

std::string Registry::Put(const std::string& ns, const std::string& name, json obj) {
  auto it = objects_.find({ns, name});
  const bool existed = it != objects_.end();
  // Another writer updating the object keeps its identity unless it says
  // otherwise (a test simulating a recreated object passes a new uid).
  if (existed && obj.contains("metadata") && obj["metadata"].is_object()) {
    json& m = obj["metadata"];
    const json& old = it->second["metadata"];
    if (!m.contains("uid")) m["uid"] = old.value("uid", json(RandomUid()));
    if (!m.contains("creationTimestamp")) {
      m["creationTimestamp"] = old.value("creationTimestamp", json(nullptr));
    }
  } else if (existed && !obj.contains("metadata")) {
    obj["metadata"] = {{"uid", it->second["metadata"].value("uid", json(RandomUid()))}};
  }
  json stored = Stamp(std::move(obj), ns, name, nullptr);
  objects_[{ns, name}] = stored;
  Emit(existed ? "MODIFIED" : "ADDED", ns, name, stored);
  return stored["metadata"]["resourceVersion"].get<std::string>();
}

bool Registry::Remove(const std::string& ns, const std::string& name) {
  auto it = objects_.find({ns, name});
  if (it == objects_.end()) return false;
  json last = it->second;
  objects_.erase(it);
  last["metadata"]["resourceVersion"] = std::to_string(++rv_);
  Emit("DELETED", ns, name, last);
  return true;
}

void Registry::Compact() {
  compacted_ = rv_;
  history_.clear();
  changed_.notify_all();
}

void Registry::Emit(const std::string& type, const std::string& ns, const std::string& name,
                    const json& object) {
  history_.push_back({rv_, type, ns, name, object});
  while (history_.size() > history_limit_) {
    compacted_ = history_.front().rv;
    history_.pop_front();
  }
  changed_.notify_all();
}

json Registry::Stamp(json obj, const std::string& ns, const std::string& name,
                     const json* previous) {
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
  m["resourceVersion"] = std::to_string(++rv_);
  return obj;
}

}  // namespace leasehold::kubernetes::testing::detail
