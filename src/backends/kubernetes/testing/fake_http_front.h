// The HTTP front of the fake Kubernetes API server: one TLS listener
// (cpp-httplib) on the server's port, routing requests to the Lease API or
// discovery, authenticating (bearer token or client certificate) and
// authorizing them, applying faults, and writing the answers. Replaced on
// Suspend()/Resume(); the state behind it stays.
//
// Thread-safety: HttpFront is created, started and destroyed by one thread;
// its handlers run on the server's threads and take ServerState::mu. Connections
// has its own lock.
#ifndef LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_HTTP_FRONT_H_
#define LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_HTTP_FRONT_H_

#include <openssl/ssl.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "fake_common.h"
#include "leasehold/status.h"

namespace httplib {
class SSLServer;
struct Request;
struct Response;
}  // namespace httplib

namespace leasehold::kubernetes::testing::detail {

struct ServerState;

// The server's open TLS connections. httplib keeps an idle keep-alive
// connection's thread waiting for the next request until its keep-alive
// timeout, whatever stop() says; Suspend() therefore shuts the sockets down
// itself, as a dying server's kernel would.
struct Connections {
  std::mutex mu;
  std::set<SSL*> open;
  std::atomic<size_t> accepted{0};

  void ShutdownAll();
};

// Writes `body` as the JSON answer with status `code`.
void Reply(httplib::Response& res, int code, const json& body);

class HttpFront {
 public:
  // Serves `state`; requests it is handling end when the state's
  // listener_epoch moves past `epoch`.
  HttpFront(std::shared_ptr<ServerState> state, uint64_t epoch);
  // Stops listening and cuts open connections.
  ~HttpFront();
  HttpFront(const HttpFront&) = delete;
  HttpFront& operator=(const HttpFront&) = delete;

  // Binds state->port (a free one when 0) on 127.0.0.1 and starts serving.
  Status Start();

 private:
  void Handle(const httplib::Request& req, httplib::Response& res);

  const std::shared_ptr<ServerState> state_;
  const uint64_t epoch_;
  std::unique_ptr<httplib::SSLServer> server_;
  std::thread thread_;
  std::atomic<bool> pool_ready_{false};  // httplib built its thread pool
};

}  // namespace leasehold::kubernetes::testing::detail

#endif  // LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_HTTP_FRONT_H_
