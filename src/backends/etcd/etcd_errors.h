// leasehold etcd backend, internal: how gRPC statuses become leasehold ones,
// and the two facts about a failed call that the transport acts on (try the
// next endpoint; authenticate again).
//
// Thread-safety: pure functions, safe from any thread.
#ifndef LEASEHOLD_BACKENDS_ETCD_ETCD_ERRORS_H_
#define LEASEHOLD_BACKENDS_ETCD_ETCD_ERRORS_H_

#include <grpcpp/support/status.h>

#include <string>
#include <string_view>

#include "leasehold/status.h"

namespace leasehold::etcd {

// `s` in double quotes, bytes outside printable ASCII (and `"`, `\`) as \xNN.
std::string Quote(std::string_view s);

StatusCode CodeFor(grpc::StatusCode code);

// Worth trying the next endpoint: the member is down, has no leader, or did
// not answer in time.
bool Failover(grpc::StatusCode code);

// Worth authenticating again and retrying once: the token is no longer
// accepted.
bool NeedsNewToken(const grpc::Status& s);

// "<describe>: <what>: <gRPC message> (gRPC code N from <address>)".
Status FromGrpc(const grpc::Status& s, const std::string& describe, const std::string& what,
                const std::string& address);

// kDataLoss: etcd answered something we cannot use.
Status Malformed(const std::string& describe, const std::string& what);

}  // namespace leasehold::etcd

#endif  // LEASEHOLD_BACKENDS_ETCD_ETCD_ERRORS_H_
