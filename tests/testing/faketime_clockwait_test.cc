// The libfaketime shim (faketime_clockwait.cc): without it, a timed wait on
// steady_clock under libfaketime never times out; with it, the wait lasts
// its time on the faked clock, scaled by libfaketime's rate.
#include <gtest/gtest.h>

#include <string>

#include "testing/run_command.h"

namespace leasehold::testing {
namespace {

constexpr char kFaketimeLib[] = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

std::string Under(const std::string& preload, const std::string& rate, int* exit_code) {
  return RunCommand("timeout 3 env LD_PRELOAD=" + preload + " FAKETIME='+0 x" + rate + "' " +
                        LEASEHOLD_FAKETIME_CLOCKWAIT_PROBE + " 2>&1",
                    exit_code);
}

TEST(FaketimeClockwaitTest, WithoutTheShimATimedWaitNeverTimesOut) {
  int code = 0;
  const std::string out = Under(kFaketimeLib, "1.0", &code);
  // 124: killed by timeout(1). Anything else: libfaketime is missing (127 or
  // its message) or has learnt pthread_cond_clockwait, and the shim may go.
  EXPECT_EQ(code, 124) << out;
}

TEST(FaketimeClockwaitTest, WithTheShimAWaitLastsItsTimeAtTheFakedRate) {
  int code = 0;
  const std::string out =
      Under(std::string(kFaketimeLib) + ":" + LEASEHOLD_FAKETIME_CLOCKWAIT, "0.5", &code);
  ASSERT_EQ(code, 0) << out;
  const long ms = std::stol(out);
  EXPECT_GE(ms, 380) << "200 ms at half speed lasts 400 ms of the host's time";
  EXPECT_LT(ms, 2500);
}

}  // namespace
}  // namespace leasehold::testing
