// The HTTP face of the long-running commands (`elect`, `run --metrics`):
// GET /healthz and GET /metrics on one address, served by cpp-httplib on a
// thread of its own; a command may add routes of its own (elect's /leader).
//
//   GET /healthz  200 "ok" while the command's health check passes; 503 with
//                 the check's message otherwise.
//   GET /metrics  Prometheus text (version 0.0.4) of the observer's registry:
//                 the lease metrics of observers/prometheus.h. 501 when
//                 leasehold was built without the Prometheus adapter.
//
// The listening socket takes SO_REUSEADDR only (not httplib's default
// SO_REUSEPORT, which would let a second process bind the same port and take
// half its requests): a port in use is an error.
#ifndef LEASEHOLD_TOOLS_LEASEHOLD_HTTP_FACE_H_
#define LEASEHOLD_TOOLS_LEASEHOLD_HTTP_FACE_H_

#include <httplib.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "leasehold/observer.h"
#include "leasehold/status.h"

namespace leasehold::cli::internal {

class HttpFace {
 public:
  HttpFace();
  // Stop()s.
  ~HttpFace();
  HttpFace(const HttpFace&) = delete;
  HttpFace& operator=(const HttpFace&) = delete;

  // The observer to give the lease (LeaseOptions::observer): what /metrics
  // reports. Null without the Prometheus adapter.
  const std::shared_ptr<LeaseObserver>& observer() const noexcept { return observer_; }
  // Add routes here before Listen().
  httplib::Server& server() noexcept { return server_; }

  // Binds `listen` ("HOST:PORT" or "[IPv6]:PORT") and serves from a thread;
  // `health` runs on an HTTP thread for each /healthz request (it holds what
  // it uses, or Stop() comes before that goes). kInvalidArgument naming `flag`
  // for a malformed address; kUnavailable when it cannot be bound (in use,
  // not an address of this host). Once only.
  Status Listen(std::string_view flag, std::string_view listen, std::function<Status()> health);
  // Stops serving and joins the HTTP thread: no handler runs after it
  // returns. Call it before what the routes use goes away. Idempotent.
  void Stop();

 private:
  struct Metrics;
  httplib::Server server_;
  std::unique_ptr<Metrics> metrics_;
  std::shared_ptr<LeaseObserver> observer_;
  std::thread thread_;
};

}  // namespace leasehold::cli::internal

#endif  // LEASEHOLD_TOOLS_LEASEHOLD_HTTP_FACE_H_
