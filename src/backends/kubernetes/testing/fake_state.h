// The fake Kubernetes API server's shared state: the objects, credentials,
// faults and request log, which outlive any one listener (Suspend/Resume).
//
// Thread-safety: `mu` guards every mutable member but `connections` (which
// has its own lock); `cv` is notified when objects change, a hang is lifted,
// watches are closed or a listener stops.
#ifndef LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_STATE_H_
#define LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_STATE_H_

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "fake_api_server.h"
#include "fake_faults.h"
#include "fake_http_front.h"
#include "fake_registry.h"
#include "testing/temp_dir.h"
#include "testing/test_pki.h"

namespace leasehold::kubernetes::testing::detail {

struct ServerState {
  explicit ServerState(FakeApiServerOptions o)
      : options(std::move(o)), registry(options.history_limit, cv), tokens(options.tokens) {}

  // REQUIRES: mu held. True once the listener of `epoch` has been stopped.
  bool Stopping(uint64_t epoch) const { return listener_epoch != epoch; }

  // Logs `rec`, answered with `status`. Takes mu.
  void Record(RequestRecord rec, int status) {
    rec.status = status;
    std::lock_guard lock(mu);
    log.push_back(std::move(rec));
  }

  const FakeApiServerOptions options;
  std::unique_ptr<leasehold::testing::TempDir> own_dir;
  leasehold::testing::TestPki pki;
  int port = 0;
  Connections connections;

  mutable std::mutex mu;
  std::condition_variable cv;

  Registry registry;
  uint64_t watch_epoch = 0;     // CloseWatches()
  uint64_t listener_epoch = 0;  // Suspend(): requests of an older listener end
  int watches_open = 0;

  std::map<std::string, std::string> tokens;
  std::set<std::pair<std::string, Verb>> denied;

  Faults faults;

  std::vector<RequestRecord> log;
};

}  // namespace leasehold::kubernetes::testing::detail

#endif  // LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_STATE_H_
