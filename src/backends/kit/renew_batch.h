// leasehold::kit: helpers for answering a renewal batch (Store::Renew).
//
// Store::Renew gets any number of requests for distinct names and answers one
// result per request, in order. A store that serves the batch in one round
// trip answers by the batch's earliest deadline, and a failure of that round
// trip is every request's failure.
//
// Thread-safety: pure functions.
#ifndef LEASEHOLD_SRC_BACKENDS_KIT_RENEW_BATCH_H_
#define LEASEHOLD_SRC_BACKENDS_KIT_RENEW_BATCH_H_

#include <algorithm>
#include <cstddef>
#include <vector>

#include "leasehold/clock.h"
#include "leasehold/status.h"
#include "leasehold/store.h"

namespace leasehold::kit {

// The earliest deadline in `batch`; TimePoint::max() for an empty one.
inline TimePoint EarliestDeadline(const std::vector<RenewRequest>& batch) {
  TimePoint deadline = TimePoint::max();
  for (const RenewRequest& request : batch) deadline = std::min(deadline, request.deadline);
  return deadline;
}

// The answer to a batch of `n` requests that all failed with `status`.
// REQUIRES: !status.ok().
inline std::vector<Result<RenewOutcome>> AllFailed(size_t n, const Status& status) {
  return std::vector<Result<RenewOutcome>>(n, Result<RenewOutcome>(status));
}

}  // namespace leasehold::kit

#endif  // LEASEHOLD_SRC_BACKENDS_KIT_RENEW_BATCH_H_
