#include "redis_subscriber.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <utility>

namespace leasehold::redis {
namespace {

using namespace std::chrono_literals;

constexpr Duration kIdlePing = 10s;
constexpr Duration kPongWithin = 5s;
constexpr Duration kRetryEvery = 1s;

}  // namespace

Subscriber::Subscriber(const Clock& clock, std::string describe, std::string channel,
                       ConnectFn connect, Duration connect_timeout, SubscriberCallbacks callbacks)
    : clock_(clock),
      describe_(std::move(describe)),
      channel_(std::move(channel)),
      connect_(std::move(connect)),
      connect_timeout_(connect_timeout),
      callbacks_(std::move(callbacks)),
      wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  thread_ = std::thread([this] { Loop(); });
}

Subscriber::~Subscriber() {
  const uint64_t one = 1;
  if (wake_fd_ >= 0 && ::write(wake_fd_, &one, sizeof one) < 0) {
    // Cannot happen for an eventfd below its maximum; the join below would
    // then wait for the next ping.
  }
  if (thread_.joinable()) thread_.join();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

bool Subscriber::Stopping() const {
  pollfd fd{wake_fd_, POLLIN, 0};
  return wake_fd_ < 0 || ::poll(&fd, 1, 0) > 0;
}

void Subscriber::SleepOrStop(Duration d) {
  pollfd fd{wake_fd_, POLLIN, 0};
  ::poll(&fd, 1, static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(d).count()));
}

void Subscriber::Loop() {
  while (!Stopping()) {
    const TimePoint started = clock_.Now();
    {
      Connection conn(clock_, describe_);
      Session(conn);
    }
    if (Stopping()) return;
    callbacks_.on_down();
    const Duration since = clock_.Now() - started;
    if (since < kRetryEvery) SleepOrStop(kRetryEvery - since);
  }
}

void Subscriber::Session(Connection& conn) {
  const std::string what = "subscribe";
  if (!connect_(conn, clock_.Now() + connect_timeout_).ok()) return;
  if (!conn.Send({{"SUBSCRIBE", channel_}}, clock_.Now() + connect_timeout_, what).ok()) return;
  bool up = false;
  TimePoint ping_due = clock_.Now() + kIdlePing;
  TimePoint pong_by = TimePoint::max();  // max: no ping outstanding
  while (!Stopping()) {
    const bool pinged = pong_by != TimePoint::max();
    const TimePoint wait_until = pinged ? pong_by : ping_due;
    if (clock_.Now() >= wait_until) {
      if (pinged) return;  // no answer to the ping: gone
      if (!conn.Send({{"PING"}}, clock_.Now() + kPongWithin, what).ok()) return;
      pong_by = clock_.Now() + kPongWithin;
      continue;
    }
    Result<std::optional<Reply>> r = conn.Read(wait_until, wake_fd_, what, /*idle_ok=*/true);
    if (!r.ok()) return;
    if (!*r) continue;  // woken (stopping) or the wait ran out: the loop decides
    const Reply& m = **r;
    if (m.type != Reply::Type::kArray || m.elements.empty()) return;  // not pub/sub: drop it
    const std::optional<std::string> kind = m.elements[0].Text();
    if (!kind) return;
    ping_due = clock_.Now() + kIdlePing;
    if (*kind == "subscribe") {
      if (!up) {
        up = true;
        callbacks_.on_up();
      }
    } else if (*kind == "message" && m.elements.size() == 3) {
      if (std::optional<std::string> name = m.elements[2].Text()) callbacks_.on_notify(*name);
    } else if (*kind == "pong") {
      pong_by = TimePoint::max();
    }
  }
}

}  // namespace leasehold::redis
