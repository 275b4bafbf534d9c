// What every part of the fake Kubernetes API server shares: the Lease API's
// names, Status objects worded as the real API server words them, and its
// time format.
//
// Thread-safety: stateless functions, safe from any thread.
#ifndef LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_COMMON_H_
#define LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_COMMON_H_

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "leasehold/clock.h"

namespace leasehold::kubernetes::testing::detail {

using json = nlohmann::json;

inline constexpr std::string_view kGroup = "coordination.k8s.io";
inline constexpr std::string_view kApiVersion = "coordination.k8s.io/v1";
inline constexpr std::string_view kGroupPath = "/apis/coordination.k8s.io/v1";

// An answer: HTTP status and JSON body.
struct Answer {
  int code = 200;
  json body;
};

// "2006-01-02T15:04:05Z" (metav1.Time), or with six fractional digits
// (metav1.MicroTime) when `micro`; always UTC.
std::string FormatTime(WallTime t, bool micro);

// A failure Status object.
json StatusObject(int code, const std::string& reason, const std::string& message,
                  json details = nullptr);
// Status details naming a lease (or the leases resource when `name` is empty).
json LeaseDetails(const std::string& name);
// The Status reason of an HTTP status ("NotFound" for 404, ...).
std::string ReasonFor(int status);
// 404 for the lease `name`.
json NotFound(const std::string& name);
// 409 Conflict on the lease `name`, because `why`.
json Conflict(const std::string& name, const std::string& why);

}  // namespace leasehold::kubernetes::testing::detail

#endif  // LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_COMMON_H_
