// `leasehold demo`: the main job's showcase. Three `leasehold run` contenders
// for one lease on the store (the embedded SQLite file by default): the holder
// is killed without warning (SIGKILL), a waiting contender takes over once the
// store lets the lease expire, then hands over gracefully (SIGTERM) to the
// third. Prints a timeline and checks what it claims.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "cli.h"

namespace leasehold::cli {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

struct Contender {
  std::string name{};
  pid_t pid = -1;
  int out = -1;  // the command's stdout
  std::string buffer{};
  bool done = false;
};

class Demo {
 public:
  Demo(const DemoArgs& args, std::ostream& out) : args_(args), out_(out), start_(Clock::now()) {
    lease_ = "leasehold-demo-" + std::to_string(getpid());
  }

  double Ms() const {
    return std::chrono::duration<double, std::milli>(Clock::now() - start_).count();
  }

  void Say(const std::string& who, const std::string& what) {
    char line[256];
    std::snprintf(line, sizeof line, "t=%8.1fms  %-8s %s\n", Ms(), who.c_str(), what.c_str());
    out_ << line << std::flush;
  }

  // Starts `leasehold run` for `name`; the command prints its sequence, then
  // sleeps until it is stopped.
  bool Start(Contender& c) {
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) return false;
    c.pid = fork();
    if (c.pid < 0) return false;
    if (c.pid == 0) {
      dup2(pipefd[1], 1);
      const std::string ttl = std::to_string(kTtlMs) + "ms";
      execl(args_.self.c_str(), args_.self.c_str(), "--store", args_.store_url.c_str(), "run",
            lease_.c_str(), "--ttl", ttl.c_str(), "--kill-after", "200ms", "--wait", "--owner",
            c.name.c_str(), "--", "/bin/sh", "-c",
            "echo \"held $LEASEHOLD_SEQUENCE\"; exec sleep 3600", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(pipefd[1]);
    c.out = pipefd[0];
    return true;
  }

  // Waits up to `limit` for a contender to print "held N"; returns its index.
  int WaitForHolder(milliseconds limit) {
    const auto until = Clock::now() + limit;
    while (Clock::now() < until) {
      std::vector<pollfd> fds;
      std::vector<int> index;
      for (size_t i = 0; i < contenders_.size(); ++i) {
        if (contenders_[i].out >= 0) {
          fds.push_back({contenders_[i].out, POLLIN, 0});
          index.push_back(static_cast<int>(i));
        }
      }
      const int left =
          static_cast<int>(std::chrono::duration_cast<milliseconds>(until - Clock::now()).count());
      if (fds.empty() || poll(fds.data(), fds.size(), std::max(left, 1)) <= 0) continue;
      for (size_t k = 0; k < fds.size(); ++k) {
        if (!(fds[k].revents & (POLLIN | POLLHUP))) continue;
        Contender& c = contenders_[index[k]];
        char buf[256];
        const ssize_t n = read(c.out, buf, sizeof buf);
        if (n <= 0) {
          close(c.out);
          c.out = -1;
          continue;
        }
        c.buffer.append(buf, n);
        const size_t nl = c.buffer.find('\n');
        if (nl != std::string::npos && c.buffer.rfind("held ", 0) == 0) {
          sequence_[index[k]] = std::stoull(c.buffer.substr(5, nl - 5));
          c.buffer.erase(0, nl + 1);
          return index[k];
        }
      }
    }
    return -1;
  }

  int Main() {
    out_ << "leasehold demo: three contenders for lease \"" << lease_ << "\" on " << args_.store_url
         << " (TTL " << kTtlMs << "ms)\n";
    for (const char* name : {"alpha", "bravo", "charlie"}) contenders_.push_back({name});
    if (!Start(contenders_[0])) return Fail("cannot start a contender");
    int holder = WaitForHolder(milliseconds(10'000));
    if (holder != 0) return Fail("alpha did not acquire the free lease");
    Say("alpha", "holds the lease, sequence " + std::to_string(sequence_[0]));
    for (int i : {1, 2}) {
      if (!Start(contenders_[i])) return Fail("cannot start a contender");
      Say(contenders_[i].name, "waiting (leasehold run --wait)");
    }
    usleep(600'000);

    // A crash: the holder's leasehold dies without releasing.
    kill(contenders_[0].pid, SIGKILL);
    const double crash_at = Ms();
    Say("alpha", "killed with SIGKILL (no release; its command dies with it)");
    Reap(contenders_[0]);
    const int next = WaitForHolder(milliseconds(kTtlMs + 5'000));
    if (next < 0) return Fail("nobody took over after the crash");
    const double failover = Ms() - crash_at;
    Say(contenders_[next].name, "holds the lease, sequence " + std::to_string(sequence_[next]) +
                                    "  (failover " + Format(failover) + " after the crash)");
    usleep(400'000);

    // A graceful hand-off: SIGTERM goes to the command, the lease is released.
    const int last = next == 1 ? 2 : 1;
    kill(contenders_[next].pid, SIGTERM);
    const double term_at = Ms();
    Say(contenders_[next].name, "stopped with SIGTERM (forwarded to its command, then released)");
    const int third = WaitForHolder(milliseconds(5'000));
    if (third != last) return Fail("the third contender did not take over");
    const double handoff = Ms() - term_at;
    Say(contenders_[last].name, "holds the lease, sequence " + std::to_string(sequence_[last]) +
                                    "  (hand-off " + Format(handoff) + ")");
    Reap(contenders_[next]);
    kill(contenders_[last].pid, SIGTERM);
    Reap(contenders_[last]);

    const bool increasing = sequence_[0] < sequence_[next] && sequence_[next] < sequence_[last];
    out_ << "\nsummary\n"
         << "  failover after a crash   " << Format(failover) << "  (TTL " << kTtlMs
         << "ms: the store frees the lease when the holder's TTL runs out)\n"
         << "  graceful hand-off        " << Format(handoff)
         << "  (the waiter is woken by the store)\n"
         << "  fencing sequences        " << sequence_[0] << " < " << sequence_[next] << " < "
         << sequence_[last] << (increasing ? "  strictly increasing" : "  NOT INCREASING") << "\n";
    const bool ok = increasing && failover <= kTtlMs + 1000 && handoff < 1000;
    out_ << (ok ? "OK\n" : "FAILED\n");
    return ok ? 0 : 1;
  }

 private:
  static constexpr int kTtlMs = 1000;

  static std::string Format(double ms) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1fms", ms);
    return buf;
  }
  int Fail(const std::string& why) {
    out_ << "leasehold demo: " << why << "\n";
    for (auto& c : contenders_) {
      if (c.pid > 0 && !c.done) {
        kill(c.pid, SIGKILL);
        Reap(c);
      }
    }
    return 1;
  }
  static void Reap(Contender& c) {
    if (c.done || c.pid <= 0) return;
    int status;
    waitpid(c.pid, &status, 0);
    c.done = true;
  }

  const DemoArgs& args_;
  std::ostream& out_;
  const Clock::time_point start_;
  std::string lease_;
  std::vector<Contender> contenders_;
  std::map<int, uint64_t> sequence_;
};

}  // namespace

int DemoCommand(const DemoArgs& args, std::ostream& out, std::ostream& err) {
  auto spec = ParseStoreUrl(args.store_url);
  if (!spec.ok()) {
    err << "leasehold demo: " << spec.status().message() << "\n";
    return kExitUsage;
  }
  if (spec->kind == StoreSpec::Kind::kMemory) {
    err << "leasehold demo: memory: is private to one process; the demo's contenders are "
           "separate processes (use the default SQLite store)\n";
    return kExitUsage;
  }
  return Demo(args, out).Main();
}

}  // namespace leasehold::cli
