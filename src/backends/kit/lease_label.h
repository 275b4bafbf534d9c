// leasehold::kit::LeaseLabel: how a store's messages name a lease.
//
// Store's contract (include/leasehold/store.h) asks that errors name the store
// and the lease. Backends name the lease the same way, `lease "jobs"`, so that
// messages read alike whatever the backend; the store prefixes its own
// Describe(). The name is quoted as it is (it cannot hold a NUL; see
// Store::ValidateName).
//
// Thread-safety: a pure function.
#ifndef LEASEHOLD_SRC_BACKENDS_KIT_LEASE_LABEL_H_
#define LEASEHOLD_SRC_BACKENDS_KIT_LEASE_LABEL_H_

#include <string>
#include <string_view>

namespace leasehold::kit {

// `lease "<name>"`.
inline std::string LeaseLabel(std::string_view name) {
  std::string label = "lease \"";
  label.append(name);
  label += '"';
  return label;
}

}  // namespace leasehold::kit

#endif  // LEASEHOLD_SRC_BACKENDS_KIT_LEASE_LABEL_H_
