// The CLI tests' way to run the leasehold binary (LEASEHOLD_BINARY) on a
// store through a shell: its output (stdout and stderr) and exit code.
#ifndef LEASEHOLD_TOOLS_LEASEHOLD_BINARY_TEST_UTIL_H_
#define LEASEHOLD_TOOLS_LEASEHOLD_BINARY_TEST_UTIL_H_

#include <sys/wait.h>

#include <cstdio>
#include <string>

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

}  // namespace leasehold::cli

#endif  // LEASEHOLD_TOOLS_LEASEHOLD_BINARY_TEST_UTIL_H_
