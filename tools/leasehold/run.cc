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
#include <chrono>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli.h"
#include "http_face.h"
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

int64_t Ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

// What `run` says on stderr (the command's own output stays the user's).
// text: only what went wrong, "leasehold run: ..." lines. json
// (--log-format json): one object per line for each step, with keys time
// (UTC, milliseconds), level (info, warning, error), event and lease, plus
// the event's own -- see docs/cli.md.
class RunLog {
 public:
  RunLog(std::ostream& err, bool json, std::string lease)
      : err_(err), json_(json), lease_(std::move(lease)) {}

  // A step: JSON only.
  void Info(std::string_view event, nlohmann::json fields = nlohmann::json::object()) {
    if (json_) Line("info", event, std::move(fields));
  }
  // Not fatal (a renewal gone wrong, a failed release): both formats.
  void Warning(std::string_view event, const std::string& message,
               nlohmann::json fields = nlohmann::json::object()) {
    Say("warning", event, message, std::move(fields));
  }
  // The end of the run: both formats; returns `exit_code`.
  int Fail(std::string_view event, const std::string& message, int exit_code,
           nlohmann::json fields = nlohmann::json::object()) {
    fields["exit_code"] = exit_code;
    Say("error", event, message, std::move(fields));
    return exit_code;
  }

 private:
  void Say(std::string_view level, std::string_view event, const std::string& message,
           nlohmann::json fields) {
    if (!json_) {
      err_ << "leasehold run: " << message << "\n" << std::flush;
      return;
    }
    fields["message"] = message;
    Line(level, event, std::move(fields));
  }
  void Line(std::string_view level, std::string_view event, nlohmann::json fields) {
    nlohmann::json j = {{"time", internal::FormatWallTime(std::chrono::system_clock::now())},
                        {"level", level},
                        {"event", event},
                        {"lease", lease_}};
    j.update(fields);
    err_ << internal::JsonText(j) << "\n" << std::flush;
  }

  std::ostream& err_;
  const bool json_;
  const std::string lease_;
};

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
  RunLog log(err, args.json_log, args.name);
  if (args.command.empty()) {
    return log.Fail("usage", "a command is required after --", kExitUsage);
  }
  if (args.ttl <= Duration::zero()) {
    return log.Fail("usage", "--ttl must be positive", kExitUsage);
  }
  const Duration kill_after = args.kill_after.value_or(DefaultKillAfter(args.ttl));
  if (kill_after * 2 >= args.ttl) {
    return log.Fail("usage",
                    "--kill-after (" + FormatDuration(kill_after) +
                        ") must be less than half of --ttl (" + FormatDuration(args.ttl) + ")",
                    kExitUsage);
  }
  if (!args.metrics.empty()) {
    if (auto address = ParseListenAddress(args.metrics, "--metrics"); !address.ok()) {
      return log.Fail("usage", std::string(address.status().message()), kExitUsage);
    }
  }
  auto spec = ParseStoreUrl(args.store_url);
  if (!spec.ok()) {
    return log.Fail("usage", std::string(spec.status().message()), kExitUsage);
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
    return log.Fail("setup", std::string("signalfd/eventfd: ") + std::strerror(errno),
                    kExitUnavailable);
  }

  CommandRuntime runtime;
  const Clock& clock = runtime.get()->clock();
  auto store = OpenStore(*spec, runtime.get());
  if (!store.ok()) {
    return log.Fail("store", store.status().ToString(), ExitCodeFor(store.status()));
  }
  internal::HttpFace face;  // its /healthz holds the lease: declared before it
  auto created =
      Lease::Create(*store, {.name = args.name,
                             .owner = args.owner.empty() ? HostName() : args.owner,
                             .ttl = args.ttl,
                             .observer = args.metrics.empty() ? nullptr : face.observer()});
  if (!created.ok()) {
    return log.Fail("usage", std::string(created.status().message()), kExitUsage);
  }
  const std::shared_ptr<Lease> lease = std::move(*created);
  Lease& l = *lease;
  if (!args.metrics.empty()) {
    if (Status s =
            face.Listen("--metrics", args.metrics, [lease] { return CheckRenewing(*lease); });
        !s.ok()) {
      return log.Fail("metrics", std::string(s.message()), ExitCodeFor(s));
    }
    log.Info("serving", {{"metrics", "http://" + args.metrics + "/metrics"},
                         {"healthz", "http://" + args.metrics + "/healthz"}});
  }
  log.Info("acquiring", {{"store", (*store)->Describe()},
                         {"owner", l.identity()},
                         {"ttl_ms", Ms(args.ttl)},
                         {"wait", args.wait}});

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
    if (s.code() == StatusCode::kCancelled) {
      log.Info("interrupted", {{"signal", interrupted}, {"exit_code", 128 + interrupted}});
      return 128 + interrupted;
    }
    if (s.code() == StatusCode::kDeadlineExceeded && args.timeout) {
      return log.Fail("not_acquired",
                      "lease \"" + args.name + "\" not acquired within --timeout " +
                          FormatDuration(*args.timeout),
                      kExitNotAcquired, {{"reason", "timeout"}});
    }
    return log.Fail("store", s.ToString(), ExitCodeFor(s));
  }
  if (!acquired->has_value()) {
    return log.Fail("not_acquired", "lease \"" + args.name + "\" is held by someone else",
                    kExitNotAcquired, {{"reason", "held"}});
  }
  const FencingToken token = **acquired;
  {
    const auto deadline = l.safe_deadline();
    log.Info("acquired", {{"sequence", token.sequence},
                          {"token", token.value},
                          {"expires_in_ms", deadline ? nlohmann::json(Ms(*deadline - clock.Now()))
                                                     : nlohmann::json(nullptr)}});
  }
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
    const int fork_errno = errno;
    (void)l.Release();
    return log.Fail("fork", std::string("fork: ") + std::strerror(fork_errno), kExitUnavailable);
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
  log.Info("started", {{"pid", child}, {"command", args.command}});

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
      log.Info("losing", {{"reason", lost ? "lost" : "no renewal confirmed in time"},
                          {"kill_in_ms", Ms(kill_at - now)}});
    }
    if (losing && !termed) {
      kill(-group, SIGTERM);
      termed = true;
      log.Info("signalled", {{"signal", SIGTERM}, {"pid", group}});
    }
    if (losing && !killed && clock.Now() >= kill_at) {
      kill(-group, SIGKILL);
      killed = true;
      log.Info("signalled", {{"signal", SIGKILL}, {"pid", group}});
    }
    int wait_ms = 1000;
    if (!losing && deadline) wait_ms = MsUntil(clock, *deadline - kill_after, 1000);
    if (losing && !killed) wait_ms = MsUntil(clock, kill_at, 1000);
    pollfd fds[2] = {{sigfd.get(), POLLIN, 0}, {lostfd.get(), POLLIN, 0}};
    if (poll(fds, 2, wait_ms) < 0 && errno != EINTR) break;
    if (fds[1].revents & POLLIN) Drain(lostfd.get());
    signalfd_siginfo info;
    while (read(sigfd.get(), &info, sizeof info) == sizeof info) {
      if (info.ssi_signo == SIGCHLD) continue;
      kill(-group, static_cast<int>(info.ssi_signo));
      log.Info("forwarded", {{"signal", info.ssi_signo}, {"pid", group}});
    }
    const pid_t r = waitpid(child, &wstatus, WNOHANG);
    if (r == child) exited = true;
  }
  // 5. Nothing of the command may outlive it without the lease.
  kill(-group, SIGKILL);
  {
    nlohmann::json fields = {{"pid", child}, {"exit_code", ExitStatusOf(wstatus)}};
    if (WIFSIGNALED(wstatus)) fields["signal"] = WTERMSIG(wstatus);
    log.Info("exited", std::move(fields));
  }

  if (losing) {
    std::string why;
    {
      std::lock_guard lock(lost_mu);
      why = lost_message.empty() ? "no renewal confirmed before its safe deadline" : lost_message;
    }
    (void)l.Release();  // in case the lease was only at risk; conditional on our tenure
    return log.Fail("lost", "lease \"" + args.name + "\" lost while the command ran: " + why,
                    kExitLost, {{"sequence", token.sequence}});
  }
  if (Status s = l.Release(); !s.ok()) {
    log.Warning("release_failed", s.ToString(), {{"sequence", token.sequence}});
  } else {
    log.Info("released", {{"sequence", token.sequence}});
  }
  return ExitStatusOf(wstatus);
}

}  // namespace leasehold::cli
