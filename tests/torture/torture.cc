// The torture test: `leasehold run` contenders under faults, writing through
// their fencing tokens to a fenced resource.
//
//   leasehold_torture drive --leasehold PATH [--store URL] [--contenders 4]
//                           [--seconds 60] [--ttl 300ms]
//   leasehold_torture writer DIR      (the command `leasehold run` runs)
//
// The resource is a file holding the highest sequence admitted; a writer
// admits a write only if its sequence is >= that (under flock), else records a
// rejection. The driver keeps N contenders running (`leasehold run --wait`),
// and at random moments SIGKILLs one or SIGSTOPs one (with its command) past
// the TTL and resumes it. Writers also finish voluntarily after a few writes,
// so tenures turn over quickly. Then the faults stop and the driver checks:
//   * every tenure has a sequence of its own (no sequence issued twice);
//   * no write was admitted with a sequence below one admitted before (the
//     oracle: a stale holder never gets a write in); pausing only leasehold
//     while its command writes on creates stale holders, and the number of
//     their writes the fence rejected is reported;
//   * once the faults stop, someone holds the lease and writes within
//     TTL + 1 s (--recover-ms: more in sanitized builds).
// Exit 0 if all hold. Works against any store URL (default: a fresh SQLite
// file).
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

int64_t NowMs() {
  return std::chrono::duration_cast<milliseconds>(Clock::now().time_since_epoch()).count();
}

void Append(const std::string& path, const std::string& line) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return;
  [[maybe_unused]] ssize_t n = write(fd, line.data(), line.size());
  close(fd);
}

// --- writer -------------------------------------------------------------------

int Writer(const std::string& dir) {
  const char* seq_env = std::getenv("LEASEHOLD_SEQUENCE");
  if (!seq_env) return 2;
  const unsigned long long seq = std::strtoull(seq_env, nullptr, 10);
  Append(dir + "/starts", std::to_string(NowMs()) + " " + std::to_string(seq) + " " +
                              std::to_string(getpid()) + "\n");
  std::mt19937 rng(static_cast<unsigned>(getpid()) ^ static_cast<unsigned>(seq));
  // Most tenures are short (hand-offs turn over quickly); one in eight writes
  // for longer than a TTL, so pausing its leasehold leaves a writer going stale.
  const int writes =
      rng() % 8 == 0 ? 100 + static_cast<int>(rng() % 60) : 5 + static_cast<int>(rng() % 20);
  const std::string fence = dir + "/fence";
  for (int i = 0; i < writes; ++i) {
    const int fd = open(fence.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return 2;
    flock(fd, LOCK_EX);
    char buf[32] = {};
    [[maybe_unused]] ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    const unsigned long long highest = std::strtoull(buf, nullptr, 10);
    const bool admitted = seq >= highest;
    if (admitted) {
      const std::string v = std::to_string(seq) + "\n";
      [[maybe_unused]] int t = ftruncate(fd, 0);
      [[maybe_unused]] ssize_t w = pwrite(fd, v.data(), v.size(), 0);
    }
    // Logged under the fence's lock: the log's order is the admission order.
    Append(dir + "/writes", std::to_string(NowMs()) + (admitted ? " admit " : " reject ") +
                                std::to_string(seq) + " " + std::to_string(highest) + "\n");
    flock(fd, LOCK_UN);
    close(fd);
    if (!admitted) return 3;  // fenced out: a stale holder
    std::this_thread::sleep_for(milliseconds(3));
  }
  return 0;
}

// --- driver -------------------------------------------------------------------

struct Options {
  std::string leasehold;
  std::string store;
  int contenders = 4;
  int seconds = 60;
  std::string ttl = "300ms";
  int ttl_ms = 300;
  // After the faults stop, someone must write within TTL + this.
  int recover_ms = 1000;
};

struct Contender {
  pid_t pid = -1;
  bool stopped = false;
  int64_t resume_at = 0;
};

pid_t Start(const Options& o, const std::string& dir, const std::string& self) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    setpgid(0, 0);  // its own group: SIGSTOP reaches leasehold and its command
    execl(o.leasehold.c_str(), o.leasehold.c_str(), "--store", o.store.c_str(), "run", "torture",
          "--ttl", o.ttl.c_str(), "--kill-after", "50ms", "--wait", "--", self.c_str(), "writer",
          dir.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  setpgid(pid, pid);
  return pid;
}

std::vector<std::vector<std::string>> ReadLines(const std::string& path) {
  std::vector<std::vector<std::string>> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::vector<std::string> f;
    std::string w;
    while (fields >> w) f.push_back(w);
    if (!f.empty()) out.push_back(f);
  }
  return out;
}

int Drive(const Options& o, const std::string& self) {
  char pattern[] = "/tmp/leasehold-torture-XXXXXX";
  if (!mkdtemp(pattern)) return 2;
  const std::string dir = pattern;
  Options opt = o;
  if (opt.store.empty()) opt.store = "sqlite://" + dir + "/leases.db";
  std::printf("torture: %d contenders on %s, TTL %s, %d s of faults\n", opt.contenders,
              opt.store.c_str(), opt.ttl.c_str(), opt.seconds);

  std::mt19937 rng(12345);
  std::vector<Contender> cs(opt.contenders);
  for (auto& c : cs) c.pid = Start(opt, dir, self);
  int kills = 0, stops = 0;
  const int64_t end = NowMs() + opt.seconds * 1000LL;
  int64_t next_fault = NowMs() + 200;
  while (NowMs() < end) {
    // Respawn the finished; resume the paused whose time has come.
    for (auto& c : cs) {
      int status;
      if (c.pid > 0 && !c.stopped && waitpid(c.pid, &status, WNOHANG) == c.pid)
        c.pid = Start(opt, dir, self);
      if (c.stopped && NowMs() >= c.resume_at) {
        kill(-c.pid, SIGCONT);  // the group: covers both kinds of pause
        c.stopped = false;
      }
    }
    if (NowMs() >= next_fault) {
      Contender& c = cs[rng() % cs.size()];
      if (!c.stopped && c.pid > 0) {
        if (rng() % 2 == 0) {
          kill(-c.pid, SIGKILL);  // leasehold and its command at once
          ++kills;
        } else {
          // Paused past its TTL, then resumed: the whole group, or only
          // leasehold while its command goes on writing with a token that is
          // going stale (the fence must reject it once a newer holder wrote).
          if (rng() % 2 == 0) {
            kill(-c.pid, SIGSTOP);
          } else {
            kill(c.pid, SIGSTOP);
          }
          c.stopped = true;
          c.resume_at = NowMs() + opt.ttl_ms * 3 / 2 + static_cast<int>(rng() % opt.ttl_ms);
          ++stops;
        }
      }
      next_fault = NowMs() + 100 + static_cast<int>(rng() % 300);
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  // Faults stop: resume everyone, then someone must hold and write soon.
  for (auto& c : cs) {
    if (c.stopped) kill(-c.pid, SIGCONT);
    c.stopped = false;
  }
  const int64_t faults_stopped = NowMs();
  int64_t first_write_after = -1;
  while (NowMs() < faults_stopped + opt.ttl_ms + opt.recover_ms + 2000 && first_write_after < 0) {
    for (auto& c : cs) {
      int status;
      if (c.pid > 0 && waitpid(c.pid, &status, WNOHANG) == c.pid) c.pid = Start(opt, dir, self);
    }
    for (const auto& f : ReadLines(dir + "/writes")) {
      const int64_t t = std::stoll(f[0]);
      if (f[1] == "admit" && t > faults_stopped + opt.ttl_ms + 5) first_write_after = t;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
  for (auto& c : cs) {
    kill(-c.pid, SIGKILL);
    waitpid(c.pid, nullptr, 0);
  }

  // Checks.
  bool ok = true;
  auto starts = ReadLines(dir + "/starts");
  std::set<unsigned long long> seen;
  unsigned long long previous = 0;
  int duplicates = 0, out_of_order = 0;
  for (const auto& f : starts) {
    const unsigned long long seq = std::stoull(f[1]);
    if (!seen.insert(seq).second) ++duplicates;
    // Informational: a tenure paused between its acquire and its first log
    // line legitimately logs after a later tenure.
    if (seq <= previous) ++out_of_order;
    previous = std::max(previous, seq);
  }
  int admitted = 0, rejected = 0, stale_admitted = 0;
  unsigned long long highest = 0;
  for (const auto& f : ReadLines(dir + "/writes")) {
    const unsigned long long seq = std::stoull(f[2]);
    if (f[1] == "admit") {
      ++admitted;
      if (seq < highest) ++stale_admitted;
      highest = std::max(highest, seq);
    } else {
      ++rejected;
    }
  }
  const double liveness_ms =
      first_write_after < 0 ? -1 : static_cast<double>(first_write_after - faults_stopped);
  std::printf(
      "torture: %zu tenures, %d SIGKILLs, %d SIGSTOPs; %d writes admitted, %d stale writes "
      "rejected, %d stale writes admitted\n",
      starts.size(), kills, stops, admitted, rejected, stale_admitted);
  std::printf(
      "torture: sequences: %d issued twice (%d logged out of order by paused tenures); "
      "after the faults someone wrote within %.0f ms (limit %d ms)\n",
      duplicates, out_of_order, liveness_ms, opt.ttl_ms + opt.recover_ms);
  if (duplicates || stale_admitted) ok = false;
  if (starts.size() < 10 || admitted == 0) {
    std::printf("torture: too few tenures to mean anything\n");
    ok = false;
  }
  if (liveness_ms < 0 || liveness_ms > opt.ttl_ms + opt.recover_ms) ok = false;
  std::printf("torture: %s\n", ok ? "OK" : "FAILED");
  if (ok)
    std::system(("rm -rf " + dir).c_str());
  else
    std::printf("torture: logs kept in %s\n", dir.c_str());
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "writer") == 0) return Writer(argv[2]);
  if (argc < 2 || std::strcmp(argv[1], "drive") != 0) {
    std::fprintf(stderr,
                 "usage: %s drive --leasehold PATH [--store URL] [--contenders N] [--seconds S] "
                 "[--ttl-ms MS] [--recover-ms MS]\n       %s writer DIR\n",
                 argv[0], argv[0]);
    return 64;
  }
  Options o;
  for (int i = 2; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--leasehold")
      o.leasehold = v;
    else if (k == "--store")
      o.store = v;
    else if (k == "--contenders")
      o.contenders = std::max(2, std::atoi(v.c_str()));
    else if (k == "--seconds")
      o.seconds = std::max(1, std::atoi(v.c_str()));
    else if (k == "--ttl-ms")
      o.ttl_ms = std::max(100, std::atoi(v.c_str()));
    else if (k == "--recover-ms")
      o.recover_ms = std::max(0, std::atoi(v.c_str()));
    else {
      std::fprintf(stderr, "unknown option %s\n", k.c_str());
      return 64;
    }
  }
  o.ttl = std::to_string(o.ttl_ms) + "ms";
  if (o.leasehold.empty()) {
    std::fprintf(stderr, "--leasehold PATH is required\n");
    return 64;
  }
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return 2;
  self[n] = '\0';
  return Drive(o, self);
}
