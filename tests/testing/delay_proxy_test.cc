// The delaying proxy: it delays by what it is told,
// keeps every byte and their order, and passes an end of stream on.
#include "testing/delay_proxy.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

namespace leasehold::testing {
namespace {

using namespace std::chrono_literals;

// An echo server on 127.0.0.1: one connection, echoes until end of stream,
// then closes.
class Echo {
 public:
  Echo() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&a), len), 0);
    EXPECT_EQ(listen(fd_, 4), 0);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      for (;;) {
        const ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0) break;
        for (ssize_t off = 0; off < n;) {
          const ssize_t w = write(c, buf + off, static_cast<size_t>(n - off));
          if (w <= 0) break;
          off += w;
        }
      }
      close(c);
    });
  }
  ~Echo() {
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

int Connect(const std::string& address) {
  const size_t colon = address.rfind(':');
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
  inet_pton(AF_INET, address.substr(0, colon).c_str(), &a.sin_addr);
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads exactly `n` bytes (or fewer at end of stream).
std::string ReadN(int fd, size_t n) {
  std::string out;
  char buf[65536];
  while (out.size() < n) {
    const ssize_t r = read(fd, buf, std::min(sizeof buf, n - out.size()));
    if (r <= 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

using Clock = std::chrono::steady_clock;

TEST(DelayProxyTest, DelaysEachWayByWhatItIsToldAndKeepsEveryByte) {
  Echo echo;
  auto proxy = DelayProxy::Start("127.0.0.1", echo.address());
  ASSERT_TRUE(proxy.ok()) << proxy.status().ToString();
  (*proxy)->SetDelay(150ms);
  const int fd = Connect((*proxy)->address());
  ASSERT_GE(fd, 0);
  auto start = Clock::now();
  ASSERT_EQ(write(fd, "ping", 4), 4);
  EXPECT_EQ(ReadN(fd, 4), "ping");
  // 150 ms there, 150 ms back.
  EXPECT_GE(Clock::now() - start, 300ms);

  // A megabyte, in order, every byte.
  std::string big(1 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7 + i / 251);
  std::thread writer([&] {
    for (size_t off = 0; off < big.size();) {
      const ssize_t w = write(fd, big.data() + off, std::min<size_t>(8192, big.size() - off));
      if (w <= 0) return;
      off += static_cast<size_t>(w);
    }
  });
  const std::string back = ReadN(fd, big.size());
  writer.join();
  EXPECT_TRUE(back == big) << "got " << back.size() << " bytes, not the ones sent";

  // No delay any more: well under the 300 ms of before.
  (*proxy)->SetDelay(0ms);
  start = Clock::now();
  ASSERT_EQ(write(fd, "pong", 4), 4);
  EXPECT_EQ(ReadN(fd, 4), "pong");
  EXPECT_LT(Clock::now() - start, 250ms);

  // The end of stream passes through: the echo server closes, and so do we.
  shutdown(fd, SHUT_WR);
  char c;
  EXPECT_EQ(read(fd, &c, 1), 0);
  close(fd);
}

TEST(DelayProxyTest, RefusesAddressesOutsideLoopback) {
  EXPECT_FALSE(DelayProxy::Start("10.0.0.1", "127.0.0.1:1").ok());
  EXPECT_FALSE(DelayProxy::Start("127.0.0.1", "192.168.1.1:80").ok());
  EXPECT_FALSE(DelayProxy::Start("127.0.0.1", "no-port").ok());
}

}  // namespace
}  // namespace leasehold::testing
