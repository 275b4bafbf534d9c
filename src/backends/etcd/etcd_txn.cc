#include "etcd_txn.h"

#include <utility>

namespace leasehold::etcd {

void CompareCreateRevision(pb::TxnRequest& txn, const std::string& key, int64_t revision) {
  auto* cmp = txn.add_compare();
  cmp->set_key(key);
  cmp->set_target(pb::Compare::CREATE);
  cmp->set_result(pb::Compare::EQUAL);
  cmp->set_create_revision(revision);
}

pb::TxnRequest AcquireTxn(const std::string& key, const std::string& holder, int64_t lease) {
  pb::TxnRequest txn;
  CompareCreateRevision(txn, key, 0);
  auto* put = txn.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(holder);
  put->set_lease(lease);
  txn.add_failure()->mutable_request_range()->set_key(key);
  return txn;
}

pb::TxnRequest ReleaseTxn(const std::string& key, int64_t create_revision) {
  pb::TxnRequest txn;
  CompareCreateRevision(txn, key, create_revision);
  txn.add_success()->mutable_request_delete_range()->set_key(key);
  return txn;
}

pb::TxnRequest LeftoverTxn(const std::string& key, const std::string& holder, int64_t lease) {
  pb::TxnRequest txn;
  auto* value = txn.add_compare();
  value->set_key(key);
  value->set_target(pb::Compare::VALUE);
  value->set_result(pb::Compare::EQUAL);
  value->set_value(holder);
  auto* on = txn.add_compare();
  on->set_key(key);
  on->set_target(pb::Compare::LEASE);
  on->set_result(pb::Compare::EQUAL);
  on->set_lease(lease);
  txn.add_success()->mutable_request_delete_range()->set_key(key);
  return txn;
}

pb::TxnRequest ReadTxn(const std::vector<std::string>& keys) {
  pb::TxnRequest txn;
  for (const auto& key : keys) txn.add_success()->mutable_request_range()->set_key(key);
  return txn;
}

pb::TxnRequest FencedTxn(const std::string& key, int64_t create_revision,
                         std::vector<EtcdWrite> writes) {
  pb::TxnRequest txn;
  CompareCreateRevision(txn, key, create_revision);
  for (auto& w : writes) {
    if (w.kind == EtcdWrite::Kind::kPut) {
      auto* put = txn.add_success()->mutable_request_put();
      put->set_key(std::move(w.key));
      put->set_value(std::move(w.value));
    } else {
      txn.add_success()->mutable_request_delete_range()->set_key(std::move(w.key));
    }
  }
  return txn;
}

}  // namespace leasehold::etcd
