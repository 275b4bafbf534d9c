// Internal: the Lease object and watch-event wire formats of
// coordination.k8s.io/v1, decoded defensively (records and replies may be
// written by anyone: every field is type-checked, nothing throws).
#ifndef LEASEHOLD_SRC_BACKENDS_KUBERNETES_LEASE_CODEC_H_
#define LEASEHOLD_SRC_BACKENDS_KUBERNETES_LEASE_CODEC_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "leasehold/clock.h"
#include "leasehold/detail/io.h"
#include "leasehold/status.h"

namespace leasehold::kubernetes::detail {

// One Lease object as read. `object` is the whole JSON, kept so that it can be
// written back with only our fields changed.
struct LeaseObject {
  nlohmann::json object;
  std::string name;
  std::string uid;
  std::string resource_version;
  std::string holder;                       // "" when absent, empty or not a string
  std::optional<int64_t> duration_seconds;  // unset when absent or not an integer
  std::optional<int64_t> transitions;       // unset when absent or not an integer
  std::string incarnation;                  // our annotation, "" when absent
  std::optional<WallTime> acquire_time;     // informational only
  std::optional<WallTime> renew_time;
};

// Decodes a Lease. kDataLoss naming what is wrong when `text` is not JSON, not
// a Lease object, or lacks metadata.name/resourceVersion/uid as strings.
Result<LeaseObject> DecodeLease(std::string_view text);
Result<LeaseObject> DecodeLeaseJson(nlohmann::json object);

// RFC 3339 with exactly six fractional digits, UTC: "2026-11-26T08:53:07.417335Z".
std::string FormatMicroTime(WallTime t);
// Accepts RFC 3339 (any fraction, 'Z' or a +hh:mm offset); nullopt otherwise.
std::optional<WallTime> ParseMicroTime(std::string_view text);

// A Kubernetes Status object (error replies).
struct ApiStatus {
  std::string reason;   // "Conflict", "AlreadyExists", "NotFound", ...
  std::string message;  // the server's words ("" if none)
  std::string causes;   // "field: message; ..." from details.causes
};
// Never fails: a body that is not a Status gives empty fields.
ApiStatus DecodeStatus(std::string_view body);

// One line of a watch stream.
struct WatchEvent {
  std::string type;              // ADDED, MODIFIED, DELETED, BOOKMARK, ERROR
  std::string resource_version;  // of the object ("" if none)
  int error_code = 0;            // for ERROR: the Status code (410 = Gone)
};
// kDataLoss when the line is not a watch event.
Result<WatchEvent> ParseWatchLine(std::string_view line);

// DNS-1123 subdomain, at most 253 characters (shared with the CLI).
using ::leasehold::detail::IsDnsSubdomain;

}  // namespace leasehold::kubernetes::detail

#endif  // LEASEHOLD_SRC_BACKENDS_KUBERNETES_LEASE_CODEC_H_
