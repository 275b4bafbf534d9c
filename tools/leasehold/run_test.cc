// `leasehold run` end to end: the built binary against a real SQLite file in a
// fresh directory. Exit codes, environment, contention, loss, signals, and
// that the command never outlives leasehold.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli.h"
#include "leasehold/backends/sqlite.h"
#include "leasehold/future.h"
#include "testing/free_port.h"
#include "testing/tenure_probe.h"

namespace leasehold {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;

class RunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/leasehold-run-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
    url_ = "sqlite://" + dir_ + "/leases.db";
  }
  void TearDown() override {
    for (pid_t pid : background_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    std::system(("rm -rf " + dir_).c_str());
  }

  // Starts `leasehold --store URL args...` with stdout/stderr to files.
  pid_t Spawn(const std::vector<std::string>& args) {
    std::vector<std::string> full = {LEASEHOLD_BINARY};
    if (args.empty() || args.front() != "--store") full.insert(full.end(), {"--store", url_});
    full.insert(full.end(), args.begin(), args.end());
    const std::string log = dir_ + "/out-" + std::to_string(spawned_++);
    const pid_t pid = fork();
    if (pid == 0) {
      const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(fd, 1);
      dup2(fd, 2);
      std::vector<char*> argv;
      for (auto& a : full) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    last_log_ = log;
    return pid;
  }
  pid_t SpawnBackground(const std::vector<std::string>& args) {
    const pid_t pid = Spawn(args);
    background_.push_back(pid);
    return pid;
  }
  // Exit code of a finished process (128+signal if killed); -1 on timeout.
  int Wait(pid_t pid, std::chrono::milliseconds limit = 10s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    int status = 0;
    while (std::chrono::steady_clock::now() < until) {
      if (waitpid(pid, &status, WNOHANG) == pid) {
        std::erase(background_, pid);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(5ms);
    }
    return -1;
  }
  int RunToEnd(const std::vector<std::string>& args) { return Wait(Spawn(args)); }
  std::string Log() const {
    std::ifstream in(last_log_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // The record as another process sees it.
  Result<LeaseRecord> Inspect(const std::string& name) {
    auto store = SqliteStore::Open({.path = dir_ + "/leases.db"});
    if (!store.ok()) return store.status();
    Promise<Result<LeaseRecord>> out(nullptr);
    (*store)->Inspect(name, RealClock().Now() + 5s,
                      [out](Result<LeaseRecord> r) mutable { out.Set(std::move(r)); });
    return out.future().Wait();
  }
  bool WaitHeld(const std::string& name, std::chrono::milliseconds limit = 5s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      auto r = Inspect(name);
      if (r.ok() && !r->holder.empty()) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  // Whether `path` exists within `limit`: a command's "I am ready" file.
  static bool WaitForFile(const std::string& path, std::chrono::milliseconds limit = 10s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (access(path.c_str(), F_OK) != 0) {
      if (std::chrono::steady_clock::now() >= until) return false;
      std::this_thread::sleep_for(5ms);
    }
    return true;
  }

  std::string dir_;
  std::string url_;
  std::string last_log_;
  int spawned_ = 0;
  std::vector<pid_t> background_;
};

TEST_F(RunTest, ExitsWithTheCommandsStatusAndReleasesTheLease) {
  EXPECT_EQ(RunToEnd({"run", "job", "--", "sh", "-c", "exit 7"}), 7);
  auto record = Inspect("job");
  ASSERT_TRUE(record.ok()) << record.status().ToString();
  EXPECT_EQ(record->holder, "") << "the lease was not released";
}

TEST_F(RunTest, TheCommandGetsTheLeaseInItsEnvironment) {
  const std::string check =
      "test \"$LEASEHOLD_NAME\" = job && test -n \"$LEASEHOLD_TOKEN\" && "
      "test \"$LEASEHOLD_SEQUENCE\" -ge 1 && test \"$LEASEHOLD_STORE\" = '" +
      url_ + "' && case \"$LEASEHOLD_OWNER\" in me#*) exit 0;; esac; exit 9";
  EXPECT_EQ(RunToEnd({"run", "job", "--owner", "me", "--", "sh", "-c", check}), 0) << Log();
}

TEST_F(RunTest, AHeldLeaseExits75WithoutRunningTheCommand) {
  SpawnBackground({"run", "job", "--", "sleep", "30"});
  ASSERT_TRUE(WaitHeld("job"));
  const std::string marker = dir_ + "/ran";
  EXPECT_EQ(RunToEnd({"run", "job", "--", "touch", marker}), 75);
  EXPECT_NE(Log().find("held by someone else"), std::string::npos) << Log();
  EXPECT_NE(access(marker.c_str(), F_OK), 0) << "the command ran without the lease";
}

TEST_F(RunTest, WaitingGivesUpAfterTheTimeoutWith75) {
  SpawnBackground({"run", "job", "--", "sleep", "30"});
  ASSERT_TRUE(WaitHeld("job"));
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(RunToEnd({"run", "job", "--wait", "--timeout", "300ms", "--", "true"}), 75);
  EXPECT_GE(std::chrono::steady_clock::now() - start, 300ms);
}

TEST_F(RunTest, AWaiterRunsAsSoonAsTheHolderFinishes) {
  const pid_t holder = SpawnBackground({"run", "job", "--", "sleep", "1"});
  ASSERT_TRUE(WaitHeld("job"));
  const pid_t waiter = Spawn({"run", "job", "--wait", "--timeout", "10s", "--", "true"});
  EXPECT_EQ(Wait(holder), 0);
  EXPECT_EQ(Wait(waiter), 0) << Log();
}

TEST_F(RunTest, ALeaseLostWhileTheCommandRunsStopsItAndExits76) {
  const std::string marker = dir_ + "/terminated";
  const std::string ready = dir_ + "/trapping";
  // The grace (--kill-after) must outlast the trap's `touch` on a loaded
  // machine; the TTL caps it (SIGKILL never comes after the safe deadline).
  const pid_t run =
      Spawn({"run", "job", "--ttl", "3s", "--kill-after", "1s", "--", "sh", "-c",
             "trap 'touch " + marker + "; exit 1' TERM; touch " + ready + "; sleep 30 & wait"});
  ASSERT_TRUE(WaitHeld("job"));
  // The lease is held before the command starts: break it only once the
  // command's trap is in place.
  ASSERT_TRUE(WaitForFile(ready)) << "the command did not start";
  // An operator breaks the lease: the holder's next renewal finds it gone.
  auto store = SqliteStore::Open({.path = dir_ + "/leases.db"});
  ASSERT_TRUE(store.ok());
  Promise<Status> broke(nullptr);
  (*store)->Break("job", RealClock().Now() + 5s, [broke](Status s) mutable { broke.Set(s); });
  ASSERT_TRUE(broke.future().Wait().ok());
  EXPECT_EQ(Wait(run, 5s), 76) << Log();
  EXPECT_NE(Log().find("lost"), std::string::npos) << Log();
  EXPECT_EQ(access(marker.c_str(), F_OK), 0) << "the command was not sent SIGTERM";
}

TEST_F(RunTest, SigtermIsForwardedToTheCommandThenTheLeaseIsReleased) {
  const std::string ready = dir_ + "/trapping";
  const pid_t run = Spawn({"run", "job", "--", "sh", "-c",
                           "trap 'exit 42' TERM; touch " + ready + "; sleep 30 & wait"});
  // Signal only once the command's trap is in place (the lease is held
  // before the command starts).
  ASSERT_TRUE(WaitForFile(ready)) << "the command did not start";
  kill(run, SIGTERM);
  EXPECT_EQ(Wait(run), 42) << Log();
  auto record = Inspect("job");
  ASSERT_TRUE(record.ok());
  EXPECT_EQ(record->holder, "");
}

TEST_F(RunTest, TheCommandDiesWithLeasehold) {
  const std::string pidfile = dir_ + "/pid";
  const pid_t run =
      Spawn({"run", "job", "--", "sh", "-c", "echo $$ > " + pidfile + "; exec sleep 30"});
  ASSERT_TRUE(WaitHeld("job"));
  pid_t child = 0;
  for (int i = 0; i < 200 && child == 0; ++i) {
    std::ifstream in(pidfile);
    in >> child;
    if (child == 0) std::this_thread::sleep_for(10ms);
  }
  ASSERT_GT(child, 0);
  kill(run, SIGKILL);  // nothing renews the lease any more
  EXPECT_EQ(Wait(run), 128 + SIGKILL);
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = kill(child, 0) != 0;
    if (!gone) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(gone) << "the command outlived leasehold";
}

// The main job (scripts/demo): three `run` contenders, a crash, a failover, a
// hand-off; the demo checks its own claims and exits non-zero if one fails.
TEST_F(RunTest, TheDemoPrintsATimelineAndItsChecksHold) {
  EXPECT_EQ(Wait(Spawn({"demo"}), 30s), 0) << Log();
  const std::string log = Log();
  for (const char* line :
       {"killed with SIGKILL", "failover", "hand-off", "strictly increasing", "OK"}) {
    EXPECT_NE(log.find(line), std::string::npos) << "missing \"" << line << "\" in:\n" << log;
  }
}

// The default grace fits every TTL: short ones run with default flags (the
// grace used to be a fixed 2 s, refused for any TTL up to 4 s).
TEST_F(RunTest, ShortTtlsRunWithTheDefaultGrace) {
  for (const char* ttl : {"1s", "2s", "3s"}) {
    EXPECT_EQ(RunToEnd({"run", "job", "--ttl", ttl, "--", "sh", "-c", "exit 3"}), 3)
        << "--ttl " << ttl << ": " << Log();
  }
  EXPECT_EQ(cli::DefaultKillAfter(1s), 250ms);
  EXPECT_EQ(cli::DefaultKillAfter(3s), 750ms);
  EXPECT_EQ(cli::DefaultKillAfter(15s), 2s);
  // A grace asked for is still checked against the TTL.
  EXPECT_EQ(RunToEnd({"run", "job", "--ttl", "2s", "--kill-after", "1s", "--", "true"}), 64);
  EXPECT_NE(Log().find("--kill-after (1s) must be less than half of --ttl (2s)"), std::string::npos)
      << Log();
}

TEST_F(RunTest, VersionNamesTheRelease) {
  EXPECT_EQ(RunToEnd({"--version"}), 0);
  EXPECT_EQ(Log(), "leasehold " LEASEHOLD_VERSION "\n");
}

TEST_F(RunTest, UsageErrorsExit64AndUnbuiltBackendsExit69) {
  EXPECT_EQ(RunToEnd({"run", "job"}), 64);  // no command
  EXPECT_EQ(RunToEnd({"run", "job", "--ttl", "soon", "--", "true"}), 64);
  EXPECT_NE(Log().find("duration"), std::string::npos) << Log();
  EXPECT_EQ(RunToEnd({"run", "job", "--ttl", "1s", "--kill-after", "800ms", "--", "true"}), 64);
  EXPECT_EQ(Wait(Spawn({"--store", "sqlite://relative.db", "run", "job", "--", "true"})), 64);
  EXPECT_EQ(Wait(Spawn({"--store", "etcd://127.0.0.1:2379", "run", "job", "--", "true"})), 69);
  EXPECT_NE(Log().find("etcd"), std::string::npos) << Log();
}

// --log-format json: every line of stderr is one JSON object with time,
// level, event and lease; the steps of a run come in order.
TEST_F(RunTest, TheJsonLogNamesEveryStepOfTheRunInOrder) {
  ASSERT_EQ(
      RunToEnd({"run", "job", "--ttl", "2s", "--log-format", "json", "--", "sh", "-c", "exit 3"}),
      3)
      << Log();
  std::vector<std::string> events;
  std::istringstream lines(Log());
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_TRUE(j.is_object()) << "not a JSON object: " << line;
    EXPECT_EQ(j.value("lease", ""), "job") << line;
    EXPECT_EQ(j.value("level", ""), "info") << line;
    EXPECT_THAT(j.value("time", ""),
                ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}\\.[0-9]{3}Z"))
        << line;
    events.push_back(j.value("event", ""));
    if (events.back() == "acquired") {
      EXPECT_GE(j.value("sequence", 0), 1) << line;
      EXPECT_GT(j.value("expires_in_ms", 0), 0) << line;
    }
    if (events.back() == "exited") {
      EXPECT_EQ(j.value("exit_code", -1), 3) << line;
    }
  }
  EXPECT_EQ(events,
            (std::vector<std::string>{"acquiring", "acquired", "started", "exited", "released"}))
      << Log();
}

// A run that ends in error says so in one JSON line with the exit code.
TEST_F(RunTest, TheJsonLogEndsWithTheErrorAndItsExitCode) {
  SpawnBackground({"run", "job", "--", "sleep", "30"});
  ASSERT_TRUE(WaitHeld("job"));
  ASSERT_EQ(RunToEnd({"run", "job", "--log-format", "json", "--", "true"}), 75) << Log();
  std::istringstream lines(Log());
  std::string line, last;
  while (std::getline(lines, line)) last = line;
  const auto j = nlohmann::json::parse(last, nullptr, false);
  ASSERT_TRUE(j.is_object()) << Log();
  EXPECT_EQ(j.value("event", ""), "not_acquired");
  EXPECT_EQ(j.value("level", ""), "error");
  EXPECT_EQ(j.value("reason", ""), "held");
  EXPECT_EQ(j.value("exit_code", 0), 75);
  EXPECT_THAT(j.value("message", ""), HasSubstr("held by someone else"));
  // Unknown formats are usage errors.
  EXPECT_EQ(RunToEnd({"run", "job", "--log-format", "yaml", "--", "true"}), 64);
}

// --metrics: /healthz is 503 while the lease is only waited for, 200 while
// it is held and renewed; /metrics counts the lease's acquires and says it
// leads (leader_election_master_status).
TEST_F(RunTest, MetricsAndHealthzServeWhileTheCommandRuns) {
  const pid_t holder = SpawnBackground({"run", "job", "--ttl", "2s", "--", "sleep", "3"});
  ASSERT_TRUE(WaitHeld("job"));
  const int port = testing::FreePort();
  const std::string ready = dir_ + "/running";
  const pid_t waiter = SpawnBackground({"run", "job", "--ttl", "2s", "--wait", "--metrics",
                                        "127.0.0.1:" + std::to_string(port), "--", "sh", "-c",
                                        "touch " + ready + "; sleep 30 & wait"});
  auto get = [port](const char* path) -> std::pair<int, std::string> {
    httplib::Client client("127.0.0.1", port);
    client.set_connection_timeout(1, 0);
    client.set_read_timeout(5, 0);
    auto res = client.Get(path);
    if (!res) return {0, ""};
    return {res->status, res->body};
  };
  ASSERT_TRUE(testing::Eventually([&] { return get("/healthz").first == 503; }, 10s)) << Log();
  EXPECT_THAT(get("/healthz").second, HasSubstr("not held"));
  EXPECT_EQ(Wait(holder), 0);
  ASSERT_TRUE(WaitForFile(ready)) << Log();
  const auto [code, body] = get("/healthz");
  EXPECT_EQ(code, 200) << body;
  const auto [metrics_code, metrics] = get("/metrics");
#ifdef LEASEHOLD_HAVE_PROMETHEUS
  EXPECT_EQ(metrics_code, 200);
  EXPECT_THAT(metrics, HasSubstr("leader_election_master_status{name=\"job\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("leasehold_acquire_attempts_total{lease=\"job\"}"));
#else
  EXPECT_EQ(metrics_code, 501);
#endif
  kill(waiter, SIGTERM);
  EXPECT_EQ(Wait(waiter), 143) << Log();
}

// A --metrics address that is malformed is a usage error naming the flag; one
// that cannot be bound is unavailable, and nothing is acquired either way.
TEST_F(RunTest, ABadMetricsAddressIsRefusedBeforeAcquiring) {
  EXPECT_EQ(RunToEnd({"run", "job", "--metrics", "9090", "--", "true"}), 64);
  EXPECT_THAT(Log(), HasSubstr("--metrics \"9090\""));
  httplib::Server busy;
  const int port = busy.bind_to_any_port("127.0.0.1");
  ASSERT_GT(port, 0);
  EXPECT_EQ(
      RunToEnd({"run", "job", "--metrics", "127.0.0.1:" + std::to_string(port), "--", "true"}), 69);
  EXPECT_THAT(Log(), HasSubstr("cannot listen on 127.0.0.1:" + std::to_string(port)));
  auto record = Inspect("job");
  EXPECT_TRUE(!record.ok() || record->holder.empty()) << "acquired despite the bad address";
}

}  // namespace
}  // namespace leasehold
