#include <string>

#include "leasehold/lease.h"

namespace leasehold {
namespace {

Status Invalid(const char* field, const std::string& why) {
  return InvalidArgumentError(std::string("LeaseOptions.") + field + " " + why);
}

}  // namespace

Result<LeaseOptions> ValidateLeaseOptions(LeaseOptions o) {
  if (o.name.empty()) return Invalid("name", "is required (got an empty name)");
  if (o.owner.empty()) {
    return Invalid("owner",
                   "is required (got an empty owner): without one every contender would win");
  }
  if (o.ttl <= Duration::zero()) {
    return Invalid("ttl", "is required and must be > 0 (got " + FormatDuration(o.ttl) + ")");
  }
  if (!o.drift_allowance) o.drift_allowance = o.ttl / 50;
  if (*o.drift_allowance < Duration::zero() || *o.drift_allowance * 2 >= o.ttl) {
    return Invalid("drift_allowance", "must be >= 0 and < ttl/2 (got " +
                                          FormatDuration(*o.drift_allowance) + " with ttl " +
                                          FormatDuration(o.ttl) + ")");
  }
  const Duration lifetime = o.ttl - *o.drift_allowance;
  const bool defaulted = o.renew_interval == Duration::zero();
  if (defaulted) o.renew_interval = o.ttl / 3;
  if (o.renew_interval <= Duration::zero() || o.renew_interval * 2 > lifetime) {
    const std::string got = defaulted ? "the default ttl/3 = " + FormatDuration(o.renew_interval) +
                                            "; lower drift_allowance or set renew_interval"
                                      : "got " + FormatDuration(o.renew_interval);
    return Invalid(
        "renew_interval",
        "must be > 0 and at most (ttl - drift_allowance)/2 = " + FormatDuration(lifetime / 2) +
            " to leave room for retries before the deadline (" + got + ")");
  }
  if (o.request_timeout == Duration::zero()) o.request_timeout = o.renew_interval;
  if (o.request_timeout < Duration::zero()) {
    return Invalid("request_timeout",
                   "must be > 0 (got " + FormatDuration(o.request_timeout) + ")");
  }
  if (o.acquire_attempts < 1) {
    return Invalid("acquire_attempts",
                   "must be >= 1 (got " + std::to_string(o.acquire_attempts) + ")");
  }
  if (o.retry_delay < Duration::zero()) {
    return Invalid("retry_delay", "must be >= 0 (got " + FormatDuration(o.retry_delay) + ")");
  }
  return o;
}

}  // namespace leasehold
