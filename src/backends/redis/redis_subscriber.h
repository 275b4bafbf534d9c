// leasehold::redis::Subscriber: the store's one subscribed connection. A
// thread of its own connects (through the store's `connect`, which finds the
// primary and authenticates), SUBSCRIBEs to the store's channel and reports:
//   on_up        subscribed (again): from now on every change is heard
//   on_notify    a message: the name of a lease that changed
//   on_down      the connection is gone (changes may go unheard until on_up)
// After 10 s without a message it PINGs, to notice a server that vanished
// without closing the connection; after a failure it connects again, at
// most once a second.
//
// Thread-safety: constructed and destroyed by one thread; the destructor
// wakes and joins the thread, so the callbacks never run after it returns.
#ifndef LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_SUBSCRIBER_H_
#define LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_SUBSCRIBER_H_

#include <functional>
#include <string>
#include <thread>

#include "leasehold/clock.h"
#include "leasehold/status.h"
#include "redis_connection.h"

namespace leasehold::redis {

struct SubscriberCallbacks {
  std::function<void()> on_up;
  std::function<void(const std::string& name)> on_notify;
  std::function<void()> on_down;
};

class Subscriber {
 public:
  // `connect` opens `conn` to the primary and authenticates, by the deadline.
  using ConnectFn = std::function<Status(Connection& conn, TimePoint deadline)>;
  Subscriber(const Clock& clock, std::string describe, std::string channel, ConnectFn connect,
             Duration connect_timeout, SubscriberCallbacks callbacks);
  ~Subscriber();
  Subscriber(const Subscriber&) = delete;
  Subscriber& operator=(const Subscriber&) = delete;

 private:
  void Loop();
  // One subscribed session, until it fails or the subscriber stops.
  void Session(Connection& conn);
  bool Stopping() const;
  void SleepOrStop(Duration d);

  const Clock& clock_;
  const std::string describe_;
  const std::string channel_;
  const ConnectFn connect_;
  const Duration connect_timeout_;
  const SubscriberCallbacks callbacks_;
  int wake_fd_ = -1;  // eventfd: readable once the subscriber stops
  std::thread thread_;
};

}  // namespace leasehold::redis

#endif  // LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_SUBSCRIBER_H_
