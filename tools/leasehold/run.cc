// `leasehold run`: a command that runs only while this process holds a lease.
//
// The timeline of one run:
//   1. acquire (or wait for) the lease; contention or --timeout -> exit 75;
//   2. fork the command into its own process group, with a parent-death signal
//      (if leasehold dies, nothing renews the lease, so the command must die
//      too) and LEASEHOLD_* in its environment;
//   3. renew in the background while it runs. If no renewal has been confirmed
//      by `safe deadline - kill_after`, the lease is being lost: SIGTERM the
//      group, and SIGKILL it no later than the safe deadline; exit 76. A
//      definitive loss (taken over, broken) does the same at once;
//   4. INT/TERM/HUP to leasehold are forwarded to the group;
//   5. when the command exits, kill what is left of its group, release the
//      lease, exit with the command's status.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "cli.h"
#include "leasehold/lease.h"

namespace leasehold::cli::internal {

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

}  // namespace leasehold::cli::internal

namespace leasehold::cli {

using internal::HostName;

namespace {

// Owns a file descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

void Signal(int fd) {
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(fd, &one, sizeof one);
}

void Drain(int fd) {
  uint64_t value;
  [[maybe_unused]] ssize_t n = read(fd, &value, sizeof value);
}

int ExitStatusOf(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return 1;
}

// Milliseconds until `t` on `clock`, at least 0 and at most `cap`.
int MsUntil(const Clock& clock, TimePoint t, int cap) {
  if (t == TimePoint::max()) return cap;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(t - clock.Now()).count();
  return static_cast<int>(std::clamp<int64_t>(ms, 0, cap));
}

}  // namespace

Duration DefaultKillAfter(Duration ttl) {
  return std::min<Duration>(std::chrono::seconds(2), ttl / 4);
}

int Run(const RunArgs& args, std::ostream& err) {
  if (args.command.empty()) {
    err << "leasehold run: a command is required after --\n";
    return kExitUsage;
  }
  if (args.ttl <= Duration::zero()) {
    err << "leasehold run: --ttl must be positive\n";
    return kExitUsage;
  }
  const Duration kill_after = args.kill_after.value_or(DefaultKillAfter(args.ttl));
  if (kill_after * 2 >= args.ttl) {
    err << "leasehold run: --kill-after (" << FormatDuration(kill_after)
        << ") must be less than half of --ttl (" << FormatDuration(args.ttl) << ")\n";
    return kExitUsage;
  }
  auto spec = ParseStoreUrl(args.store_url);
  if (!spec.ok()) {
    err << "leasehold run: " << spec.status().message() << "\n";
    return kExitUsage;
  }

  // Signals are read from a signalfd; block them before any runtime thread
  // exists, so every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD}) sigaddset(&signals, s);
  sigset_t original;
  pthread_sigmask(SIG_BLOCK, &signals, &original);
  Fd sigfd(signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
  Fd lostfd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  Fd acquiredfd(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (sigfd.get() < 0 || lostfd.get() < 0 || acquiredfd.get() < 0) {
    err << "leasehold run: signalfd/eventfd: " << std::strerror(errno) << "\n";
    return kExitUnavailable;
  }

  CommandRuntime runtime;
  const Clock& clock = runtime.get()->clock();
  auto store = OpenStore(*spec, runtime.get());
  if (!store.ok()) {
    err << "leasehold run: " << store.status().ToString() << "\n";
    return ExitCodeFor(store.status());
  }
  auto lease = Lease::Create(
      *store,
      {.name = args.name, .owner = args.owner.empty() ? HostName() : args.owner, .ttl = args.ttl});
  if (!lease.ok()) {
    err << "leasehold run: " << lease.status().message() << "\n";
    return kExitUsage;
  }
  Lease& l = **lease;

  // 1. Acquire, interruptible by INT/TERM/HUP.
  std::stop_source stop;
  auto pending = l.StartAcquire({.wait = args.wait,
                                 .timeout = args.timeout.value_or(Duration::zero()),
                                 .stop = stop.get_token()});
  pending.Then([fd = acquiredfd.get()](const AcquireResult&) { Signal(fd); });
  int interrupted = 0;
  while (!pending.ready()) {
    pollfd fds[2] = {{sigfd.get(), POLLIN, 0}, {acquiredfd.get(), POLLIN, 0}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR) break;
    signalfd_siginfo info;
    while (read(sigfd.get(), &info, sizeof info) == sizeof info) {
      if (info.ssi_signo != SIGCHLD && !interrupted) {
        interrupted = static_cast<int>(info.ssi_signo);
        stop.request_stop();
      }
    }
  }
  const AcquireResult& acquired = pending.Wait();
  if (!acquired.ok()) {
    const Status& s = acquired.status();
    if (s.code() == StatusCode::kCancelled) return 128 + interrupted;
    if (s.code() == StatusCode::kDeadlineExceeded && args.timeout) {
      err << "leasehold run: lease \"" << args.name << "\" not acquired within --timeout "
          << FormatDuration(*args.timeout) << "\n";
      return kExitNotAcquired;
    }
    err << "leasehold run: " << s.ToString() << "\n";
    return ExitCodeFor(s);
  }
  if (!acquired->has_value()) {
    err << "leasehold run: lease \"" << args.name << "\" is held by someone else\n";
    return kExitNotAcquired;
  }
  const FencingToken token = **acquired;

  std::atomic<bool> lost{false};
  std::string lost_message;
  std::mutex lost_mu;
  auto subscription = l.OnLost([&](const LostEvent& event) {
    {
      std::lock_guard lock(lost_mu);
      lost_message = event.message;
    }
    lost = true;
    Signal(lostfd.get());
  });

  // 2. Start the command.
  std::vector<std::string> env = {
      "LEASEHOLD_NAME=" + args.name,       "LEASEHOLD_OWNER=" + l.identity(),
      "LEASEHOLD_TOKEN=" + token.value,    "LEASEHOLD_SEQUENCE=" + std::to_string(token.sequence),
      "LEASEHOLD_STORE=" + args.store_url,
  };
  // Built before fork(): the child of a threaded process should only exec.
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e) {
    if (std::strncmp(*e, "LEASEHOLD_", 10) != 0) envp.push_back(*e);
  }
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  for (const auto& a : args.command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t child = fork();
  if (child < 0) {
    err << "leasehold run: fork: " << std::strerror(errno) << "\n";
    (void)l.Release();
    return kExitUnavailable;
  }
  if (child == 0) {
    setpgid(0, 0);
    // Nothing renews the lease once leasehold is gone: die with it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(kExitLost);  // it died before prctl
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGPIPE}) ::signal(s, SIG_DFL);
    pthread_sigmask(SIG_SETMASK, &original, nullptr);
    execvpe(argv[0], argv.data(), envp.data());
    const int code = errno == ENOENT ? 127 : 126;
    dprintf(2, "leasehold run: cannot run %s: %s\n", argv[0], std::strerror(errno));
    _exit(code);
  }
  setpgid(child, child);  // also here: no race with the first kill below
  const pid_t group = child;

  // 3-4. Supervise.
  bool termed = false;
  bool killed = false;
  bool losing = false;
  TimePoint kill_at = TimePoint::max();
  int wstatus = 0;
  bool exited = false;
  // The safe deadline as last seen: after a loss the lease no longer has one,
  // but the command may still have until then to stop.
  TimePoint last_deadline = l.safe_deadline().value_or(clock.Now());
  while (!exited) {
    const auto deadline = l.safe_deadline();
    if (deadline) last_deadline = *deadline;
    const TimePoint now = clock.Now();
    if (!losing && (lost || !deadline || now >= *deadline - kill_after)) {
      // Lost, or no renewal confirmed in time to give the command its grace:
      // SIGTERM now, SIGKILL after the grace but never after the deadline.
      losing = true;
      kill_at = std::min(last_deadline, now + kill_after);
    }
    if (losing && !termed) {
      kill(-group, SIGTERM);
      termed = true;
    }
    if (losing && !killed && clock.Now() >= kill_at) {
      kill(-group, SIGKILL);
      killed = true;
    }
    int wait_ms = 1000;
    if (!losing && deadline) wait_ms = MsUntil(clock, *deadline - kill_after, 1000);
    if (losing && !killed) wait_ms = MsUntil(clock, kill_at, 1000);
    pollfd fds[2] = {{sigfd.get(), POLLIN, 0}, {lostfd.get(), POLLIN, 0}};
    if (poll(fds, 2, wait_ms) < 0 && errno != EINTR) break;
    if (fds[1].revents & POLLIN) Drain(lostfd.get());
    signalfd_siginfo info;
    while (read(sigfd.get(), &info, sizeof info) == sizeof info) {
      if (info.ssi_signo != SIGCHLD) kill(-group, static_cast<int>(info.ssi_signo));
    }
    const pid_t r = waitpid(child, &wstatus, WNOHANG);
    if (r == child) exited = true;
  }
  // 5. Nothing of the command may outlive it without the lease.
  kill(-group, SIGKILL);

  if (losing) {
    std::string why;
    {
      std::lock_guard lock(lost_mu);
      why = lost_message.empty() ? "no renewal confirmed before its safe deadline" : lost_message;
    }
    err << "leasehold run: lease \"" << args.name << "\" lost while the command ran: " << why
        << "\n";
    (void)l.Release();  // in case the lease was only at risk; conditional on our tenure
    return kExitLost;
  }
  if (Status s = l.Release(); !s.ok()) {
    err << "leasehold run: " << s.ToString() << "\n";
  }
  return ExitStatusOf(wstatus);
}

}  // namespace leasehold::cli
