// An LD_PRELOAD shim for tests, loaded after libfaketime: gives it the
// pthread_cond_clockwait() it lacks.
//
// libfaketime (0.9.10, Debian 12) fakes CLOCK_MONOTONIC as well -- at the
// rate asked for, but starting from the wall clock's value (about 1.8e9 s),
// not from boot -- and converts the absolute deadlines of the waits it
// intercepts. It does not intercept pthread_cond_clockwait(), which
// libstdc++ 12 uses for every std::condition_variable wait on steady_clock
// (wait_for and wait_until alike): the faked deadline reaches the kernel,
// which waits until the real monotonic clock gets there, decades on. A
// process under libfaketime then never wakes from a timed wait unless
// notified: its timers stall.
//
// This shim turns such a wait into pthread_cond_timedwait() on the wall
// clock, which libfaketime does intercept and converts at its rate: the
// time left, measured on the faked clock the deadline was computed on, is
// added to the faked wall clock. libstdc++'s condition variables are
// initialised with the default (wall) clock attribute, so a timedwait on
// them is well-defined.
//
// Built without sanitizers (the drifting-clock tests run in the default
// configuration only).
#include <pthread.h>
#include <time.h>

#include <cstdint>

extern "C" int pthread_cond_clockwait(pthread_cond_t* cond, pthread_mutex_t* mutex, clockid_t clock,
                                      const struct timespec* abstime) {
  if (clock == CLOCK_REALTIME) return pthread_cond_timedwait(cond, mutex, abstime);
  constexpr int64_t kNs = 1'000'000'000;
  timespec now{};
  timespec wall{};
  clock_gettime(clock, &now);  // libfaketime's: the clock the deadline was computed on
  clock_gettime(CLOCK_REALTIME, &wall);
  int64_t left =
      (static_cast<int64_t>(abstime->tv_sec) - now.tv_sec) * kNs + (abstime->tv_nsec - now.tv_nsec);
  if (left < 0) left = 0;
  const int64_t until = static_cast<int64_t>(wall.tv_sec) * kNs + wall.tv_nsec + left;
  const timespec deadline{.tv_sec = static_cast<time_t>(until / kNs),
                          .tv_nsec = static_cast<long>(until % kNs)};
  return pthread_cond_timedwait(cond, mutex, &deadline);
}
