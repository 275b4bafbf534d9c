#include "leasehold/observer.h"

namespace leasehold {

std::string_view AcquireOutcomeName(LeaseObserver::AcquireOutcome outcome) noexcept {
  switch (outcome) {
    case LeaseObserver::AcquireOutcome::kAcquired:
      return "acquired";
    case LeaseObserver::AcquireOutcome::kContended:
      return "contended";
    case LeaseObserver::AcquireOutcome::kFailed:
      return "failed";
  }
  return "unknown";
}

}  // namespace leasehold
