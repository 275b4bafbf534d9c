#include "lease_codec.h"

#include <cctype>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <limits>
#include <utility>

namespace leasehold::kubernetes::detail {
namespace {

using json = nlohmann::json;

std::optional<int64_t> Int(const json& j) {
  // Unsigned first: is_number_integer() is true for unsigned numbers too, and
  // 2^64-1 read as int64_t would be -1.
  if (j.is_number_unsigned()) {
    const uint64_t u = j.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return std::numeric_limits<int64_t>::max();
    }
    return static_cast<int64_t>(u);
  }
  if (j.is_number_integer()) return j.get<int64_t>();
  return std::nullopt;
}

// nlohmann parses iteratively, but copying and dumping a value recurse: a
// reply nested millions deep (8 MiB of '[') would overflow the stack when we
// write the object back. Real Lease objects nest a few levels.
constexpr int kMaxNesting = 64;
bool TooDeep(std::string_view text) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > kMaxNesting) return true;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return false;
}

// Parses server JSON; discarded (is_discarded()) when invalid or too deep.
json ParseReply(std::string_view text) {
  if (TooDeep(text)) return json(json::value_t::discarded);
  return json::parse(text.begin(), text.end(), nullptr, false);
}

std::string Str(const json& obj, const char* key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

int Digits(std::string_view s, size_t pos, size_t n, bool* ok) {
  int v = 0;
  if (pos + n > s.size()) {
    *ok = false;
    return 0;
  }
  for (size_t i = pos; i < pos + n; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(s[i]))) {
      *ok = false;
      return 0;
    }
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

}  // namespace

Result<LeaseObject> DecodeLease(std::string_view text) {
  json j = ParseReply(text);
  if (j.is_discarded()) {
    return DataLossError("the reply is not JSON (or nests deeper than 64 levels)");
  }
  return DecodeLeaseJson(std::move(j));
}

Result<LeaseObject> DecodeLeaseJson(json object) {
  if (!object.is_object()) return DataLossError("the reply is not a JSON object");
  const std::string kind = Str(object, "kind");
  if (!kind.empty() && kind != "Lease") {
    return DataLossError("expected a Lease object, got kind \"" + kind.substr(0, 64) + "\"");
  }
  auto meta = object.find("metadata");
  if (meta == object.end() || !meta->is_object()) {
    return DataLossError("the Lease object has no metadata");
  }
  LeaseObject out;
  out.name = Str(*meta, "name");
  out.uid = Str(*meta, "uid");
  out.resource_version = Str(*meta, "resourceVersion");
  if (out.name.empty()) return DataLossError("the Lease object has no metadata.name");
  if (out.resource_version.empty()) {
    return DataLossError("the Lease object has no metadata.resourceVersion");
  }
  if (out.uid.empty()) return DataLossError("the Lease object has no metadata.uid");
  auto annotations = meta->find("annotations");
  if (annotations != meta->end()) {
    out.incarnation = Str(*annotations, "leasehold.io/incarnation");
  }
  auto spec = object.find("spec");
  if (spec != object.end() && spec->is_object()) {
    out.holder = Str(*spec, "holderIdentity");
    if (auto d = spec->find("leaseDurationSeconds"); d != spec->end())
      out.duration_seconds = Int(*d);
    if (auto t = spec->find("leaseTransitions"); t != spec->end()) out.transitions = Int(*t);
    out.acquire_time = ParseMicroTime(Str(*spec, "acquireTime"));
    out.renew_time = ParseMicroTime(Str(*spec, "renewTime"));
  }
  out.object = std::move(object);
  return out;
}

std::string FormatMicroTime(WallTime t) {
  using namespace std::chrono;
  const auto us = duration_cast<microseconds>(t.time_since_epoch()).count();
  int64_t secs = us / 1000000;
  int64_t frac = us % 1000000;
  if (frac < 0) {
    frac += 1000000;
    --secs;
  }
  const std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06lldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long long>(frac));
  return buf;
}

std::optional<WallTime> ParseMicroTime(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm)
  bool ok = true;
  const int year = Digits(s, 0, 4, &ok);
  if (!ok || s.size() < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') ||
      s[13] != ':' || s[16] != ':') {
    return std::nullopt;
  }
  const int mon = Digits(s, 5, 2, &ok), day = Digits(s, 8, 2, &ok);
  const int hour = Digits(s, 11, 2, &ok), min = Digits(s, 14, 2, &ok), sec = Digits(s, 17, 2, &ok);
  if (!ok || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60) {
    return std::nullopt;
  }
  size_t pos = 19;
  int64_t micros = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int n = 0;
    while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
      if (n < 6) micros = micros * 10 + (s[pos] - '0');
      ++n;
      ++pos;
    }
    if (n == 0) return std::nullopt;
    for (int i = n; i < 6; ++i) micros *= 10;
  }
  int64_t offset = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos + 6 == s.size() && (s[pos] == '+' || s[pos] == '-') && s[pos + 3] == ':') {
    const int oh = Digits(s, pos + 1, 2, &ok), om = Digits(s, pos + 4, 2, &ok);
    if (!ok || oh > 23 || om > 59) return std::nullopt;
    offset = (oh * 3600 + om * 60) * (s[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  const int64_t days = DaysFromCivil(year, static_cast<unsigned>(mon), static_cast<unsigned>(day));
  const int64_t secs = days * 86400 + hour * 3600 + min * 60 + sec - offset;
  // WallTime counts nanoseconds in an int64: about 1678 to 2262.
  if (secs < -9'000'000'000 || secs > 9'000'000'000) return std::nullopt;
  return WallTime(std::chrono::duration_cast<WallTime::duration>(
      std::chrono::microseconds(secs * 1000000 + micros)));
}

ApiStatus DecodeStatus(std::string_view body) {
  ApiStatus out;
  json j = ParseReply(body);
  if (j.is_discarded() || !j.is_object()) return out;
  out.reason = Str(j, "reason");
  out.message = Str(j, "message");
  auto details = j.find("details");
  if (details != j.end() && details->is_object()) {
    auto causes = details->find("causes");
    if (causes != details->end() && causes->is_array()) {
      for (const json& c : *causes) {
        if (!c.is_object()) continue;
        if (!out.causes.empty()) out.causes += "; ";
        const std::string field = Str(c, "field");
        out.causes += (field.empty() ? "" : field + ": ") + Str(c, "message");
      }
    }
  }
  if (out.message.size() > 1024) out.message.resize(1024);
  if (out.causes.size() > 1024) out.causes.resize(1024);
  return out;
}

Result<WatchEvent> ParseWatchLine(std::string_view line) {
  json j = ParseReply(line);
  if (j.is_discarded() || !j.is_object())
    return DataLossError("a watch event is not a JSON object");
  WatchEvent out;
  out.type = Str(j, "type");
  if (out.type.empty()) return DataLossError("a watch event has no type");
  auto obj = j.find("object");
  if (obj != j.end() && obj->is_object()) {
    if (out.type == "ERROR") {
      if (auto c = obj->find("code"); c != obj->end()) {
        if (auto v = Int(*c); v && *v > 0 && *v < 1000) out.error_code = static_cast<int>(*v);
      }
    } else if (auto meta = obj->find("metadata"); meta != obj->end()) {
      out.resource_version = Str(*meta, "resourceVersion");
    }
  }
  return out;
}

}  // namespace leasehold::kubernetes::detail
