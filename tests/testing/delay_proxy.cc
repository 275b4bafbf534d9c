#include "testing/delay_proxy.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <list>
#include <vector>

namespace leasehold::testing {
namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

bool Parse(const std::string& host, int port, sockaddr_in* out) {
  std::memset(out, 0, sizeof *out);
  out->sin_family = AF_INET;
  out->sin_port = htons(static_cast<uint16_t>(port));
  return inet_pton(AF_INET, host.c_str(), &out->sin_addr) == 1 &&
         (ntohl(out->sin_addr.s_addr) >> 24) == 127;  // loopback only, ever
}

void NonBlocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

struct Chunk {
  int64_t due_ns;
  std::string data;  // empty: the sender's end of stream
  size_t sent = 0;
};

// One direction of a connection: read from `from`, written to `to`.
struct Lane {
  int from = -1;
  int to = -1;
  std::deque<Chunk> queue;
  int64_t last_due_ns = 0;
  bool read_eof = false;
  bool blocked = false;  // the front is due but `to` would block
  bool done = false;     // end of stream passed on
};

struct Link {
  int fd[2] = {-1, -1};  // the client, the target
  Lane lane[2];          // client -> target, target -> client
  bool broken = false;
  ~Link() {
    for (int f : fd) {
      if (f >= 0) close(f);
    }
  }
};

// Writes what of `lane` is due; false when the link broke.
bool Flush(Lane& lane, int64_t now) {
  lane.blocked = false;
  while (!lane.queue.empty() && lane.queue.front().due_ns <= now) {
    Chunk& c = lane.queue.front();
    if (c.data.empty()) {
      shutdown(lane.to, SHUT_WR);
      lane.done = true;
      lane.queue.pop_front();
      continue;
    }
    const ssize_t n = send(lane.to, c.data.data() + c.sent, c.data.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        lane.blocked = true;
        return true;
      }
      return false;
    }
    c.sent += static_cast<size_t>(n);
    if (c.sent < c.data.size()) {
      lane.blocked = true;
      return true;
    }
    lane.queue.pop_front();
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<DelayProxy>> DelayProxy::Start(const std::string& listen_host,
                                                      const std::string& target) {
  std::unique_ptr<DelayProxy> p(new DelayProxy());
  const size_t colon = target.rfind(':');
  sockaddr_in to{};
  if (colon == std::string::npos ||
      !Parse(target.substr(0, colon), std::atoi(target.c_str() + colon + 1), &to)) {
    return InvalidArgumentError("delay proxy: the target \"" + target +
                                "\" is not HOST:PORT in 127.0.0.0/8");
  }
  p->target_ = target;
  p->target_host_ = target.substr(0, colon);
  p->target_port_ = std::atoi(target.c_str() + colon + 1);
  sockaddr_in at{};
  if (!Parse(listen_host, 0, &at)) {
    return InvalidArgumentError("delay proxy: \"" + listen_host + "\" is not in 127.0.0.0/8");
  }
  p->listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  socklen_t len = sizeof at;
  if (p->listen_fd_ < 0 || bind(p->listen_fd_, reinterpret_cast<sockaddr*>(&at), len) != 0 ||
      listen(p->listen_fd_, 64) != 0 ||
      getsockname(p->listen_fd_, reinterpret_cast<sockaddr*>(&at), &len) != 0) {
    const std::string why = std::strerror(errno);
    if (p->listen_fd_ >= 0) close(p->listen_fd_);
    p->listen_fd_ = -1;
    return InternalError("delay proxy: cannot listen on " + listen_host + ": " + why);
  }
  p->address_ = listen_host + ":" + std::to_string(ntohs(at.sin_port));
  p->thread_ = std::jthread([raw = p.get()](const std::stop_token& stop) { raw->Run(stop); });
  return p;
}

DelayProxy::~DelayProxy() {
  if (thread_.joinable()) {
    thread_.request_stop();
    thread_.join();
  }
  if (listen_fd_ >= 0) close(listen_fd_);
}

void DelayProxy::Run(const std::stop_token& stop) {
  std::list<Link> links;
  std::vector<pollfd> fds;
  std::vector<std::pair<Link*, int>> owners;  // fds[i + 1] belongs to (link, side)
  std::vector<char> buf(64 * 1024);
  while (!stop.stop_requested()) {
    int64_t now = NowNs();
    // Pass on what is due; find when the next chunk falls due.
    int64_t next = now + 50'000'000;  // and look at `stop` that often
    for (Link& link : links) {
      for (Lane& lane : link.lane) {
        if (!link.broken && !Flush(lane, now)) link.broken = true;
        if (!lane.queue.empty() && !lane.blocked) next = std::min(next, lane.queue.front().due_ns);
      }
    }
    links.remove_if([](const Link& l) { return l.broken || (l.lane[0].done && l.lane[1].done); });

    fds.assign(1, pollfd{listen_fd_, POLLIN, 0});
    owners.clear();
    for (Link& link : links) {
      for (int side = 0; side < 2; ++side) {
        // Side `side` is read by lane `side` and written by the other lane.
        short events = 0;
        if (!link.lane[side].read_eof) events |= POLLIN;
        if (link.lane[1 - side].blocked) events |= POLLOUT;
        // (Nothing to wait for: left out, or a closed peer's POLLHUP would
        // spin the loop until the next chunk falls due.)
        fds.push_back(pollfd{events != 0 ? link.fd[side] : -1, events, 0});
        owners.emplace_back(&link, side);
      }
    }
    const int64_t wait_ms = std::max<int64_t>(0, (next - now + 999'999) / 1'000'000);
    if (poll(fds.data(), fds.size(), static_cast<int>(wait_ms)) < 0 && errno != EINTR) return;
    now = NowNs();
    const int64_t delay_ns = delay_ms_.load() * 1'000'000;

    for (size_t i = 1; i < fds.size(); ++i) {
      auto [link, side] = owners[i - 1];
      if (link->broken || fds[i].revents == 0) continue;
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        Lane& lane = link->lane[side];
        const ssize_t n = recv(fds[i].fd, buf.data(), buf.size(), 0);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          link->broken = true;
          continue;
        }
        if (n >= 0 && !lane.read_eof) {
          // Never before a chunk read earlier: order is kept.
          const int64_t due = std::max(now + delay_ns, lane.last_due_ns);
          lane.last_due_ns = due;
          lane.queue.push_back(Chunk{due, std::string(buf.data(), static_cast<size_t>(n))});
          if (n == 0) lane.read_eof = true;
        }
      }
    }

    if (fds[0].revents & POLLIN) {
      for (;;) {
        const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0) break;
        sockaddr_in to{};
        Parse(target_host_, target_port_, &to);
        const int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (server < 0 || connect(server, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
          if (server >= 0) close(server);
          close(client);
          continue;
        }
        const int one = 1;
        for (int fd : {client, server}) {
          NonBlocking(fd);
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        Link& link = links.emplace_back();
        link.fd[0] = client;
        link.fd[1] = server;
        link.lane[0].from = client;
        link.lane[0].to = server;
        link.lane[1].from = server;
        link.lane[1].to = client;
      }
    }
  }
}

}  // namespace leasehold::testing
