#include "renew_queue.h"

#include <algorithm>
#include <string>

namespace leasehold::detail {

void RenewQueue::Enqueue(const std::shared_ptr<Store>& store, RenewRequest request, Done done) {
  bool post = false;
  {
    std::lock_guard lock(mu_);
    requests_.push_back(std::move(request));
    dones_.push_back(std::move(done));
    post = !std::exchange(flush_posted_, true);
  }
  // The task owns the store until it has handed the batch over.
  if (post) store->runtime()->Post([store] { store->renew_queue()->Flush(store); });
}

void RenewQueue::Flush(const std::shared_ptr<Store>& store) {
  std::vector<RenewRequest> requests;
  std::vector<Done> dones;
  {
    std::lock_guard lock(mu_);
    requests.swap(requests_);
    dones.swap(dones_);
    flush_posted_ = false;
  }
  if (requests.empty()) return;
  const size_t n = requests.size();
  store->Renew(std::move(requests),
               [dones = std::move(dones), n, what = store->Describe()](
                   std::vector<Result<RenewOutcome>> results) {
                 if (results.size() != n) {
                   Status bad = InternalError(what + ": answered " + std::to_string(results.size()) +
                                              " results to a batch of " + std::to_string(n) +
                                              " renewals");
                   for (const auto& done : dones) done(bad);
                   return;
                 }
                 for (size_t i = 0; i < n; ++i) dones[i](std::move(results[i]));
               });
}

}  // namespace leasehold::detail
