#include "network.h"

#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "testing/run_command.h"

namespace leasehold::partition {

Result<std::unique_ptr<Network>> Network::Enter() {
  if (geteuid() != 0) {
    return FailedPreconditionError(
        "partition tests: need root for a network namespace of their own");
  }
  if (unshare(CLONE_NEWNET) != 0) {
    return FailedPreconditionError(std::string("partition tests: unshare(CLONE_NEWNET): ") +
                                   std::strerror(errno));
  }
  int code = 0;
  const std::string out = testing::RunCommand("ip link set lo up 2>&1", &code);
  if (code != 0) {
    return FailedPreconditionError("partition tests: cannot bring lo up (iproute2): " + out);
  }
  std::unique_ptr<Network> net(new Network());
  if (Status s = net->Apply({}); !s.ok()) return s;
  return net;
}

Status Network::Tag(const std::vector<uid_t>& users) {
  users_.insert(users_.end(), users.begin(), users.end());
  return Apply(faults_);
}

std::vector<Fault> Network::Split(const std::vector<Node>& a, const std::vector<Node>& b) {
  std::vector<Fault> out;
  for (const Node& x : a) {
    for (const Node& y : b) {
      if (x.user != 0 && !y.address.empty()) out.push_back({.from = x.user, .to = y.address});
      if (y.user != 0 && !x.address.empty()) out.push_back({.from = y.user, .to = x.address});
    }
  }
  return out;
}

Status Network::Apply(const std::vector<Fault>& faults) {
  std::ostringstream rules;
  rules << "flush ruleset\n"
           "table inet leasehold_partition {\n"
           "  chain tag {\n"
           "    type filter hook output priority 0; policy accept;\n";
  for (uid_t u : users_) {
    rules << "    ct state new meta skuid " << u << " ct mark set " << u << "\n";
  }
  rules << "  }\n"
           "  chain faults {\n"
           "    type filter hook input priority 0; policy accept;\n";
  for (const Fault& f : faults) {
    if (f.from == 0 || f.to.empty() || f.loss_percent <= 0 || f.loss_percent > 100) {
      return InvalidArgumentError(
          "partition tests: a fault needs a user, an address and a loss in 1..100");
    }
    rules << "    ct mark " << f.from << " ct original ip daddr " << f.to;
    if (f.direction == Direction::kRequests) rules << " ct direction original";
    if (f.direction == Direction::kAnswers) rules << " ct direction reply";
    if (f.loss_percent < 100) rules << " numgen random mod 100 < " << f.loss_percent;
    rules << " drop\n";
  }
  rules << "  }\n}\n";
  if (Status s = Load(rules.str()); !s.ok()) return s;
  faults_ = faults;
  return Status::Ok();
}

Status Network::Load(const std::string& rules) const {
  char path[] = "/tmp/leasehold-nft-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) return InternalError("partition tests: cannot create a rules file");
  close(fd);
  {
    std::ofstream out(path);
    out << rules;
  }
  int code = 0;
  const std::string out = testing::RunCommand(std::string("nft -f ") + path + " 2>&1", &code);
  unlink(path);
  if (code != 0) {
    return FailedPreconditionError(
        "partition tests: nft refused the rules (is the nftables "
        "package installed?): " +
        out + "\nrules:\n" + rules);
  }
  return Status::Ok();
}

}  // namespace leasehold::partition
