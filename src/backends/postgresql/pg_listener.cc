#include "pg_listener.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "pg_connection.h"

namespace leasehold::postgres {

Listener::Listener(std::string conninfo, std::string describe, std::string channel,
                   Duration connect_timeout, Duration retry, ListenerCallbacks callbacks)
    : conninfo_(std::move(conninfo)),
      describe_(std::move(describe)),
      channel_(std::move(channel)),
      connect_timeout_(connect_timeout),
      retry_(retry),
      callbacks_(std::move(callbacks)),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  thread_ = std::thread([this] { Loop(); });
}

Listener::~Listener() {
  stop_ = true;
  const uint64_t one = 1;
  if (wake_fd_ >= 0) (void)!write(wake_fd_, &one, sizeof one);
  thread_.join();
  if (wake_fd_ >= 0) close(wake_fd_);
}

bool Listener::Sleep(Duration d) {
  pollfd fd{wake_fd_, POLLIN, 0};
  poll(&fd, 1, static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(d).count()));
  return !stop_;
}

void Listener::Loop() {
  // The listener waits on the real clock: it has no requests with deadlines.
  Connection conn(conninfo_, describe_, RealClock(), connect_timeout_);
  bool up = false;
  while (!stop_) {
    if (!up) {
      const TimePoint deadline = RealClock().Now() + connect_timeout_;
      Status s =
          conn.Run({{"LISTEN \"" + channel_ + "\""}}, deadline, describe_ + ": listen").status();
      if (!s.ok()) {
        conn.Close();
        if (!Sleep(retry_)) return;
        continue;
      }
      up = true;
      callbacks_.on_up();
    }
    Result<std::vector<std::string>> names =
        conn.AwaitNotifications(RealClock().Now() + std::chrono::seconds(10), wake_fd_);
    if (stop_) return;
    if (names.ok() && names->empty() && !stop_) {
      // Quiet for a while: make sure the server is still there (a server
      // that vanished without closing the connection would leave waiters
      // deaf until their own timers).
      Status ping =
          conn.Run({{"SELECT 1"}}, RealClock().Now() + connect_timeout_, describe_ + ": listen")
              .status();
      if (!ping.ok()) names = std::move(ping);
    }
    if (!names.ok()) {
      up = false;
      conn.Close();
      callbacks_.on_down();
      continue;
    }
    for (const std::string& name : *names) callbacks_.on_notify(name);
  }
}

}  // namespace leasehold::postgres
