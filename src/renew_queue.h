// Collects the renewals of one store that fall due together into one
// Store::Renew() call.
//
// Renewal timers are quantised (lease.cc), so leases whose renewals are due in
// the same few milliseconds fire in one pass of the runtime loop; each enqueues
// here, the first one posts a flush, and the flush -- running after every timer
// of that pass -- hands the whole batch to the store. A store that can renew
// many leases in one request (etcd's session keepalive, one SQL transaction)
// turns N renewals into one round trip; others loop.
#ifndef LEASEHOLD_SRC_RENEW_QUEUE_H_
#define LEASEHOLD_SRC_RENEW_QUEUE_H_

#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "leasehold/store.h"

namespace leasehold::detail {

class RenewQueue {
 public:
  using Done = std::function<void(Result<RenewOutcome>)>;

  // Queues one renewal of `store` (whose queue this is); `done` is called
  // exactly once with its result.
  void Enqueue(const std::shared_ptr<Store>& store, RenewRequest request, Done done);

 private:
  void Flush(const std::shared_ptr<Store>& store);

  std::mutex mu_;
  std::vector<RenewRequest> requests_;
  std::vector<Done> dones_;
  bool flush_posted_ = false;
};

}  // namespace leasehold::detail

#endif  // LEASEHOLD_SRC_RENEW_QUEUE_H_
