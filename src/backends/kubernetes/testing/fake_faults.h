// Fault injection in the fake Kubernetes API server, on lease requests only
// (discovery is never affected): a delay before every request, a hang that
// holds requests unanswered, and the next requests failed with a status or cut
// off before or after they take effect.
//
// Thread-safety: Faults has none of its own; the server guards it with its one
// mutex (ServerState::mu). AwaitFaults takes that mutex itself. CutConnection
// touches only the response it is given.
#ifndef LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_FAULTS_H_
#define LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_FAULTS_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "fake_api_server.h"
#include "fake_common.h"
#include "leasehold/clock.h"

namespace httplib {
struct Response;
}  // namespace httplib

namespace leasehold::kubernetes::testing::detail {

struct ServerState;

// A fault waiting for the next lease requests.
struct PendingFault {
  int remaining = 0;
  std::optional<Verb> only;
  int status = 0;  // FailNext
  std::optional<int> retry_after;
  std::optional<DropPoint> drop;  // DropNext
};

struct Faults {
  Duration delay{0};
  bool hang = false;
  std::vector<PendingFault> pending;

  // Takes the fault the next lease request of `verb` gets.
  std::optional<PendingFault> Take(Verb verb);
};

// What the faults make of one lease request.
struct FaultOutcome {
  bool stopping = false;  // the listener stopped while the request waited
  std::optional<PendingFault> fault;
};

// Waits out the delay and any hang (until the listener of `epoch` stops), then
// takes the fault for a lease request of `verb`.
FaultOutcome AwaitFaults(ServerState& st, uint64_t epoch, Verb verb);

// An injected failure, as the server would say it.
json InjectedStatus(int status, std::optional<int> retry_after);

// Cuts the connection: headers announce a body that never comes.
void CutConnection(httplib::Response& res);

}  // namespace leasehold::kubernetes::testing::detail

#endif  // LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_FAULTS_H_
