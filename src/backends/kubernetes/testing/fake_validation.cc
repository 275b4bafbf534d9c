#include "fake_validation.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <climits>
#include <cstdint>
#include <ctime>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "leasehold/clock.h"

namespace leasehold::kubernetes::testing::detail {
namespace {

bool Digits(std::string_view s, size_t pos, size_t n, int& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

// Parses a metav1.MicroTime as Go's time.Parse with layout
// "2006-01-02T15:04:05.000000Z07:00" does: exactly six fractional digits,
// then Z or a numeric offset. Returns the instant, or nullopt.
std::optional<WallTime> ParseMicroTime(std::string_view s) {
  int year, mon, day, hour, min, sec, frac;
  if (!Digits(s, 0, 4, year) || s.size() < 27 || s[4] != '-' || !Digits(s, 5, 2, mon) ||
      s[7] != '-' || !Digits(s, 8, 2, day) || s[10] != 'T' || !Digits(s, 11, 2, hour) ||
      s[13] != ':' || !Digits(s, 14, 2, min) || s[16] != ':' || !Digits(s, 17, 2, sec) ||
      s[19] != '.' || !Digits(s, 20, 6, frac)) {
    return std::nullopt;
  }
  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 59) {
    return std::nullopt;
  }
  int offset_s = 0;
  const std::string_view zone = s.substr(26);
  if (zone == "Z") {
    offset_s = 0;
  } else {
    int oh, om;
    if (zone.size() != 6 || (zone[0] != '+' && zone[0] != '-') || !Digits(zone, 1, 2, oh) ||
        zone[3] != ':' || !Digits(zone, 4, 2, om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset_s = (zone[0] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = min;
  tm.tm_sec = sec;
  const std::time_t t = timegm(&tm);
  // timegm normalises out-of-range days (Feb 31): reject those.
  std::tm back{};
  gmtime_r(&t, &back);
  if (back.tm_mday != day || back.tm_mon != mon - 1) return std::nullopt;
  return WallTime(std::chrono::seconds(t - offset_s) + std::chrono::microseconds(frac));
}

// A DNS-1123 subdomain, as metadata.name of a Lease must be. Returns the
// validation message, empty when valid.
std::string NameProblem(const std::string& name) {
  if (name.size() > 253) return "must be no more than 253 characters";
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  bool ok = !name.empty();
  size_t label_start = 0;
  for (size_t i = 0; ok && i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      const std::string_view label(name.data() + label_start, i - label_start);
      ok = !label.empty() && alnum(label.front()) && alnum(label.back()) &&
           std::all_of(label.begin(), label.end(), [&](char c) { return alnum(c) || c == '-'; });
      label_start = i + 1;
    }
  }
  if (ok) return "";
  return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
         "'-' or '.', and must start and end with an alphanumeric character (e.g. "
         "'example.com', regex used for validation is "
         "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
}

struct Problem {
  int code = 0;  // 0: none
  std::string message;
  json causes = json::array();
};

const std::set<std::string>& KnownTop() {
  static const std::set<std::string> s = {"apiVersion", "kind", "metadata", "spec"};
  return s;
}
const std::set<std::string>& KnownMeta() {
  static const std::set<std::string> s = {"name",
                                          "generateName",
                                          "namespace",
                                          "selfLink",
                                          "uid",
                                          "resourceVersion",
                                          "generation",
                                          "creationTimestamp",
                                          "deletionTimestamp",
                                          "deletionGracePeriodSeconds",
                                          "labels",
                                          "annotations",
                                          "ownerReferences",
                                          "finalizers",
                                          "managedFields"};
  return s;
}
const std::set<std::string>& KnownSpec() {
  static const std::set<std::string> s = {"holderIdentity", "leaseDurationSeconds", "acquireTime",
                                          "renewTime",      "leaseTransitions",     "strategy",
                                          "preferredHolder"};
  return s;
}

std::string GoType(const json& v) {
  if (v.is_string()) return "string";
  if (v.is_boolean()) return "bool";
  if (v.is_number()) return "number " + v.dump();
  if (v.is_array()) return "array";
  if (v.is_object()) return "object";
  return "null";
}

// Decodes `body` as the API server's JSON decoder would into a Lease: 400 for
// anything that does not decode; unknown fields dropped into `warnings`.
// On success `obj` is the decoded object with null fields removed and times
// normalised to UTC.
Problem Decode(const std::string& body, json& obj, std::vector<std::string>& warnings) {
  auto bad = [](const std::string& m) { return Problem{400, m, json::array()}; };
  const std::string cannot = "Lease in version \"v1\" cannot be handled as a Lease: ";
  try {
    obj = json::parse(body);
  } catch (const json::exception& e) {
    return bad(cannot + "json parse error: " + e.what());
  }
  if (!obj.is_object())
    return bad(cannot + "json: cannot unmarshal " + GoType(obj) + " into Go value of type struct");
  if (!obj.contains("kind") || !obj["kind"].is_string() || obj["kind"].get<std::string>().empty()) {
    return bad("Object 'Kind' is missing in '" + body.substr(0, 200) + "'");
  }
  if (obj["kind"] != "Lease") {
    return bad("the kind in the data (" + obj["kind"].get<std::string>() +
               ") does not match the expected kind (Lease)");
  }
  if (!obj.contains("apiVersion") || obj["apiVersion"] != kApiVersion) {
    return bad("the API version in the data (" +
               (obj.contains("apiVersion") && obj["apiVersion"].is_string()
                    ? obj["apiVersion"].get<std::string>()
                    : std::string()) +
               ") does not match the expected API version (coordination.k8s.io/v1)");
  }
  for (auto it = obj.begin(); it != obj.end();) {
    if (!KnownTop().count(it.key())) {
      warnings.push_back("unknown field \"" + it.key() + "\"");
      it = obj.erase(it);
    } else {
      ++it;
    }
  }
  if (obj.contains("metadata")) {
    json& m = obj["metadata"];
    if (m.is_null()) m = json::object();
    if (!m.is_object())
      return bad(cannot + "json: cannot unmarshal " + GoType(m) +
                 " into Go struct field Lease.metadata of type v1.ObjectMeta");
    for (auto it = m.begin(); it != m.end();) {
      if (!KnownMeta().count(it.key())) {
        warnings.push_back("unknown field \"metadata." + it.key() + "\"");
        it = m.erase(it);
      } else if (it->is_null()) {
        it = m.erase(it);
      } else {
        ++it;
      }
    }
    for (const char* f : {"name", "generateName", "namespace", "uid", "resourceVersion"}) {
      if (m.contains(f) && !m[f].is_string()) {
        return bad(cannot + "json: cannot unmarshal " + GoType(m[f]) +
                   " into Go struct field ObjectMeta.metadata." + f + " of type string");
      }
    }
    for (const char* f : {"labels", "annotations"}) {
      if (!m.contains(f)) continue;
      if (!m[f].is_object())
        return bad(cannot + "json: cannot unmarshal " + GoType(m[f]) +
                   " into Go struct field ObjectMeta.metadata." + f + " of type map[string]string");
      for (auto& [k, v] : m[f].items()) {
        if (!v.is_string())
          return bad(cannot + "json: cannot unmarshal " + GoType(v) +
                     " into Go struct field ObjectMeta.metadata." + f + " of type string");
      }
    }
  } else {
    obj["metadata"] = json::object();
  }
  if (obj.contains("spec")) {
    json& s = obj["spec"];
    if (s.is_null()) s = json::object();
    if (!s.is_object())
      return bad(cannot + "json: cannot unmarshal " + GoType(s) +
                 " into Go struct field Lease.spec of type v1.LeaseSpec");
    for (auto it = s.begin(); it != s.end();) {
      if (!KnownSpec().count(it.key())) {
        warnings.push_back("unknown field \"spec." + it.key() + "\"");
        it = s.erase(it);
      } else if (it->is_null()) {
        it = s.erase(it);
      } else {
        ++it;
      }
    }
    for (const char* f : {"holderIdentity", "strategy", "preferredHolder"}) {
      if (s.contains(f) && !s[f].is_string()) {
        return bad(cannot + "json: cannot unmarshal " + GoType(s[f]) +
                   " into Go struct field LeaseSpec.spec." + f + " of type string");
      }
    }
    for (const char* f : {"leaseDurationSeconds", "leaseTransitions"}) {
      if (!s.contains(f)) continue;
      const json& v = s[f];
      const bool int32 = v.is_number_unsigned() ? v.get<uint64_t>() <= uint64_t{INT32_MAX}
                         : v.is_number_integer()
                             ? v.get<int64_t>() >= INT32_MIN && v.get<int64_t>() <= INT32_MAX
                             : false;
      if (!int32) {
        return bad(cannot + "json: cannot unmarshal " + GoType(v) +
                   " into Go struct field LeaseSpec.spec." + f + " of type int32");
      }
    }
    for (const char* f : {"acquireTime", "renewTime"}) {
      if (!s.contains(f)) continue;
      const json& v = s[f];
      if (!v.is_string()) {
        return bad(cannot + "json: cannot unmarshal " + GoType(v) +
                   " into Go struct field LeaseSpec.spec." + f + " of type string");
      }
      auto t = ParseMicroTime(v.get<std::string>());
      if (!t) {
        return bad(cannot + "parsing time \"" + v.get<std::string>() +
                   "\" as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse \"" +
                   v.get<std::string>() + "\" as a MicroTime");
      }
      s[f] = FormatTime(*t, true);  // the server stores and returns UTC
    }
  } else {
    obj["spec"] = json::object();
  }
  return {};
}

// Validation after decoding (422 with causes).
Problem Validate(const json& obj) {
  Problem p;
  const std::string name = obj["metadata"].value("name", "");
  auto add = [&](const std::string& field, const std::string& reason, const std::string& msg) {
    p.causes.push_back({{"reason", reason}, {"message", msg}, {"field", field}});
  };
  if (name.empty()) {
    add("metadata.name", "FieldValueRequired", "Required value: name or generateName is required");
  } else if (std::string why = NameProblem(name); !why.empty()) {
    add("metadata.name", "FieldValueInvalid", "Invalid value: \"" + name + "\": " + why);
  }
  const json& s = obj["spec"];
  if (s.contains("leaseDurationSeconds") && s["leaseDurationSeconds"].get<int64_t>() <= 0) {
    add("spec.leaseDurationSeconds", "FieldValueInvalid",
        "Invalid value: " + s["leaseDurationSeconds"].dump() + ": must be greater than 0");
  }
  if (s.contains("leaseTransitions") && s["leaseTransitions"].get<int64_t>() < 0) {
    add("spec.leaseTransitions", "FieldValueInvalid",
        "Invalid value: " + s["leaseTransitions"].dump() + ": must be greater than or equal to 0");
  }
  if (s.contains("preferredHolder") && !s.contains("strategy")) {
    add("spec.preferredHolder", "FieldValueForbidden",
        "Forbidden: may only be specified if `strategy` is defined");
  }
  if (p.causes.empty()) return p;
  p.code = 422;
  std::string msg = "Lease.coordination.k8s.io \"" + name + "\" is invalid: ";
  if (p.causes.size() > 1) msg += "[";
  for (size_t i = 0; i < p.causes.size(); ++i) {
    if (i) msg += ", ";
    msg +=
        p.causes[i]["field"].get<std::string>() + ": " + p.causes[i]["message"].get<std::string>();
  }
  if (p.causes.size() > 1) msg += "]";
  p.message = msg;
  return p;
}

}  // namespace

Admission Admit(const std::string& body, Verb verb, const std::string& ns,
                const std::string& name) {
  Admission a;
  json& obj = a.object;
  if (Problem p = Decode(body, obj, a.warnings); p.code) {
    a.warnings.clear();
    a.code = p.code;
    a.status = StatusObject(p.code, ReasonFor(p.code), p.message);
    return a;
  }
  for (std::string& w : a.warnings) {
    std::string quoted;  // an RFC 7234 warn-text: a quoted string
    for (char c : w) {
      if (c == '"' || c == '\\') quoted += '\\';
      quoted += c;
    }
    w = "299 - \"" + quoted + "\"";
  }
  json& m = obj["metadata"];
  if (m.contains("namespace") && m["namespace"] != ns) {
    a.code = 400;
    a.status = StatusObject(400, "BadRequest",
                            "the namespace of the provided object does not match the "
                            "namespace sent on the request");
    return a;
  }
  if (verb == Verb::kUpdate) {
    if (!m.contains("name")) m["name"] = name;
    if (m["name"] != name) {
      a.code = 400;
      a.status = StatusObject(400, "BadRequest",
                              "the name of the object (" + m["name"].get<std::string>() +
                                  ") does not match the name on the URL (" + name + ")");
      return a;
    }
  }
  if (Problem p = Validate(obj); p.code) {
    json details = LeaseDetails(m.value("name", ""));
    details["kind"] = "Lease";
    details["causes"] = p.causes;
    a.code = 422;
    a.status = StatusObject(422, "Invalid", p.message, details);
  }
  return a;
}

std::optional<std::string> DecodeDeleteOptions(const std::string& body, json& options) {
  options = json::object();
  if (body.empty()) return std::nullopt;
  try {
    options = json::parse(body);
  } catch (const json::exception& e) {
    return std::string("DeleteOptions: ") + e.what();
  }
  if (!options.is_object()) return "DeleteOptions must be an object";
  return std::nullopt;
}

}  // namespace leasehold::kubernetes::testing::detail
