#include "testing/child_process.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <thread>

extern char** environ;

namespace leasehold::testing {
namespace {

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

}  // namespace

std::vector<std::string> EnvironmentWithout(const std::vector<std::string>& drop) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view v(*e);
    bool keep = true;
    for (const std::string& d : drop) keep = keep && !v.starts_with(d);
    if (keep) env.emplace_back(v);
  }
  return env;
}

Result<pid_t> SpawnChild(const ChildCommand& cmd, const std::string& tag, const ProcessUser* user) {
  if (cmd.argv.empty()) return InternalError(tag + ": nothing to run");
  std::vector<std::string> args = cmd.argv;
  std::vector<std::string> env = cmd.env;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const std::string out = cmd.output.empty() ? "/dev/null" : cmd.output;
  const std::string in = cmd.input.empty() ? "/dev/null" : cmd.input;
  const int out_fd = open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (out_fd < 0) return InternalError(Errno(tag + ": open " + out));
  const int in_fd = open(in.c_str(), O_RDONLY | O_CLOEXEC);
  if (in_fd < 0) {
    close(out_fd);
    return InternalError(Errno(tag + ": open " + in));
  }
  const std::string exec_failed = tag + ": exec " + cmd.argv[0] + " failed (is it installed?)\n";
  const std::string switch_failed = tag + ": cannot switch to the server's user\n";
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid == 0) {
    auto fail = [](const std::string& msg) {
      (void)!write(2, msg.data(), msg.size());
      _exit(127);
    };
    dup2(in_fd, 0);
    dup2(out_fd, 1);
    dup2(out_fd, 2);
    close_range(3, ~0U, 0);
    if (cmd.own_group) setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    if (user && user->switch_user &&
        (setgroups(user->groups.size(), user->groups.data()) != 0 || setgid(user->gid) != 0 ||
         setuid(user->uid) != 0)) {
      fail(switch_failed);
    }
    // After setuid, which clears it: a test process that dies takes its
    // servers with it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    execve(argv[0], argv.data(), envp.data());
    fail(exec_failed);
  }
  close(out_fd);
  close(in_fd);
  if (pid < 0) return InternalError(Errno(tag + ": fork"));
  // Also from here, so that no signal to the group can miss the child.
  if (cmd.own_group) setpgid(pid, pid);
  return pid;
}

std::optional<int> WaitChild(pid_t pid, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return status;
    if (r < 0 && errno != EINTR) return -1;
    if (std::chrono::steady_clock::now() > until) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "signal " + std::to_string(WTERMSIG(status));
  return "status " + std::to_string(status);
}

}  // namespace leasehold::testing
