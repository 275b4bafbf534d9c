#include "leasehold/fencing.h"

#include <string>

namespace leasehold {

Status Fence::Admit(uint64_t sequence) {
  uint64_t highest = highest_.load(std::memory_order_acquire);
  while (sequence > highest) {
    if (highest_.compare_exchange_weak(highest, sequence, std::memory_order_acq_rel)) {
      return Status::Ok();
    }
  }
  if (sequence == highest) return Status::Ok();
  return FailedPreconditionError("stale fencing sequence " + std::to_string(sequence) +
                                 ": a newer holder has written with sequence " +
                                 std::to_string(highest));
}

}  // namespace leasehold
