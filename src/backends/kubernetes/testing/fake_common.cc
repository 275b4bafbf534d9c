#include "fake_common.h"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <utility>

namespace leasehold::kubernetes::testing::detail {

std::string FormatTime(WallTime t, bool micro) {
  const auto us =
      std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(us / 1000000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out = buf;
  if (micro) {
    char frac[16];
    std::snprintf(frac, sizeof frac, ".%06lld", static_cast<long long>(us % 1000000));
    out += frac;
  }
  return out + "Z";
}

json StatusObject(int code, const std::string& reason, const std::string& message, json details) {
  json s = {{"kind", "Status"},    {"apiVersion", "v1"}, {"metadata", json::object()},
            {"status", "Failure"}, {"message", message}, {"reason", reason},
            {"code", code}};
  if (!details.is_null()) s["details"] = std::move(details);
  return s;
}

json LeaseDetails(const std::string& name) {
  json d = {{"group", kGroup}, {"kind", "leases"}};
  if (!name.empty()) d["name"] = name;
  return d;
}

std::string ReasonFor(int status) {
  switch (status) {
    case 400:
      return "BadRequest";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "NotFound";
    case 405:
      return "MethodNotAllowed";
    case 409:
      return "Conflict";
    case 410:
      return "Expired";
    case 415:
      return "UnsupportedMediaType";
    case 422:
      return "Invalid";
    case 429:
      return "TooManyRequests";
    case 500:
      return "InternalError";
    case 503:
      return "ServiceUnavailable";
    case 504:
      return "Timeout";
    default:
      return "Unknown";
  }
}

json NotFound(const std::string& name) {
  return StatusObject(404, "NotFound", "leases.coordination.k8s.io \"" + name + "\" not found",
                      LeaseDetails(name));
}

json Conflict(const std::string& name, const std::string& why) {
  return StatusObject(
      409, "Conflict",
      "Operation cannot be fulfilled on leases.coordination.k8s.io \"" + name + "\": " + why,
      LeaseDetails(name));
}

}  // namespace leasehold::kubernetes::testing::detail
