// What kubectl needs from the fake Kubernetes API server: the discovery
// documents (/version, /api, /api/v1, /apis, /apis/coordination.k8s.io[/v1])
// and server-side Table output of leases.
//
// Thread-safety: stateless functions, safe from any thread.
#ifndef LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_DISCOVERY_H_
#define LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_DISCOVERY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "fake_common.h"

namespace leasehold::kubernetes::testing::detail {

// True for the discovery paths.
bool IsDiscoveryPath(const std::string& path);

// The discovery document at `path` (one IsDiscoveryPath accepts) of a server
// listening on 127.0.0.1:`port`.
json DiscoveryDocument(const std::string& path, int port);

// True when the Accept header asks for a Table (kubectl get).
bool WantsTable(const std::string& accept);

// kubectl's default output of `items` at resourceVersion `rv`: server-side
// columns Name, Holder, Age.
json Table(const std::vector<json>& items, uint64_t rv);

}  // namespace leasehold::kubernetes::testing::detail

#endif  // LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_DISCOVERY_H_
