// Helpers shared by the consumers' tests: views and members on a simulated
// runtime with one MemoryStore.
#ifndef LEASEHOLD_SRC_CONSUMERS_TEST_UTIL_H_
#define LEASEHOLD_SRC_CONSUMERS_TEST_UTIL_H_

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "leasehold/backends/memory.h"
#include "leasehold/lease.h"
#include "leasehold/partition.h"

namespace leasehold::testing {

// `self` and `ours` reachable, `theirs` unreachable; every member kUp with
// the roles in `roles` (default none).
inline PartitionView Split(const std::string& self, const std::vector<std::string>& ours,
                           const std::vector<std::string>& theirs,
                           const std::set<std::string>& with_role = {},
                           const std::string& role = "") {
  PartitionView v;
  v.self = self;
  auto add = [&](const std::string& a) {
    Member m{.address = a, .status = MemberStatus::kUp, .roles = {}};
    if (with_role.count(a)) m.roles.insert(role);
    v.members.push_back(std::move(m));
  };
  for (const auto& a : ours) add(a);
  for (const auto& a : theirs) {
    add(a);
    v.unreachable.insert(a);
  }
  return v;
}

inline std::set<std::string> Set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

}  // namespace leasehold::testing

#endif  // LEASEHOLD_SRC_CONSUMERS_TEST_UTIL_H_
