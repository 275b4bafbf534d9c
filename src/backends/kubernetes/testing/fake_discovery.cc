#include "fake_discovery.h"

namespace leasehold::kubernetes::testing::detail {

bool IsDiscoveryPath(const std::string& path) {
  return path == "/version" || path == "/api" || path == "/api/v1" || path == "/apis" ||
         path == "/apis/coordination.k8s.io" || path == std::string(kGroupPath);
}

json DiscoveryDocument(const std::string& p, int port) {
  if (p == "/version") {
    return {{"major", "1"},
            {"minor", "30"},
            {"gitVersion", "v1.30.0-leasehold-fake"},
            {"gitCommit", "0000000000000000000000000000000000000000"},
            {"gitTreeState", "clean"},
            {"buildDate", "2026-01-01T00:00:00Z"},
            {"goVersion", "go1.22.0"},
            {"compiler", "gc"},
            {"platform", "linux/amd64"}};
  }
  if (p == "/api") {
    return {
        {"kind", "APIVersions"},
        {"versions", {"v1"}},
        {"serverAddressByClientCIDRs",
         {{{"clientCIDR", "0.0.0.0/0"}, {"serverAddress", "127.0.0.1:" + std::to_string(port)}}}}};
  }
  if (p == "/api/v1") {
    return {{"kind", "APIResourceList"},
            {"groupVersion", "v1"},
            {"resources",
             {{{"name", "namespaces"},
               {"singularName", "namespace"},
               {"namespaced", false},
               {"kind", "Namespace"},
               {"verbs", {"get", "list"}},
               {"shortNames", {"ns"}}}}}};
  }
  const json version = {{"groupVersion", kApiVersion}, {"version", "v1"}};
  const json group = {{"name", kGroup}, {"versions", {version}}, {"preferredVersion", version}};
  if (p == "/apis") {
    return {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", {group}}};
  }
  if (p == "/apis/coordination.k8s.io") {
    json g = group;
    g["kind"] = "APIGroup";
    g["apiVersion"] = "v1";
    return g;
  }
  return {
      {"kind", "APIResourceList"},
      {"apiVersion", "v1"},
      {"groupVersion", kApiVersion},
      {"resources",
       {{{"name", "leases"},
         {"singularName", "lease"},
         {"namespaced", true},
         {"kind", "Lease"},
         {"verbs",
          {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}}}}}};
}

bool WantsTable(const std::string& accept) { return accept.find("as=Table") != std::string::npos; }

json Table(const std::vector<json>& items, uint64_t rv) {
  json rows = json::array();
  for (const json& o : items) {
    const json meta = o.value("metadata", json::object());
    const json spec = o.value("spec", json::object());
    const json holder = spec.contains("holderIdentity") ? spec["holderIdentity"] : json("");
    rows.push_back(
        {{"cells", {meta.value("name", ""), holder, meta.value("creationTimestamp", json(""))}},
         {"object",
          {{"kind", "PartialObjectMetadata"},
           {"apiVersion", "meta.k8s.io/v1"},
           {"metadata", meta}}}});
  }
  return {{"kind", "Table"},
          {"apiVersion", "meta.k8s.io/v1"},
          {"metadata", {{"resourceVersion", std::to_string(rv)}}},
          {"columnDefinitions",
           {{{"name", "Name"},
             {"type", "string"},
             {"format", "name"},
             {"description", "Name of the lease"},
             {"priority", 0}},
            {{"name", "Holder"},
             {"type", "string"},
             {"format", ""},
             {"description", "spec.holderIdentity"},
             {"priority", 0}},
            {{"name", "Age"},
             {"type", "date"},
             {"format", ""},
             {"description", "creationTimestamp"},
             {"priority", 0}}}},
          {"rows", rows}};
}

}  // namespace leasehold::kubernetes::testing::detail
