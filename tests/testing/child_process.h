// leasehold::testing: starting the servers a test needs as child processes,
// by fork/exec (never through a shell or a daemonizing wrapper), so that the
// fixture knows each PID and stops exactly what it started.
//
// A child dies with the thread that started it (PR_SET_PDEATHSIG): start
// fixtures on a thread that outlives them (the test's own thread). Between
// fork and exec the child makes async-signal-safe calls only (the test
// process has threads).
//
// Thread-safety: free functions; safe from any thread.
#ifndef LEASEHOLD_TESTS_TESTING_CHILD_PROCESS_H_
#define LEASEHOLD_TESTS_TESTING_CHILD_PROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "leasehold/status.h"

namespace leasehold::testing {

// The user a child runs as: another one (switch_user, e.g. `postgres`,
// which refuses root) or the test's own.
struct ProcessUser {
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups{};
};

struct ChildCommand {
  std::vector<std::string> argv{};  // argv[0]: an absolute path
  std::vector<std::string> env{};   // the child's whole environment
  std::string output{};             // stdout and stderr are appended here; "": /dev/null
  std::string input{};              // stdin; "": /dev/null
  bool own_group = false;           // a process group of its own (for group signals)
};

// This process's environment, without the variables whose names start with
// one of `drop` (e.g. {"PG", "LD_PRELOAD="}).
std::vector<std::string> EnvironmentWithout(const std::vector<std::string>& drop);

// fork/exec of `cmd` (as `user` when given). `tag` names the fixture in
// messages. Errors: kInternal.
Result<pid_t> SpawnChild(const ChildCommand& cmd, const std::string& tag,
                         const ProcessUser* user = nullptr);

// Waits up to `timeout` for `pid` (our child) to exit: its wait status, -1
// when it cannot be waited for, nullopt when it still runs.
std::optional<int> WaitChild(pid_t pid, std::chrono::milliseconds timeout);

// "exit code 3", "signal 9".
std::string DescribeExit(int status);

}  // namespace leasehold::testing

#endif  // LEASEHOLD_TESTS_TESTING_CHILD_PROCESS_H_
