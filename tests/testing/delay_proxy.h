// A TCP proxy that delays what it forwards: latency between a client and a
// server a test starts (this kernel has no netem) -- the partition tests'
// latency spikes, an answer that arrives after its request's deadline. Every
// chunk read from one side is written to the other side `delay` after it was
// read, in order; reading never waits for writing, so the delay is not hidden
// behind TCP's flow control. The delay can be changed at any time; a chunk
// keeps the delay it was read under (never overtaking one read before it).
//
// Thread-safety: SetDelay() and address() are safe from any thread; the
// proxy's own thread does the rest. The destructor stops the thread and
// closes every socket.
#ifndef LEASEHOLD_TESTS_TESTING_DELAY_PROXY_H_
#define LEASEHOLD_TESTS_TESTING_DELAY_PROXY_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "leasehold/status.h"

namespace leasehold::testing {

class DelayProxy {
 public:
  // Listens on `listen_host` (an address in 127.0.0.0/8), on a free port, and
  // forwards every connection to `target` ("HOST:PORT", an address in
  // 127.0.0.0/8 too). A connection the target refuses is closed.
  static Result<std::unique_ptr<DelayProxy>> Start(const std::string& listen_host,
                                                   const std::string& target);
  ~DelayProxy();
  DelayProxy(const DelayProxy&) = delete;
  DelayProxy& operator=(const DelayProxy&) = delete;

  // "HOST:PORT" to connect to instead of the target.
  const std::string& address() const { return address_; }
  const std::string& target() const { return target_; }

  // The one-way delay from now on, in both directions.
  void SetDelay(std::chrono::milliseconds one_way) { delay_ms_.store(one_way.count()); }

 private:
  DelayProxy() = default;
  void Run(const std::stop_token& stop);

  std::string address_;
  std::string target_;
  std::string target_host_;
  int target_port_ = 0;
  int listen_fd_ = -1;
  std::atomic<int64_t> delay_ms_{0};
  std::jthread thread_;
};

}  // namespace leasehold::testing

#endif  // LEASEHOLD_TESTS_TESTING_DELAY_PROXY_H_
