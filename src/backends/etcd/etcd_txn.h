// leasehold etcd backend, internal: the etcd transactions the store sends,
// each built in one place. A lease's tenure is its key's create revision, so
// every conditional write compares that (CompareCreateRevision).
//
// Thread-safety: pure functions, safe from any thread.
#ifndef LEASEHOLD_BACKENDS_ETCD_ETCD_TXN_H_
#define LEASEHOLD_BACKENDS_ETCD_ETCD_TXN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "leasehold/backends/etcd.h"
#include "rpc.pb.h"

namespace leasehold::etcd {

namespace pb = etcdserverpb;

// Ranges per verification transaction in a renewal (etcd's default
// --max-txn-ops is 128).
inline constexpr size_t kMaxOpsPerTxn = 128;

// Adds "the create revision of `key` is `revision`" (0: `key` does not exist).
void CompareCreateRevision(pb::TxnRequest& txn, const std::string& key, int64_t revision);

// If `key` does not exist, creates it holding `holder`, attached to session
// lease `lease`; otherwise reads it (the only response of the failure branch).
pb::TxnRequest AcquireTxn(const std::string& key, const std::string& holder, int64_t lease);

// Deletes `key` if its create revision is still `create_revision`.
pb::TxnRequest ReleaseTxn(const std::string& key, int64_t create_revision);

// Deletes `key` if it holds `holder` on session lease `lease` (the put of an
// acquire whose answer was lost, its create revision unknown).
pb::TxnRequest LeftoverTxn(const std::string& key, const std::string& holder, int64_t lease);

// Reads `keys`, one range response each, in order.
pb::TxnRequest ReadTxn(const std::vector<std::string>& keys);

// Applies `writes` if the create revision of `key` is still `create_revision`.
// REQUIRES: no write has an empty key.
pb::TxnRequest FencedTxn(const std::string& key, int64_t create_revision,
                         std::vector<EtcdWrite> writes);

}  // namespace leasehold::etcd

#endif  // LEASEHOLD_BACKENDS_ETCD_ETCD_TXN_H_
