// The CLI tests' way to run the leasehold binary (LEASEHOLD_BINARY) on a
// store through a shell: its output (stdout and stderr) and exit code; and
// the checks every networked store's CLI test makes with it.
#ifndef LEASEHOLD_TOOLS_LEASEHOLD_BINARY_TEST_UTIL_H_
#define LEASEHOLD_TOOLS_LEASEHOLD_BINARY_TEST_UTIL_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "cli.h"
#include "leasehold/lease.h"

namespace leasehold::cli {

// Runs `leasehold --store 'STORE_URL' ARGS 2>&1`; `exit_code` gets its exit
// code (-1 when it did not exit normally).
inline std::string RunBinary(const std::string& store_url, const std::string& args,
                             int* exit_code) {
  const std::string cmd =
      std::string(LEASEHOLD_BINARY) + " --store '" + store_url + "' " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return "";
  char buf[4096];
  std::string output;
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, n);
  const int status = pclose(pipe);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return output;
}

// With lease "job" free at sequence 1 on `store_url`: a holder in this
// process (sequence 2) is seen by status, watch and list, `break` frees it, the
// next `run` gets sequence 3, and `bench` measures the store. `status_out`
// gets what status printed, for the store's own checks.
inline void ExpectStatusWatchBreakAndBenchOnTheStore(const std::string& store_url,
                                                     std::string* status_out) {
  using ::testing::HasSubstr;
  auto store = OpenStore(ParseStoreUrl(store_url).value(), Runtime::Create());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto lease =
      Lease::Create(*store, {.name = "job", .owner = "me", .ttl = std::chrono::seconds(5)});
  ASSERT_TRUE(lease.ok());
  auto got = (*lease)->Acquire();
  ASSERT_TRUE(got.ok() && *got) << got.status().ToString();
  std::ostringstream sout, serr;
  EXPECT_EQ(StatusCommand({.store_url = store_url, .name = "job"}, sout, serr), 0) << serr.str();
  EXPECT_THAT(sout.str(), HasSubstr((*lease)->identity()));
  EXPECT_THAT(sout.str(), HasSubstr("sequence  2"));
  *status_out = sout.str();
  std::ostringstream wout, werr;
  EXPECT_EQ(WatchCommand({.store_url = store_url, .name = "job", .max_events = 1}, wout, werr), 0)
      << werr.str();
  EXPECT_THAT(wout.str(), HasSubstr((*lease)->identity()));
  std::ostringstream lout, lerr;
  EXPECT_EQ(ListCommand({.store_url = store_url, .prefix = "jo", .json = true}, lout, lerr), 0)
      << lerr.str();
  const auto listed = nlohmann::json::parse(lout.str(), nullptr, false);
  ASSERT_TRUE(listed.is_array() && listed.size() == 1) << lout.str();
  EXPECT_EQ(listed[0]["name"], "job");
  EXPECT_EQ(listed[0]["holder"], (*lease)->identity());
  EXPECT_EQ(listed[0]["sequence"], 2);

  std::ostringstream bout, berr;
  EXPECT_EQ(BreakCommand({.store_url = store_url, .name = "job", .yes = true}, bout, berr), 0)
      << berr.str();
  int code = -1;
  std::string out =
      RunBinary(store_url, "run --ttl 5s job -- sh -c 'echo seq=$LEASEHOLD_SEQUENCE'", &code);
  EXPECT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("seq=3"));

  out = RunBinary(store_url, "bench --ops 50 --json", &code);
  EXPECT_EQ(code, 0) << out;
  const auto j = nlohmann::json::parse(out.substr(out.find('{')), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << out;
  EXPECT_GT(j.value("cycle_p50_us", 0.0), 0.0);
}

// `leasehold status` on `store_url` (a server nobody serves at
// 127.0.0.1:1, with the password `password` in it) exits 69 naming the
// endpoint and never the password.
inline void ExpectUnreachableExits69WithoutThePassword(const std::string& store_url,
                                                       const std::string& password) {
  int code = -1;
  const std::string out = RunBinary(store_url, "status job", &code);
  EXPECT_EQ(code, kExitUnavailable) << out;
  EXPECT_THAT(out, ::testing::HasSubstr("127.0.0.1:1"));
  EXPECT_THAT(out, ::testing::Not(::testing::HasSubstr(password)));
}

}  // namespace leasehold::cli

#endif  // LEASEHOLD_TOOLS_LEASEHOLD_BINARY_TEST_UTIL_H_
