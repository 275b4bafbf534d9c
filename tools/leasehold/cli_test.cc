// Integration tests of the `leasehold` binary: each test runs the built
// executable (LEASEHOLD_BINARY) as a child process against a SQLite store in a
// fresh temporary directory (or `memory:`), and checks its output and exit
// code. Holders are either this test process (a Lease on the same SQLite
// file, as another process on the host would be) or `leasehold run`.
#include "cli.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>
#ifdef LEASEHOLD_HAVE_ETCD
#include "etcd_cluster.h"
#endif
#include "leasehold/future.h"
#include "leasehold/lease.h"
#include "testing/sanitizers.h"

extern char** environ;

namespace leasehold::cli {
namespace {

using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::StartsWith;
using Json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

// Environment overrides for a child: a value, or nullopt to unset.
using Env = std::map<std::string, std::optional<std::string>>;

// A running `leasehold` child with its stdout and stderr captured.
class Child {
 public:
  Child(const std::vector<std::string>& args, const Env& env) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe: " << std::strerror(errno);
      return;
    }
    std::vector<std::string> argv_s = {LEASEHOLD_BINARY};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<std::string> env_s;
    for (char** e = environ; *e; ++e) {
      const std::string kv = *e;
      if (!env.contains(kv.substr(0, kv.find('=')))) env_s.push_back(kv);
    }
    for (const auto& [k, v] : env) {
      if (v) env_s.push_back(k + "=" + *v);
    }
    std::vector<char*> argv, envp;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      dup2(err[1], 2);
      sigset_t none;
      sigemptyset(&none);
      pthread_sigmask(SIG_SETMASK, &none, nullptr);
      execve(argv[0], argv.data(), envp.data());
      dprintf(2, "exec %s: %s\n", argv[0], std::strerror(errno));
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
    if (pid_ < 0) ADD_FAILURE() << "fork: " << std::strerror(errno);
  }
  ~Child() {
    if (pid_ > 0 && !status_) {
      kill(pid_, SIGKILL);
      int ws;
      waitpid(pid_, &ws, 0);
    }
    if (out_fd_ >= 0) close(out_fd_);
    if (err_fd_ >= 0) close(err_fd_);
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }

  // The next line of stdout (without '\n'), or nullopt if none came in time.
  std::optional<std::string> ReadLine(std::chrono::milliseconds timeout) {
    const auto until = SteadyClock::now() + timeout;
    while (true) {
      if (const size_t nl = out_.find('\n', consumed_); nl != std::string::npos) {
        std::string line = out_.substr(consumed_, nl - consumed_);
        consumed_ = nl + 1;
        return line;
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
      if (left <= 0ms || !Pump(left)) return std::nullopt;
    }
  }

  // Waits for exit (SIGKILL and a test failure after `timeout`); returns the
  // exit code, 128+N for signal N.
  int Wait(std::chrono::milliseconds timeout = 60s) {
    const auto until = SteadyClock::now() + timeout;
    while (!status_) {
      int ws;
      if (waitpid(pid_, &ws, WNOHANG) == pid_) {
        status_ = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
        break;
      }
      if (SteadyClock::now() >= until) {
        ADD_FAILURE() << "leasehold did not exit within " << timeout.count() << " ms";
        kill(pid_, SIGKILL);
        continue;
      }
      Pump(20ms);
    }
    while (Pump(0ms)) {
    }
    return *status_;
  }

  std::string out() const { return out_; }
  std::string err() const { return err_; }

 private:
  // Reads what is available within `timeout`. False when both pipes are at EOF
  // (or the timeout passed with nothing to read).
  bool Pump(std::chrono::milliseconds timeout) {
    pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
    if (out_fd_ < 0 && err_fd_ < 0) {
      if (timeout > 0ms) std::this_thread::sleep_for(std::min(timeout, 20ms));
      return false;
    }
    const int n = poll(fds, 2, static_cast<int>(timeout.count()));
    if (n <= 0) return false;
    bool progress = false;
    for (int i = 0; i < 2; ++i) {
      int& fd = i == 0 ? out_fd_ : err_fd_;
      if (fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      const ssize_t r = read(fd, buf, sizeof buf);
      if (r > 0) {
        (i == 0 ? out_ : err_).append(buf, static_cast<size_t>(r));
        progress = true;
      } else {
        close(fd);
        fd = -1;
        progress = true;
      }
    }
    return progress;
  }

  pid_t pid_ = -1;
  int out_fd_ = -1, err_fd_ = -1;
  std::string out_, err_;
  size_t consumed_ = 0;
  std::optional<int> status_;
};

struct Outcome {
  int code = -1;
  std::string out, err;
};

Outcome RunLeasehold(const std::vector<std::string>& args, const Env& env,
                     std::chrono::milliseconds timeout = 60s) {
  Child child(args, env);
  Outcome o;
  o.code = child.Wait(timeout);
  o.out = child.out();
  o.err = child.err();
  return o;
}

std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

std::set<std::string> Keys(const Json& j) {
  std::set<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.insert(it.key());
  return keys;
}

const std::set<std::string> kRecordKeys = {"name",     "held",  "holder",
                                           "sequence", "token", "expires_in_ms"};

Json ParseJson(const std::string& text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(j.is_discarded()) << "not JSON: " << text;
  return j.is_discarded() ? Json::object() : j;
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/leasehold-cli-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr) << std::strerror(errno);
    dir_ = tmpl;
    db_ = dir_ + "/leases.db";
    url_ = "sqlite://" + db_;
    // The default store must never be the developer's own.
    env_ = {
        {"LEASEHOLD_STORE", url_}, {"XDG_STATE_HOME", dir_ + "/state"}, {"HOME", dir_ + "/home"}};
  }
  void TearDown() override {
    leases_.clear();
    stores_.clear();
    std::filesystem::remove_all(dir_);
  }

  Outcome Cli(const std::vector<std::string>& args) { return RunLeasehold(args, env_); }

  // A store on the same file, as another process on this host would open it.
  std::shared_ptr<Store> OpenSqlite() {
    auto spec = ParseStoreUrl(url_);
    EXPECT_TRUE(spec.ok());
    auto store = OpenStore(*spec, Runtime::Create());
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    stores_.push_back(*store);
    return *store;
  }

  // A lease of this test process on the store; acquired before it returns.
  Lease& Hold(const std::string& name, const std::string& owner, Duration ttl = 10s) {
    auto lease = Lease::Create(OpenSqlite(), {.name = name, .owner = owner, .ttl = ttl});
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    auto got = (*lease)->Acquire();
    EXPECT_TRUE(got.ok() && *got) << (got.ok() ? "contended" : got.status().ToString());
    leases_.push_back(std::move(*lease));
    return *leases_.back();
  }

  // `status NAME --json`; an empty object (and a test failure) on an error.
  Json Status(const std::string& name) {
    Outcome o = Cli({"status", name, "--json"});
    EXPECT_EQ(o.code, 0) << o.err;
    if (o.code != 0) return Json::object();
    return ParseJson(o.out);
  }

  std::string dir_, db_, url_;
  Env env_;
  std::vector<std::shared_ptr<Store>> stores_;
  std::vector<std::unique_ptr<Lease>> leases_;
};

// --- usage ----------------------------------------------------------------------

TEST_F(CliTest, HelpOnEveryCommandExitsZero) {
  for (const std::string cmd :
       {"", "run", "status", "list", "watch", "break", "bench", "elect", "demo"}) {
    std::vector<std::string> args;
    if (!cmd.empty()) args.push_back(cmd);
    args.push_back("--help");
    Outcome o = Cli(args);
    EXPECT_EQ(o.code, 0) << cmd << ": " << o.err;
    EXPECT_THAT(o.out, HasSubstr("Usage:")) << cmd;
    if (!cmd.empty()) {
      EXPECT_THAT(o.out, HasSubstr(cmd)) << cmd;
    }
  }
}

// The issue: "--store URL on every command": in every command's --help, and
// accepted after the command's name.
TEST_F(CliTest, StoreOptionIsOnEveryCommand) {
  env_["LEASEHOLD_STORE"] = "etcd://127.0.0.1:2379";
  for (const std::string cmd : {"run", "status", "list", "watch", "break", "bench", "demo"}) {
    Outcome help = Cli({cmd, "--help"});
    EXPECT_THAT(help.out, HasSubstr("--store")) << cmd << " --help";
  }
  Outcome o = Cli({"status", "x", "--json", "--store", url_});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(ParseJson(o.out)["held"], false);
}

TEST_F(CliTest, NoCommandIsAUsageError) {
  Outcome o = Cli({});
  EXPECT_EQ(o.code, kExitUsage);
  EXPECT_THAT(FirstLine(o.err), StartsWith("leasehold: "));
  EXPECT_THAT(o.err, HasSubstr("Usage:"));
}

class BadArgumentsTest : public CliTest,
                         public ::testing::WithParamInterface<std::vector<std::string>> {};

TEST_P(BadArgumentsTest, GetAOneLineErrorAndTheUsage) {
  Outcome o = Cli(GetParam());
  EXPECT_EQ(o.code, kExitUsage) << o.err;
  const std::string first = FirstLine(o.err);
  EXPECT_THAT(first, StartsWith("leasehold"));
  EXPECT_THAT(first, ::testing::Not(HasSubstr("Usage:")));
  EXPECT_THAT(o.err.substr(first.size()), HasSubstr("Usage:")) << o.err;
  EXPECT_EQ(o.out, "");
}

INSTANTIATE_TEST_SUITE_P(
    Everything, BadArgumentsTest,
    ::testing::Values(
        std::vector<std::string>{"frobnicate"}, std::vector<std::string>{"status"},
        std::vector<std::string>{"status", "a", "b"},
        std::vector<std::string>{"status", "a", "--bogus"}, std::vector<std::string>{"watch"},
        std::vector<std::string>{"watch", "a", "--max-events", "many"},
        std::vector<std::string>{"break", "a"}, std::vector<std::string>{"break", "--yes"},
        std::vector<std::string>{"bench", "--ops", "0"},
        std::vector<std::string>{"bench", "--ops", "lots"},
        std::vector<std::string>{"bench", "extra"}, std::vector<std::string>{"run", "a"},
        std::vector<std::string>{"run", "--", "true"},
        std::vector<std::string>{"run", "a", "--ttl", "5parsecs", "--", "true"},
        std::vector<std::string>{"run", "a", "--timeout", "-1s", "--wait", "--", "true"},
        std::vector<std::string>{"--store"}));

// --- store URLs and backends -----------------------------------------------------

// Every command that opens a store, with arguments that are otherwise valid.
const std::vector<std::vector<std::string>> kStoreCommands = {
    {"status", "x"},
    {"status", "x", "--json"},
    {"watch", "x", "--max-events", "1"},
    {"break", "x", "--yes"},
    {"bench", "--ops", "1"},
    {"run", "x", "--", "true"},
    {"list"},
    {"list", "x", "--json"},
};

TEST_F(CliTest, BadStoreUrlIsAUsageErrorForEveryCommand) {
  for (auto args : kStoreCommands) {
    args.insert(args.begin(), {"--store", "sqlite://relative.db"});
    Outcome o = Cli(args);
    EXPECT_EQ(o.code, kExitUsage) << args[2] << ": " << o.err;
    EXPECT_THAT(o.err, HasSubstr("must be absolute")) << args[2];
  }
}

TEST_F(CliTest, BadStoreUrlFromTheEnvironmentIsAUsageError) {
  env_["LEASEHOLD_STORE"] = "zookeeper://h:2181";
  Outcome o = Cli({"status", "x"});
  EXPECT_EQ(o.code, kExitUsage);
  EXPECT_THAT(o.err, HasSubstr("unknown scheme \"zookeeper\""));
}

TEST_F(CliTest, BackendsNotBuiltInAreUnavailableForEveryCommand) {
  std::vector<std::string> urls;
#ifndef LEASEHOLD_HAVE_ETCD
  urls.push_back("etcd://127.0.0.1:2379");
#endif
#ifndef LEASEHOLD_CLI_KUBERNETES
  urls.push_back("kubernetes:///default");
#endif
  if (urls.empty()) GTEST_SKIP() << "every backend is built into this leasehold";
  for (const std::string& url : urls) {
    for (auto args : kStoreCommands) {
      args.insert(args.begin(), {"--store", url});
      Outcome o = Cli(args);
      EXPECT_EQ(o.code, kExitUnavailable) << url << " " << args[2] << ": " << o.err;
      EXPECT_THAT(o.err, HasSubstr("not built into this leasehold")) << url << " " << args[2];
    }
  }
}

TEST_F(CliTest, StoreFlagOverridesTheEnvironment) {
  env_["LEASEHOLD_STORE"] = "etcd://127.0.0.1:2379";
  Outcome o = Cli({"--store", url_, "status", "x", "--json"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_TRUE(std::filesystem::exists(db_));
}

TEST_F(CliTest, DefaultStoreIsCreatedUnderXdgStateHome) {
  env_["LEASEHOLD_STORE"] = std::nullopt;
  Outcome o = Cli({"status", "x"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("sqlite://" + dir_ + "/state/leasehold/leases.db"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/state/leasehold/leases.db"));
}

TEST_F(CliTest, DefaultStoreFallsBackToHome) {
  env_["LEASEHOLD_STORE"] = std::nullopt;
  env_["XDG_STATE_HOME"] = std::nullopt;
  Outcome o = Cli({"status", "x"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/home/.local/state/leasehold/leases.db"));
}

// Contenders started together on a fresh host (the demo, the torture test, a
// cron fleet) all open the store file for the first time at once.
TEST_F(CliTest, ConcurrentFirstUseOfAFreshStoreSucceeds) {
  for (int round = 0; round < 20; ++round) {
    env_["LEASEHOLD_STORE"] = "sqlite://" + dir_ + "/fresh-" + std::to_string(round) + ".db";
    Child run({"run", "x", "--ttl", "5s", "--", "sleep", "0.2"}, env_);
    for (int i = 0; i < 5; ++i) {
      Outcome o = Cli({"status", "x"});
      EXPECT_EQ(o.code, 0) << "round " << round << ": " << o.err;
    }
    EXPECT_EQ(run.Wait(), 0) << "round " << round << ": " << run.err();
  }
}

TEST_F(CliTest, AFileThatIsNotALeaseholdDatabaseIsAStoreError) {
  std::ofstream(db_) << "this is not an SQLite database, just some text that is long enough "
                        "for SQLite to read a header from and reject it........................";
  for (auto args : kStoreCommands) {
    if (args[0] == "run" || args[0] == "bench") continue;  // same OpenStore path
    Outcome o = Cli(args);
    EXPECT_EQ(o.code, kExitUnavailable) << args[0] << ": " << o.out;
    EXPECT_THAT(FirstLine(o.err), StartsWith("leasehold")) << args[0];
  }
}

// --- status ---------------------------------------------------------------------

TEST_F(CliTest, StatusOfANeverHeldLeaseIsFree) {
  Json j = Status("never");
  EXPECT_EQ(Keys(j), kRecordKeys);
  EXPECT_EQ(j["name"], "never");
  EXPECT_EQ(j["held"], false);
  EXPECT_TRUE(j["holder"].is_null());
  EXPECT_EQ(j["sequence"], 0);
  EXPECT_TRUE(j["token"].is_null());
  EXPECT_TRUE(j["expires_in_ms"].is_null());
  Outcome text = Cli({"status", "never"});
  EXPECT_EQ(text.code, 0);
  EXPECT_THAT(text.out, HasSubstr("free"));
  EXPECT_THAT(text.out, HasSubstr(url_));
}

TEST_F(CliTest, StatusOnTheMemoryStoreIsFree) {
  env_["LEASEHOLD_STORE"] = "memory:";
  Json j = Status("x");
  EXPECT_EQ(j["held"], false);
  EXPECT_EQ(Keys(j), kRecordKeys);
}

TEST_F(CliTest, StatusShowsHolderSequenceTokenTimesAndTimeLeft) {
  Lease& a = Hold("db", "host-a", 10s);
  const FencingToken token = *a.token();
  Json j = Status("db");
  EXPECT_EQ(Keys(j), kRecordKeys);
  EXPECT_EQ(j["name"], "db");
  EXPECT_EQ(j["held"], true);
  EXPECT_EQ(j["holder"], a.identity());
  EXPECT_EQ(j["sequence"], token.sequence);
  EXPECT_EQ(j["token"], token.value);
  ASSERT_TRUE(j["expires_in_ms"].is_number_integer()) << j.dump();
  EXPECT_GT(j["expires_in_ms"].get<int64_t>(), 0);
  EXPECT_LE(j["expires_in_ms"].get<int64_t>(), 10'000);

  Outcome o = Cli({"status", "db"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("held"));
  EXPECT_THAT(o.out, HasSubstr(a.identity()));
  EXPECT_THAT(o.out, HasSubstr("sequence  " + std::to_string(token.sequence)));
  EXPECT_THAT(o.out, HasSubstr(token.value));
  EXPECT_THAT(o.out, MatchesRegex("(.|\n)*acquired  [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:"
                                  "[0-9]{2}\\.[0-9]{3}Z\n(.|\n)*"));
  EXPECT_THAT(o.out, MatchesRegex("(.|\n)*renewed   [0-9]{4}-[0-9]{2}-[0-9]{2}T(.|\n)*"));
  EXPECT_THAT(o.out, HasSubstr("time left"));
}

TEST_F(CliTest, StatusAfterReleaseIsFreeAndKeepsTheLastSequence) {
  Lease& a = Hold("db", "host-a");
  const uint64_t sequence = a.token()->sequence;
  ASSERT_TRUE(a.Release().ok());
  Json j = Status("db");
  EXPECT_EQ(j["held"], false);
  EXPECT_TRUE(j["holder"].is_null());
  EXPECT_EQ(j["sequence"], sequence);
  EXPECT_TRUE(j["expires_in_ms"].is_null());
}

// `list`: every lease with holder, sequence and time left, sorted; a prefix
// narrows it; --json is an array of `status --json` objects.
TEST_F(CliTest, ListShowsEveryLeaseWithHolderSequenceAndTimeLeft) {
  Outcome empty = Cli({"list", "--json"});
  ASSERT_EQ(empty.code, 0) << empty.err;
  EXPECT_EQ(ParseJson(empty.out), Json::array());

  Lease& b = Hold("jobs/b", "host-b", 10s);
  Lease& a = Hold("jobs/a", "host-a", 10s);
  Lease& r = Hold("reports", "host-r", 10s);
  const uint64_t reports_sequence = r.token()->sequence;
  ASSERT_TRUE(r.Release().ok());

  Outcome all = Cli({"list", "--json"});
  ASSERT_EQ(all.code, 0) << all.err;
  Json j = ParseJson(all.out);
  ASSERT_TRUE(j.is_array()) << all.out;
  ASSERT_EQ(j.size(), 3u) << all.out;
  EXPECT_EQ(j[0]["name"], "jobs/a");
  EXPECT_EQ(j[0]["holder"], a.identity());
  EXPECT_EQ(j[0]["sequence"], a.token()->sequence);
  EXPECT_EQ(j[0]["token"], a.token()->value);
  EXPECT_EQ(j[1]["name"], "jobs/b");
  EXPECT_EQ(j[1]["holder"], b.identity());
  for (int i : {0, 1}) {
    EXPECT_EQ(Keys(j[i]), kRecordKeys);
    EXPECT_EQ(j[i]["held"], true);
    ASSERT_TRUE(j[i]["expires_in_ms"].is_number_integer()) << j[i].dump();
    EXPECT_GT(j[i]["expires_in_ms"].get<int64_t>(), 0);
    EXPECT_LE(j[i]["expires_in_ms"].get<int64_t>(), 10'000);
  }
  EXPECT_EQ(j[2]["name"], "reports");
  EXPECT_EQ(j[2]["held"], false);
  EXPECT_EQ(j[2]["sequence"], reports_sequence);

  Outcome jobs = Cli({"list", "jobs/", "--json"});
  ASSERT_EQ(jobs.code, 0) << jobs.err;
  EXPECT_EQ(ParseJson(jobs.out).size(), 2u) << jobs.out;

  Outcome text = Cli({"list", "jobs/"});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_THAT(text.out, MatchesRegex("NAME +HOLDER +SEQUENCE +TIME LEFT\n"
                                     "jobs/a +" +
                                     a.identity() +
                                     " +[0-9]+ +[0-9.]+m?s\n"
                                     "jobs/b +" +
                                     b.identity() + " +[0-9]+ +[0-9.]+m?s\n"));
}

// A holder anyone could have written into the store -- a terminal escape
// sequence, a newline, a byte that is not UTF-8 -- is shown escaped, and the
// JSON stays JSON.
TEST_F(CliTest, AHostileHolderIsShownEscapedAndTheJsonStaysValid) {
  Hold("evil", "x", 30s);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(db_.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  const int rc =
      sqlite3_exec(db, "UPDATE leasehold_leases SET holder = CAST(X'1b5b324a0a66616b65ff' AS TEXT)",
                   nullptr, nullptr, &error);
  EXPECT_EQ(rc, SQLITE_OK) << (error ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);

  for (const auto& args : std::vector<std::vector<std::string>>{{"status", "evil"}, {"list"}}) {
    Outcome o = Cli(args);
    ASSERT_EQ(o.code, 0) << args[0] << ": " << o.err;
    EXPECT_THAT(o.out, HasSubstr("\\x1b[2J\\x0afake")) << args[0];
    EXPECT_EQ(o.out.find('\x1b'), std::string::npos) << args[0] << ": " << o.out;
  }
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"status", "evil", "--json"}, {"list", "--json"}}) {
    Outcome o = Cli(args);
    ASSERT_EQ(o.code, 0) << args[0] << ": " << o.err;
    Json j = ParseJson(o.out);
    const Json& record = j.is_array() && !j.empty() ? j[0] : j;
    EXPECT_EQ(record["holder"], "\x1b[2J\nfake\xef\xbf\xbd") << args[0] << ": " << o.out;
  }
}

TEST_F(CliTest, ListOnTheMemoryStoreIsEmpty) {
  env_["LEASEHOLD_STORE"] = "memory:";
  Outcome o = Cli({"list"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(o.out, "NAME  HOLDER  SEQUENCE  TIME LEFT\n");
}

TEST_F(CliTest, StatusRejectsANameTheStoreCannotHold) {
  Outcome o = Cli({"status", std::string(300, 'n')});
  EXPECT_EQ(o.code, kExitUsage);
  EXPECT_THAT(FirstLine(o.err), StartsWith("leasehold: "));
}

TEST_F(CliTest, StatusSeesALeaseHeldByRun) {
  Child run({"run", "job", "--ttl", "5s", "--owner", "runner", "--", "sleep", "2"}, env_);
  Json j;
  const auto until = SteadyClock::now() + 5s;
  do {
    j = Status("job");
  } while (j["held"] != true && SteadyClock::now() < until);
  ASSERT_EQ(j["held"], true) << "`leasehold run` never held the lease: " << run.err();
  EXPECT_THAT(j["holder"].get<std::string>(), StartsWith("runner"));
  EXPECT_EQ(j["sequence"], 1);
  EXPECT_EQ(run.Wait(), 0) << run.err();
  EXPECT_EQ(Status("job")["held"], false);
}

// --- watch ----------------------------------------------------------------------

TEST_F(CliTest, WatchPrintsALinePerChangeOfHolder) {
  Child watch({"watch", "db", "--json", "--max-events", "4"}, env_);
  auto line = watch.ReadLine(10s);
  ASSERT_TRUE(line) << watch.err();
  Json first = ParseJson(*line);
  EXPECT_EQ(Keys(first), kRecordKeys);
  EXPECT_EQ(first["held"], false);

  Lease& a = Hold("db", "host-a");
  line = watch.ReadLine(5s);
  ASSERT_TRUE(line) << watch.err();
  Json held = ParseJson(*line);
  EXPECT_EQ(held["held"], true);
  EXPECT_EQ(held["holder"], a.identity());
  EXPECT_EQ(held["sequence"], a.token()->sequence);

  ASSERT_TRUE(a.Release().ok());
  line = watch.ReadLine(5s);
  ASSERT_TRUE(line) << watch.err();
  EXPECT_EQ(ParseJson(*line)["held"], false);

  Lease& b = Hold("db", "host-b");
  line = watch.ReadLine(5s);
  ASSERT_TRUE(line) << watch.err();
  Json taken = ParseJson(*line);
  EXPECT_EQ(taken["holder"], b.identity());
  EXPECT_GT(taken["sequence"].get<uint64_t>(), held["sequence"].get<uint64_t>());
  EXPECT_EQ(watch.Wait(10s), 0) << "exits after --max-events lines";
}

TEST_F(CliTest, WatchPrintsNothingForRenewals) {
  Lease& a = Hold("db", "host-a", 600ms);  // renewed every 200 ms
  Child watch({"watch", "db", "--json", "--max-events", "2"}, env_);
  auto line = watch.ReadLine(10s);
  ASSERT_TRUE(line) << watch.err();
  EXPECT_EQ(ParseJson(*line)["held"], true);
  EXPECT_EQ(watch.ReadLine(1500ms), std::nullopt) << "a renewal is not a change of holder";
  EXPECT_TRUE(a.CheckAlive());
  ASSERT_TRUE(a.Release().ok());
  line = watch.ReadLine(5s);
  ASSERT_TRUE(line) << watch.err();
  EXPECT_EQ(ParseJson(*line)["held"], false);
  EXPECT_EQ(watch.Wait(10s), 0);
}

TEST_F(CliTest, WatchSeesAnExpiry) {
  // A record nobody renews: one raw store acquire with a short TTL.
  std::shared_ptr<Store> store = OpenSqlite();
  Promise<Result<AcquireOutcome>> p(nullptr);
  // Before the request: the store dates the record at most this early, and
  // it expires one TTL after that -- long enough for the watcher to start
  // and see it held first (a sanitized binary starts slowly under load).
  const Duration ttl = leasehold::testing::kSanitized ? Duration(3s) : Duration(700ms);
  const auto sent = SteadyClock::now();
  store->Acquire({.name = "db",
                  .holder = "crashed",
                  .ttl = ttl,
                  .deadline = store->runtime()->clock().Now() + 5s},
                 [p](Result<AcquireOutcome> r) mutable { p.Set(std::move(r)); });
  ASSERT_TRUE(p.future().Wait().ok());
  Child watch({"watch", "db", "--max-events", "2"}, env_);
  auto line = watch.ReadLine(10s);
  ASSERT_TRUE(line) << watch.err();
  EXPECT_THAT(*line, HasSubstr("held by crashed (sequence 1"));
  line = watch.ReadLine(std::chrono::duration_cast<std::chrono::milliseconds>(ttl) + 5s);
  ASSERT_TRUE(line) << watch.err();
  EXPECT_THAT(*line, HasSubstr("free (last sequence 1)"));
  EXPECT_GE(SteadyClock::now() - sent, ttl) << "free only once expired";
  EXPECT_EQ(watch.Wait(10s), 0);
}

class WatchSignalTest : public CliTest, public ::testing::WithParamInterface<int> {};

TEST_P(WatchSignalTest, EndsWithExitZero) {
  Child watch({"watch", "db"}, env_);
  auto line = watch.ReadLine(10s);
  ASSERT_TRUE(line) << watch.err();
  EXPECT_THAT(*line, HasSubstr("\"db\" free (never held)"));
  ASSERT_EQ(kill(watch.pid(), GetParam()), 0);
  EXPECT_EQ(watch.Wait(10s), 0) << watch.err();
}

TEST_P(WatchSignalTest, EndsWithExitZeroWhileTheLeaseIsHeld) {
  Hold("db", "host-a");
  Child watch({"watch", "db", "--json"}, env_);
  auto line = watch.ReadLine(10s);
  ASSERT_TRUE(line) << watch.err();
  EXPECT_EQ(ParseJson(*line)["held"], true);
  ASSERT_EQ(kill(watch.pid(), GetParam()), 0);
  EXPECT_EQ(watch.Wait(10s), 0) << watch.err();
}

INSTANTIATE_TEST_SUITE_P(IntAndTerm, WatchSignalTest, ::testing::Values(SIGINT, SIGTERM));

TEST_F(CliTest, WatchOnTheMemoryStorePrintsTheCurrentState) {
  env_["LEASEHOLD_STORE"] = "memory:";
  Child watch({"watch", "x", "--json"}, env_);
  auto line = watch.ReadLine(10s);
  ASSERT_TRUE(line) << watch.err();
  EXPECT_EQ(ParseJson(*line)["held"], false);
  ASSERT_EQ(kill(watch.pid(), SIGTERM), 0);
  EXPECT_EQ(watch.Wait(10s), 0);
}

// --- break ----------------------------------------------------------------------

TEST_F(CliTest, BreakFreesAHeldLeaseAndTheNextAcquireGetsAHigherSequence) {
  Lease& a = Hold("db", "host-a", 1s);
  std::atomic<bool> lost = false;
  auto sub = a.OnLost([&](const LostEvent&) { lost = true; });
  const uint64_t broken = a.token()->sequence;
  Outcome o = Cli({"break", "db", "--yes"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr(a.identity()));
  EXPECT_THAT(o.out, HasSubstr("sequence " + std::to_string(broken)));
  EXPECT_THAT(o.out, HasSubstr("next acquire"));
  EXPECT_EQ(Status("db")["held"], false);

  Lease& b = Hold("db", "host-b");
  EXPECT_GT(b.token()->sequence, broken);
  // The broken holder learns it at its next renewal, within its TTL.
  const auto until = SteadyClock::now() + 2s;
  while (!lost && SteadyClock::now() < until) std::this_thread::sleep_for(10ms);
  EXPECT_TRUE(lost);
  EXPECT_FALSE(a.CheckAlive());
}

TEST_F(CliTest, BreakOfAFreeLeaseSaysThereWasNothingToBreak) {
  Outcome o = Cli({"break", "db", "--yes"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("not held"));
  Lease& a = Hold("db", "host-a");
  ASSERT_TRUE(a.Release().ok());
  o = Cli({"break", "db", "--yes"});
  EXPECT_EQ(o.code, 0) << o.err;
  EXPECT_THAT(o.out, HasSubstr("not held (last sequence 1)"));
}

TEST_F(CliTest, BreakOnTheMemoryStoreWorks) {
  env_["LEASEHOLD_STORE"] = "memory:";
  Outcome o = Cli({"break", "db", "--yes"});
  EXPECT_EQ(o.code, 0) << o.err;
}

TEST_F(CliTest, BreakMakesRunExitWithLost) {
  ASSERT_EQ(Status("job")["held"], false);  // the store exists before run starts
  Child run({"run", "job", "--ttl", "3s", "--kill-after", "500ms", "--", "sleep", "30"}, env_);
  const auto until = SteadyClock::now() + 5s;
  while (Status("job")["held"] != true && SteadyClock::now() < until) {
  }
  Outcome o = Cli({"break", "job", "--yes"});
  ASSERT_EQ(o.code, 0) << o.err;
  const auto broken = SteadyClock::now();
  EXPECT_EQ(run.Wait(10s), kExitLost) << run.err();
  EXPECT_LT(SteadyClock::now() - broken, 4s) << "within its TTL";
}

// --- bench ----------------------------------------------------------------------

TEST_F(CliTest, BenchOnSqliteReportsEveryKeyAndTheRawBaseline) {
  Outcome o = Cli({"bench", "--ops", "30", "--json"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json j = ParseJson(o.out);
  EXPECT_EQ(Keys(j),
            (std::set<std::string>{"store", "ops", "cycle_p50_us", "cycle_p99_us", "ops_per_s",
                                   "handoff_p50_us", "raw_update_p50_us", "cycle_vs_raw"}));
  EXPECT_EQ(j["store"], url_);
  EXPECT_EQ(j["ops"], 30);
  for (const char* k : {"cycle_p50_us", "cycle_p99_us", "ops_per_s", "handoff_p50_us",
                        "raw_update_p50_us", "cycle_vs_raw"}) {
    EXPECT_GT(j[k].get<double>(), 0) << k;
  }
  EXPECT_LE(j["cycle_p50_us"].get<double>(), j["cycle_p99_us"].get<double>());
  EXPECT_NEAR(j["cycle_vs_raw"].get<double>(),
              j["cycle_p50_us"].get<double>() / j["raw_update_p50_us"].get<double>(), 0.05);
  // The scratch database is gone; only the store's files are left.
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    EXPECT_THAT(e.path().filename().string(), StartsWith("leases.db"));
  }
}

TEST_F(CliTest, BenchOnMemoryHasNoRawBaseline) {
  env_["LEASEHOLD_STORE"] = "memory:";
  Outcome o = Cli({"bench", "--ops", "50", "--json"});
  ASSERT_EQ(o.code, 0) << o.err;
  Json j = ParseJson(o.out);
  EXPECT_EQ(Keys(j), (std::set<std::string>{"store", "ops", "cycle_p50_us", "cycle_p99_us",
                                            "ops_per_s", "handoff_p50_us"}));
  EXPECT_EQ(j["store"], "memory:");
}

TEST_F(CliTest, BenchTextNamesEveryFigure) {
  Outcome o = Cli({"bench", "--ops", "20"});
  ASSERT_EQ(o.code, 0) << o.err;
  for (const char* s :
       {"cycle p50", "cycle p99", "cycles/s", "hand-off p50", "raw UPDATE p50", "cycle / raw"}) {
    EXPECT_THAT(o.out, HasSubstr(s));
  }
}

TEST_F(CliTest, BenchFailsWhenItsLeaseIsHeld) {
  Hold("leasehold-bench/cycle", "someone");
  Outcome o = Cli({"bench", "--ops", "5"});
  EXPECT_EQ(o.code, kExitUnavailable);
  EXPECT_THAT(o.err, HasSubstr("another bench running?"));
}

#ifdef LEASEHOLD_HAVE_ETCD
using ::testing::Not;

// --- etcd -------------------------------------------------------------------------

TEST_F(CliTest, AnEtcdNobodyServesIsUnavailableForEveryCommandAndNamesTheEndpoint) {
  for (auto args : kStoreCommands) {
    args.insert(args.begin(), {"--store", "etcd://127.0.0.1:1/app"});
    Outcome o = Cli(args);
    EXPECT_EQ(o.code, kExitUnavailable) << args[2] << ": " << o.err;
    EXPECT_THAT(o.err, HasSubstr("127.0.0.1:1")) << args[2];
  }
}

TEST_F(CliTest, AnEtcdUsernameNeedsAPasswordFromTheEnvironmentWhichNeverShows) {
  Outcome none = Cli({"--store", "etcd://127.0.0.1:1?username=alice", "status", "x"});
  EXPECT_EQ(none.code, kExitUsage) << none.err;
  EXPECT_THAT(none.err, HasSubstr("LEASEHOLD_ETCD_PASSWORD"));
  env_["LEASEHOLD_ETCD_PASSWORD"] = "s3cret-pw";
  Outcome o = Cli({"--store", "etcd://127.0.0.1:1?username=alice", "status", "x"});
  EXPECT_EQ(o.code, kExitUnavailable) << o.err;
  EXPECT_THAT(o.err, Not(HasSubstr("s3cret-pw")));
  EXPECT_THAT(o.out, Not(HasSubstr("s3cret-pw")));
}

TEST_F(CliTest, CommandsWorkAgainstARealEtcd) {
  auto cluster = etcd_test::EtcdCluster::Start({.members = 1});
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  const std::string url = "etcd://" + (*cluster)->endpoint(0) + "/cli-test";
  env_["LEASEHOLD_STORE"] = url;
  auto spec = ParseStoreUrl(url);
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  auto store = OpenStore(*spec, Runtime::Create());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto lease = Lease::Create(*store, {.name = "job", .owner = "holder-a", .ttl = 10s});
  ASSERT_TRUE(lease.ok());
  auto token = (*lease)->AcquireWithToken();
  ASSERT_TRUE(token.ok() && token->has_value());

  Outcome held = Cli({"status", "job", "--json"});
  ASSERT_EQ(held.code, 0) << held.err;
  auto j = ParseJson(held.out);
  EXPECT_EQ(j["held"], true) << held.out;
  EXPECT_EQ(j["holder"], (*lease)->identity()) << held.out;
  EXPECT_EQ(j["sequence"], (*token)->sequence) << held.out;

  Outcome listed = Cli({"list", "--json"});
  ASSERT_EQ(listed.code, 0) << listed.err;
  auto l = ParseJson(listed.out);
  ASSERT_EQ(l.size(), 1u) << listed.out;
  EXPECT_EQ(l[0]["name"], "job") << listed.out;
  EXPECT_EQ(l[0]["holder"], (*lease)->identity()) << listed.out;
  EXPECT_EQ(l[0]["sequence"], (*token)->sequence) << listed.out;

  Outcome broke = Cli({"break", "job", "--yes"});
  EXPECT_EQ(broke.code, 0) << broke.err;
  Outcome free = Cli({"status", "job", "--json"});
  ASSERT_EQ(free.code, 0) << free.err;
  EXPECT_EQ(ParseJson(free.out)["held"], false) << free.out;

  Outcome run = Cli({"run", "job", "--", "true"});
  EXPECT_EQ(run.code, 0) << run.err;
}
#endif

}  // namespace
}  // namespace leasehold::cli
