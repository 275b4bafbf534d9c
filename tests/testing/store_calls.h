// Blocking calls of Store operations for tests: the store answers on its
// runtime; these wait for the answer.
#ifndef LEASEHOLD_TESTS_TESTING_STORE_CALLS_H_
#define LEASEHOLD_TESTS_TESTING_STORE_CALLS_H_

#include <string>
#include <vector>

#include "leasehold/future.h"
#include "leasehold/store.h"

namespace leasehold::testing {

// Store::List(prefix), answered within `timeout`.
inline Result<std::vector<LeaseRecord>> ListRecords(Store& store, const std::string& prefix,
                                                    Duration timeout) {
  Promise<Result<std::vector<LeaseRecord>>> promise(store.runtime());
  store.List(prefix, store.runtime()->clock().Now() + timeout,
             [promise](Result<std::vector<LeaseRecord>> r) mutable { promise.Set(std::move(r)); });
  return promise.future().Wait();
}

// The names a listing has, in its order.
inline std::vector<std::string> Names(const std::vector<LeaseRecord>& records) {
  std::vector<std::string> names;
  for (const LeaseRecord& r : records) names.push_back(r.name);
  return names;
}

}  // namespace leasehold::testing

#endif  // LEASEHOLD_TESTS_TESTING_STORE_CALLS_H_
