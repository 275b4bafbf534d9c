// An LD_PRELOAD shim for tests: shifts the wall clock of the process it is
// loaded into -- clock_gettime(CLOCK_REALTIME*), gettimeofday(), time() --
// by the whole seconds written in the file that
// LEASEHOLD_WALLTIME_OFFSET_FILE names ("+3600", "-3600", "0"), re-read on
// every call, so a test moves a server's clock while it runs. Monotonic and
// boot-time clocks pass through untouched (as an NTP step leaves them).
//
// Why not libfaketime: under a program that allocates with jemalloc
// (Debian's redis-server), libfaketime is entered before it has initialised
// and gives up ("recursive calls to clock_gettime()"). This shim needs no
// initialisation: raw system calls only -- no malloc, no dlsym, no stdio.
//
// Built without sanitizers (it is loaded into programs that have none).
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>

namespace {

long OffsetSeconds() {
  const char* path = std::getenv("LEASEHOLD_WALLTIME_OFFSET_FILE");
  if (!path) return 0;
  const long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[32];
  const long n = syscall(SYS_read, fd, buf, sizeof buf - 1);
  syscall(SYS_close, fd);
  if (n <= 0) return 0;
  long i = 0, sign = 1, value = 0;
  if (buf[0] == '+' || buf[0] == '-') {
    sign = buf[0] == '-' ? -1 : 1;
    i = 1;
  }
  for (; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) value = value * 10 + (buf[i] - '0');
  return sign * value;
}

bool IsWallClock(clockid_t clock) {
  return clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE || clock == CLOCK_TAI;
}

}  // namespace

extern "C" {

int clock_gettime(clockid_t clock, struct timespec* ts) {
  const long r = syscall(SYS_clock_gettime, clock, ts);
  if (r == 0 && IsWallClock(clock)) ts->tv_sec += OffsetSeconds();
  return static_cast<int>(r);
}

int gettimeofday(struct timeval* __restrict tv, void* __restrict) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return -1;
  if (tv) {
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
  }
  return 0;
}

time_t time(time_t* out) {
  struct timespec ts;
  if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return static_cast<time_t>(-1);
  if (out) *out = ts.tv_sec;
  return ts.tv_sec;
}

}  // extern "C"
