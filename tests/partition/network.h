// A network of the test's own: this process moves into a new network
// namespace (nothing it does can touch the host's traffic), where every
// address of 127.0.0.0/8 is loopback, and real packet faults are laid between
// its nodes with nftables.
//
// Nodes are told apart two ways: a listening node (an etcd member, a server)
// by the address it binds (127.0.0.N, its own), a connecting node by the user
// it runs as (each holder process and each etcd member has a uid of its own,
// switched to before exec). Every connection is marked, when it opens, with
// the user that opened it (conntrack mark = uid, set on output); the faults
// then drop packets on input by (mark, the address the connection was opened
// to) and by direction. A drop on input is a black hole: the sender gets no
// reset and no error, its packets just vanish, as they do behind a failed
// switch. The test process itself (uid 0) is never cut: it observes.
//
// Thread-safety: one thread (the test's) calls; the rules are the kernel's.
#ifndef LEASEHOLD_TESTS_PARTITION_NETWORK_H_
#define LEASEHOLD_TESTS_PARTITION_NETWORK_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "leasehold/status.h"

namespace leasehold::partition {

enum class Direction {
  kBoth,      // nothing passes either way
  kRequests,  // the opener's packets vanish; the other side's would pass
  kAnswers,   // the opener's packets arrive; what comes back vanishes
};

// Packets of connections opened by user `from` to address `to` are dropped
// as `direction` says: all of them, or loss_percent of them at random.
struct Fault {
  uid_t from = 0;
  std::string to{};
  Direction direction = Direction::kBoth;
  int loss_percent = 100;
};

class Network {
 public:
  // Moves the calling process into a network namespace of its own
  // (unshare(CLONE_NEWNET): call it before any thread starts, as threads keep
  // the namespace they were created in), brings its loopback up and loads
  // the rule table. kFailedPrecondition naming what is missing (root, the nft
  // binary, a kernel without nftables): a partition test fails, never skips.
  static Result<std::unique_ptr<Network>> Enter();

  // Declares the users whose connections can be cut. Call before they
  // connect: a connection is marked when it opens.
  Status Tag(const std::vector<uid_t>& users);

  // Replaces the faults in force with `faults` (atomically: one nft batch).
  Status Apply(const std::vector<Fault>& faults);
  Status Heal() { return Apply({}); }

  // Faults that cut every connection between the nodes (user, address) in
  // `a` and those in `b`, both ways: a partition of a cluster.
  struct Node {
    uid_t user = 0;
    std::string address{};
  };
  static std::vector<Fault> Split(const std::vector<Node>& a, const std::vector<Node>& b);

 private:
  Network() = default;
  Status Load(const std::string& rules) const;
  std::vector<uid_t> users_;
  std::vector<Fault> faults_;
};

}  // namespace leasehold::partition

#endif  // LEASEHOLD_TESTS_PARTITION_NETWORK_H_
