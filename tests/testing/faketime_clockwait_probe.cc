// Run by faketime_clockwait_test under libfaketime: waits 200 ms on
// steady_clock with a std::condition_variable nobody notifies, and prints
// how long that took on the host's clock (CLOCK_BOOTTIME by the system call
// itself, which libfaketime cannot fake), in milliseconds.
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <mutex>

namespace {
int64_t HostNs() {
  timespec ts{};
  syscall(SYS_clock_gettime, CLOCK_BOOTTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

int main() {
  std::mutex mu;
  std::condition_variable cv;
  std::unique_lock lock(mu);
  const int64_t start = HostNs();
  cv.wait_for(lock, std::chrono::milliseconds(200));
  std::printf("%lld\n", static_cast<long long>((HostNs() - start) / 1'000'000));
  return 0;
}
