// The PostgreSQL store's listening connection: LISTEN on the store's channel
// on a thread of its own, reconnecting after a failure.
//
// It reports three things, from its thread: `on_up` once each LISTEN took
// effect (anything may have changed while nobody listened), `on_notify(name)`
// for each notification, and `on_down` when the connection broke (until the
// next `on_up`, nobody hears changes: the store polls). Reconnects wait
// `retry` between attempts.
//
// Thread-safety: construct and destroy from any one thread; the callbacks run
// on the listener's thread, never after the destructor returns.
#ifndef LEASEHOLD_SRC_BACKENDS_POSTGRESQL_PG_LISTENER_H_
#define LEASEHOLD_SRC_BACKENDS_POSTGRESQL_PG_LISTENER_H_

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "leasehold/clock.h"

namespace leasehold::postgres {

struct ListenerCallbacks {
  std::function<void()> on_up;
  std::function<void(const std::string& name)> on_notify;
  std::function<void()> on_down;
};

class Listener {
 public:
  Listener(std::string conninfo, std::string describe, std::string channel,
           Duration connect_timeout, Duration retry, ListenerCallbacks callbacks);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

 private:
  void Loop();
  bool Sleep(Duration d);  // false when stopping

  const std::string conninfo_;
  const std::string describe_;
  const std::string channel_;
  const Duration connect_timeout_;
  const Duration retry_;
  const ListenerCallbacks callbacks_;
  int wake_fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace leasehold::postgres

#endif  // LEASEHOLD_SRC_BACKENDS_POSTGRESQL_PG_LISTENER_H_
