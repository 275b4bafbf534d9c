// Watch streams of the fake Kubernetes API server: chunked JSON lines of
// ADDED/MODIFIED/DELETED/BOOKMARK events from a resourceVersion (synthetic
// ADDED events for the current state when it is empty or "0"), and 410 Expired
// for a resourceVersion older than the compaction point.
//
// Thread-safety: ServeWatch may run on any server thread; the stream reads the
// registry under ServerState::mu.
#ifndef LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_WATCH_H_
#define LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_WATCH_H_

#include <cstdint>
#include <memory>
#include <string>

#include "fake_api_server.h"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace leasehold::kubernetes::testing::detail {

struct ServerState;

// Answers the watch request `req` on the URL's scope `ns`/`name` (empty: all)
// for the listener of `epoch`, and logs `rec` with its status. The stream ends
// when the client goes away, CloseWatches() is called, timeoutSeconds pass or
// the listener stops.
void ServeWatch(const std::shared_ptr<ServerState>& state, uint64_t epoch,
                const httplib::Request& req, httplib::Response& res, const std::string& ns,
                const std::string& name, RequestRecord rec);

}  // namespace leasehold::kubernetes::testing::detail

#endif  // LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_WATCH_H_
