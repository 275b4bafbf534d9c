#include "pg_server.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string_view>
#include <thread>

#include "testing/child_process.h"
#include "testing/free_port.h"

namespace leasehold::pg_test {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

const std::string kBinDir = "/usr/lib/postgresql/15/bin";
constexpr char kPgBouncer[] = "/usr/sbin/pgbouncer";
constexpr char kFaketimeLib[] = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
constexpr int kStartAttempts = 5;
constexpr auto kReadyTimeout = 15s;
constexpr char kPortTaken[] = "Address already in use";
constexpr size_t kTailBytes = 4000;

std::string Tail(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string all = ss.str();
  return all.size() > kTailBytes ? all.substr(all.size() - kTailBytes) : all;
}

std::string Errno(const std::string& what) { return what + ": " + std::strerror(errno); }

// A value for a libpq conninfo string, quoted.
std::string ConninfoValue(const std::string& value) {
  std::string out = "'";
  for (char c : value) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// An SQL string literal (standard_conforming_strings is on).
std::string SqlLiteral(const std::string& value) {
  std::string out = "'";
  for (char c : value) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

Result<detail::ServerUser> ServerUserOfThisProcess() {
  detail::ServerUser user;
  if (geteuid() != 0) {
    user.uid = geteuid();
    user.gid = getegid();
    return user;
  }
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (getpwnam_r("postgres", &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    return FailedPreconditionError(
        "pg fixture: running as root, and there is no user `postgres` to run the server as "
        "(apt-get install postgresql-15)");
  }
  user.switch_user = true;
  user.uid = pw.pw_uid;
  user.gid = pw.pw_gid;
  int n = 32;
  user.groups.resize(static_cast<size_t>(n));
  // getgrouplist sets n to the number needed when the buffer is too small.
  while (getgrouplist(pw.pw_name, pw.pw_gid, user.groups.data(), &n) < 0) {
    user.groups.resize(static_cast<size_t>(n));
  }
  user.groups.resize(static_cast<size_t>(n));
  return user;
}

// Makes `path` belong to the server's user (when the test runs as root).
Status GiveTo(const detail::ServerUser& user, const std::string& path) {
  if (!user.switch_user) return Status::Ok();
  if (lchown(path.c_str(), user.uid, user.gid) != 0) {
    return InternalError(Errno("pg fixture: chown " + path));
  }
  return Status::Ok();
}

Status MakeDir(const detail::ServerUser& user, const std::string& path) {
  if (mkdir(path.c_str(), 0700) != 0) return InternalError(Errno("pg fixture: mkdir " + path));
  return GiveTo(user, path);
}

// Replaces `path` atomically with `contents`, owned by the server's user:
// the file is complete and readable by it before it gets the name (a server
// re-reading it -- libfaketime's offset file -- never sees half of it).
Status WriteFileFor(const detail::ServerUser& user, const std::string& path,
                    const std::string& contents, mode_t mode) {
  const std::string tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return InternalError(Errno("pg fixture: create " + tmp));
  size_t done = 0;
  bool ok = fchmod(fd, mode) == 0 && (!user.switch_user || fchown(fd, user.uid, user.gid) == 0);
  while (ok && done < contents.size()) {
    const ssize_t n = write(fd, contents.data() + done, contents.size() - done);
    if (n <= 0) ok = false;
    if (n > 0) done += static_cast<size_t>(n);
  }
  if (close(fd) != 0) ok = false;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    return InternalError(Errno("pg fixture: write " + path));
  }
  return Status::Ok();
}

// The environment of a server process: ours without libpq's PG* variables
// (PGPASSWORD, PGSSLMODE, ... of a test), FAKETIME* (FAKETIME overrides the
// offset file) and LD_PRELOAD.
std::vector<std::string> ServerEnvironment() {
  return testing::EnvironmentWithout({"PG", "FAKETIME", "LD_PRELOAD="});
}

struct Command {
  std::vector<std::string> argv{};
  std::vector<std::string> env = ServerEnvironment();
  std::string output{};  // stdout and stderr are appended here; "": /dev/null
  std::string input{};   // stdin; "": /dev/null
  bool own_group = false;
};

// fork/exec of `cmd` as the server's user.
Result<pid_t> Spawn(const detail::ServerUser& user, const Command& cmd) {
  return testing::SpawnChild({.argv = cmd.argv,
                              .env = cmd.env,
                              .output = cmd.output,
                              .input = cmd.input,
                              .own_group = cmd.own_group},
                             "pg fixture", &user);
}

std::optional<int> WaitExit(pid_t pid, std::chrono::milliseconds timeout) {
  return testing::WaitChild(pid, timeout);
}

using testing::DescribeExit;

// Runs `cmd` to its end; kInternal with the end of its output unless it
// exits 0.
Status RunToCompletion(const detail::ServerUser& user, const Command& cmd,
                       std::chrono::milliseconds timeout) {
  Result<pid_t> pid = Spawn(user, cmd);
  if (!pid.ok()) return pid.status();
  const std::optional<int> status = WaitExit(*pid, timeout);
  if (!status) {
    kill(*pid, SIGKILL);
    waitpid(*pid, nullptr, 0);
    return DeadlineExceededError("pg fixture: " + cmd.argv[0] + " did not finish in time; " +
                                 "its output ends:\n" + Tail(cmd.output));
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return InternalError("pg fixture: " + cmd.argv[0] + " failed (" + DescribeExit(*status) +
                         "); its output ends:\n" + Tail(cmd.output));
  }
  return Status::Ok();
}

// ---- processes by /proc ----------------------------------------------------

struct ProcState {
  char state = '?';
  pid_t ppid = 0;
};

std::optional<ProcState> ReadProcState(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return std::nullopt;
  // "pid (comm) state ppid ...": comm may contain anything but ends at the
  // last ')'.
  const auto close_paren = line.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= line.size()) return std::nullopt;
  std::istringstream rest(line.substr(close_paren + 2));
  ProcState s;
  if (!(rest >> s.state >> s.ppid)) return std::nullopt;
  return s;
}

bool Gone(pid_t pid) {
  const auto s = ReadProcState(pid);
  return !s || s->state == 'Z' || s->state == 'X';
}

// The live children of `parent`. Postmaster children call setsid(), so this,
// not a process group, is how to reach every process of a server.
std::vector<pid_t> ChildrenOf(pid_t parent) {
  std::vector<pid_t> out;
  DIR* proc = opendir("/proc");
  if (proc == nullptr) return out;
  while (dirent* e = readdir(proc)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    const auto s = ReadProcState(static_cast<pid_t>(pid));
    if (s && s->ppid == parent && s->state != 'Z' && s->state != 'X') {
      out.push_back(static_cast<pid_t>(pid));
    }
  }
  closedir(proc);
  return out;
}

// Waits (bounded) until `pid` is stopped by a signal (or gone): SIGSTOP is
// delivered asynchronously.
void WaitStopped(pid_t pid) {
  const auto until = SteadyClock::now() + 2s;
  while (SteadyClock::now() < until) {
    const auto s = ReadProcState(pid);
    if (!s || s->state == 'T' || s->state == 't' || s->state == 'Z') return;
    std::this_thread::sleep_for(1ms);
  }
}

// ---- libpq -----------------------------------------------------------------

using ConnPtr = std::unique_ptr<PGconn, decltype(&PQfinish)>;

std::string Trimmed(const char* message) {
  std::string s = message ? message : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Waits until the connection's socket is ready for `events` or `until`.
bool WaitSocket(PGconn* conn, short events, SteadyClock::time_point until) {
  while (true) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
    if (left.count() <= 0) return false;
    pollfd p{PQsocket(conn), events, 0};
    const int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

// Every server starts from a copy of one template data directory (initdb,
// then role "leasehold" owning database "leasehold"): a copy takes ~0.1 s,
// initdb ~1 s. The template is shared by every test process of the same
// server user, in $TMPDIR/leasehold-pg15-template-<rev>-u<uid>, and kept
// (~30 MB): ctest runs each test case in a process of its own. Bump the
// revision whenever what BuildTemplate makes changes.
constexpr char kTemplateRevision[] = "r1";

std::string TempBase() {
  const char* base = std::getenv("TMPDIR");
  return base != nullptr && *base != '\0' ? base : "/tmp";
}

// Initializes `dir`/data.
Status BuildTemplate(const detail::ServerUser& user, const std::string& dir) {
  Status s = GiveTo(user, dir);
  if (!s.ok()) return s;
  const std::string data = dir + "/data";
  const std::string log = dir + "/initdb.log";
  // 1 MB WAL segments: a copy of the template is 30 MB rather than 46.
  s = RunToCompletion(user,
                      {.argv = {kBinDir + "/initdb", "-D", data, "-A", "trust", "-U", "postgres",
                                "--no-sync", "-E", "UTF8", "--locale=C", "--wal-segsize=1"},
                       .output = log},
                      60s);
  if (!s.ok()) return s;
  // Single-user mode runs the statements (one per line) without a server to
  // start and stop.
  const std::string sql = dir + "/setup.sql";
  s = WriteFileFor(user, sql,
                   "CREATE ROLE leasehold LOGIN;\n"
                   "CREATE DATABASE leasehold OWNER leasehold;\n",
                   0644);
  if (!s.ok()) return s;
  s = RunToCompletion(user,
                      {.argv = {kBinDir + "/postgres", "--single", "-D", data, "postgres"},
                       .output = log,
                       .input = sql},
                      60s);
  if (!s.ok()) return s;
  if (Tail(log).find("ERROR:") != std::string::npos) {
    return InternalError("pg fixture: creating the role and database failed:\n" + Tail(log));
  }
  return Status::Ok();
}

// A published template: a directory of the server's user that nobody else
// may write, holding a data directory.
bool UsableTemplate(const detail::ServerUser& user, const std::string& dir) {
  struct stat st {};
  if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != user.uid ||
      (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return false;
  }
  return access((dir + "/data/PG_VERSION").c_str(), F_OK) == 0;
}

// Removes a template this process had to keep to itself, at exit.
struct PrivateTemplate {
  std::string dir;
  ~PrivateTemplate() {
    std::error_code ignored;
    if (!dir.empty()) std::filesystem::remove_all(dir, ignored);
  }
};

Result<std::string> TemplateDataDir(const detail::ServerUser& user) {
  static std::mutex mu;
  static std::string data_dir;
  static PrivateTemplate private_template;
  std::lock_guard<std::mutex> lock(mu);
  if (!data_dir.empty()) return data_dir;
  if (access((kBinDir + "/postgres").c_str(), X_OK) != 0) {
    return FailedPreconditionError("pg fixture: no " + kBinDir +
                                   "/postgres (apt-get install postgresql-15)");
  }
  const std::string shared = TempBase() + "/leasehold-pg15-template-" + kTemplateRevision + "-u" +
                             std::to_string(user.uid);
  if (UsableTemplate(user, shared)) {
    data_dir = shared + "/data";
    return data_dir;
  }
  std::string built = TempBase() + "/leasehold-pg-template-XXXXXX";
  if (mkdtemp(built.data()) == nullptr) {
    return InternalError(Errno("pg fixture: cannot create a temporary directory"));
  }
  Status s = BuildTemplate(user, built);
  std::error_code ignored;
  if (!s.ok()) {
    std::filesystem::remove_all(built, ignored);
    return s;
  }
  // Published whole by one rename. When another process published first (or
  // the name is taken by something unusable), use ours privately.
  if (rename(built.c_str(), shared.c_str()) == 0) {
    data_dir = shared + "/data";
  } else if (UsableTemplate(user, shared)) {
    std::filesystem::remove_all(built, ignored);
    data_dir = shared + "/data";
  } else {
    private_template.dir = built;
    data_dir = built + "/data";
  }
  return data_dir;
}

}  // namespace

// ---- RunSql ----------------------------------------------------------------

Result<Rows> RunSql(const std::string& conninfo, const std::string& sql,
                    std::chrono::milliseconds timeout) {
  const auto until = SteadyClock::now() + timeout;
  // Asynchronous connect and query, so that a paused server costs `timeout`
  // and no more. `conninfo` comes last: its own settings win.
  const char* keys[] = {"application_name", "dbname", nullptr};
  const char* values[] = {"pg_server_fixture", conninfo.c_str(), nullptr};
  ConnPtr conn(PQconnectStartParams(keys, values, 1), &PQfinish);
  if (!conn) return InternalError("pg fixture: libpq is out of memory");
  PostgresPollingStatusType poll_status = PGRES_POLLING_WRITING;
  while (poll_status != PGRES_POLLING_OK) {
    if (PQstatus(conn.get()) == CONNECTION_BAD || poll_status == PGRES_POLLING_FAILED) {
      return UnavailableError("pg fixture: cannot connect: " + Trimmed(PQerrorMessage(conn.get())));
    }
    if (!WaitSocket(conn.get(), poll_status == PGRES_POLLING_READING ? POLLIN : POLLOUT, until)) {
      return DeadlineExceededError("pg fixture: connecting took longer than " +
                                   std::to_string(timeout.count()) + " ms");
    }
    poll_status = PQconnectPoll(conn.get());
  }
  if (PQsendQuery(conn.get(), sql.c_str()) != 1) {
    return UnavailableError("pg fixture: cannot send the query: " +
                            Trimmed(PQerrorMessage(conn.get())));
  }
  Rows rows;
  std::optional<Status> error;
  while (true) {
    while (PQisBusy(conn.get())) {
      if (!WaitSocket(conn.get(), POLLIN, until)) {
        return DeadlineExceededError("pg fixture: no answer within " +
                                     std::to_string(timeout.count()) + " ms to: " + sql);
      }
      if (PQconsumeInput(conn.get()) != 1) {
        return UnavailableError("pg fixture: connection lost: " +
                                Trimmed(PQerrorMessage(conn.get())));
      }
    }
    PGresult* res = PQgetResult(conn.get());
    if (res == nullptr) break;
    const ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_TUPLES_OK) {
      rows.clear();
      for (int r = 0; r < PQntuples(res); ++r) {
        std::vector<std::string> row;
        for (int c = 0; c < PQnfields(res); ++c) {
          row.emplace_back(PQgetisnull(res, r, c) ? "" : PQgetvalue(res, r, c));
        }
        rows.push_back(std::move(row));
      }
    } else if (st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
      rows.clear();
    } else if (!error) {
      const char* state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
      std::string message = "pg fixture: " + Trimmed(PQresultErrorMessage(res));
      if (state != nullptr) message += " (SQLSTATE " + std::string(state) + ")";
      error = PQstatus(conn.get()) == CONNECTION_BAD ? UnavailableError(message)
                                                     : InternalError(message);
    }
    PQclear(res);
  }
  if (error) return *error;
  return rows;
}

// ---- PgServer --------------------------------------------------------------

PgServer::PgServer() = default;

Result<std::unique_ptr<PgServer>> PgServer::Start(PgServerOptions options) {
  // A free port is free only until someone binds it (another test's server,
  // or any outgoing connection's local port): start again on another.
  for (int attempt = 1;; ++attempt) {
    Result<std::unique_ptr<PgServer>> server = StartOnce(options);
    if (server.ok() || attempt == kStartAttempts ||
        server.status().message().find(kPortTaken) == std::string::npos) {
      return server;
    }
  }
}

Result<std::unique_ptr<PgServer>> PgServer::StartOnce(const PgServerOptions& options) {
  std::unique_ptr<PgServer> s(new PgServer());
  s->options_ = options;
  Result<detail::ServerUser> user = ServerUserOfThisProcess();
  if (!user.ok()) return user.status();
  s->user_ = *user;
  Result<std::string> template_dir = TemplateDataDir(s->user_);
  if (!template_dir.ok()) return template_dir.status();
  if (options.faketime && access(kFaketimeLib, R_OK) != 0) {
    return FailedPreconditionError(std::string("pg fixture: no ") + kFaketimeLib +
                                   " (apt-get install faketime)");
  }

  s->dir_ = std::make_unique<testing::TempDir>("pg");
  if (!s->dir_->ok()) return InternalError("pg fixture: cannot create a temporary directory");
  Status st = GiveTo(s->user_, s->dir_->path());
  if (!st.ok()) return st;
  s->data_dir_ = s->dir_->File("data");
  s->socket_dir_ = s->dir_->File("sock");
  s->log_file_ = s->dir_->File("postgres.log");
  st = MakeDir(s->user_, s->socket_dir_);
  if (!st.ok()) return st;
  st = RunToCompletion(
      s->user_, {.argv = {"/bin/cp", "-a", *template_dir, s->data_dir_}, .output = s->log_file_},
      60s);
  if (!st.ok()) return st;

  // The superuser is trusted everywhere (the fixture and tests' witnesses);
  // role leasehold needs its password over TCP when it has one.
  const std::string method = options.password.empty() ? "trust" : "scram-sha-256";
  st = WriteFileFor(s->user_, s->data_dir_ + "/pg_hba.conf",
                    "# TYPE  DATABASE  USER      ADDRESS       METHOD\n"
                    "local   all       all                     trust\n"
                    "host    all       postgres  127.0.0.1/32  trust\n"
                    "host    all       all       127.0.0.1/32  " +
                        method + "\n",
                    0600);
  if (!st.ok()) return st;

  if (options.tls) {
    const std::string pki_dir = s->dir_->File("pki");
    st = MakeDir(s->user_, pki_dir);
    if (!st.ok()) return st;
    Result<testing::TestPki> pki = testing::TestPki::Create(pki_dir);
    if (!pki.ok()) return pki.status();
    s->pki_ = *pki;
    // postgres reads its key only when the server's user owns it (0600).
    for (const std::string& f : {pki->server_cert_file, pki->server_key_file, pki->ca_file}) {
      st = GiveTo(s->user_, f);
      if (!st.ok()) return st;
    }
  }
  if (options.faketime) {
    s->offset_file_ = s->dir_->File("clock-offset");
    st = WriteFileFor(s->user_, s->offset_file_, "+0\n", 0644);
    if (!st.ok()) return st;
  }

  s->port_ = testing::FreePort();
  if (s->port_ == 0) return InternalError("pg fixture: no free port on 127.0.0.1");
  st = s->StartAgain();
  if (!st.ok()) return st;
  if (!options.password.empty()) {
    Result<Rows> r =
        s->Query("ALTER ROLE leasehold PASSWORD " + SqlLiteral(options.password), "postgres");
    if (!r.ok()) return r.status();
  }
  return s;
}

PgServer::~PgServer() {
  Kill();
  RemoveStaleSharedMemory();
}

Status PgServer::Spawn() {
  std::vector<std::string> argv = {
      kBinDir + "/postgres", "-D", data_dir_, "-p", std::to_string(port_), "-k", socket_dir_, "-c",
      "listen_addresses=127.0.0.1", "-c", "max_connections=200", "-c", "shared_buffers=32MB",
      // Segments are files in the data directory, not in /dev/shm
      // where a SIGKILL would leave them behind.
      "-c", "dynamic_shared_memory_type=mmap", "-c", "password_encryption=scram-sha-256", "-c",
      "log_line_prefix=%m [%p] %q%a: ",
      // Commits do not wait for the disk: on a shared CI disk (etcd
      // clusters fsyncing beside us) a WAL fsync can stall past a 1 s TTL
      // and fail every renewal of a test at once. What the tests check does
      // not depend on it: a killed server's WAL is still in the page cache
      // (only an OS crash would lose it). The benchmark's server fsyncs.
      "-c", "fsync=off"};
  if (pki_) {
    for (const std::string& setting :
         {std::string("ssl=on"), "ssl_cert_file=" + pki_->server_cert_file,
          "ssl_key_file=" + pki_->server_key_file, "ssl_ca_file=" + pki_->ca_file}) {
      argv.insert(argv.end(), {"-c", setting});
    }
  }
  for (const std::string& setting : options_.settings) argv.insert(argv.end(), {"-c", setting});
  Command cmd{.argv = argv, .output = log_file_, .own_group = true};
  if (options_.faketime) {
    // NO_CACHE: every clock read re-reads the offset file, so a change is
    // seen at once. Monotonic clocks stay real: an NTP step moves only the
    // wall clock.
    cmd.env.insert(cmd.env.end(), {std::string("LD_PRELOAD=") + kFaketimeLib,
                                   "FAKETIME_TIMESTAMP_FILE=" + offset_file_, "FAKETIME_NO_CACHE=1",
                                   "FAKETIME_DONT_FAKE_MONOTONIC=1"});
  }
  Result<pid_t> pid = pg_test::Spawn(user_, cmd);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  paused_ = false;
  return Status::Ok();
}

std::string PgServer::SocketConninfo(const std::string& db) const {
  return "host=" + ConninfoValue(socket_dir_) + " port=" + std::to_string(port_) +
         " user=postgres dbname=" + ConninfoValue(db);
}

Status PgServer::WaitReady(std::chrono::milliseconds timeout) {
  const auto until = SteadyClock::now() + timeout;
  while (true) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return UnavailableError("pg fixture: postgres exited while starting (" +
                              DescribeExit(status) + "); its log ends:\n" + LogTail());
    }
    // Over the Unix socket: the TCP listener is set up before it.
    if (RunSql(SocketConninfo("postgres"), "SELECT 1", 2s).ok()) return Status::Ok();
    if (SteadyClock::now() > until) {
      return UnavailableError("pg fixture: postgres did not accept connections within " +
                              std::to_string(timeout.count()) + " ms; its log ends:\n" + LogTail());
    }
    std::this_thread::sleep_for(10ms);
  }
}

std::string PgServer::superuser_conninfo() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=postgres user=postgres";
}

std::string PgServer::user_conninfo() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=leasehold user=leasehold";
}

Result<Rows> PgServer::Query(const std::string& sql, const std::string& db,
                             std::chrono::milliseconds timeout) const {
  return RunSql(SocketConninfo(db), sql, timeout);
}

void PgServer::Kill() {
  if (pid_ <= 0) return;
  // Stop the postmaster first so that it forks no more children, then kill
  // it and every child it has (found while it still is their parent).
  kill(pid_, SIGSTOP);
  WaitStopped(pid_);
  const std::vector<pid_t> children = ChildrenOf(pid_);
  kill(-pid_, SIGKILL);
  for (pid_t c : children) kill(c, SIGKILL);
  waitpid(pid_, nullptr, 0);
  // The children are reaped by init (or stay zombies): wait until none runs,
  // so that a restart finds their shared memory detached.
  const auto until = SteadyClock::now() + 5s;
  for (pid_t c : children) {
    while (!Gone(c) && SteadyClock::now() < until) std::this_thread::sleep_for(1ms);
  }
  pid_ = -1;
  paused_ = false;
}

void PgServer::Pause() {
  if (pid_ <= 0) return;
  kill(pid_, SIGSTOP);
  WaitStopped(pid_);
  const std::vector<pid_t> children = ChildrenOf(pid_);
  for (pid_t c : children) kill(c, SIGSTOP);
  for (pid_t c : children) WaitStopped(c);
  paused_ = true;
}

void PgServer::Resume() {
  if (pid_ <= 0) return;
  for (pid_t c : ChildrenOf(pid_)) kill(c, SIGCONT);
  kill(pid_, SIGCONT);
  paused_ = false;
}

Status PgServer::Restart(bool immediate) {
  if (pid_ > 0) {
    if (paused_) Resume();
    kill(pid_, immediate ? SIGQUIT : SIGINT);
    // The postmaster exits last, after all its children.
    const std::optional<int> status = WaitExit(pid_, 30s);
    if (status) {
      pid_ = -1;
    } else {
      Kill();
    }
  }
  return StartAgain();
}

Status PgServer::StartAgain() {
  if (pid_ > 0) return Status::Ok();
  Status s = Spawn();
  if (!s.ok()) return s;
  return WaitReady(kReadyTimeout);
}

Result<int> PgServer::TerminateBackends(const std::string& application_name) const {
  Result<Rows> rows = Query(
      "SELECT count(*) FROM (SELECT pg_terminate_backend(pid, 5000) AS done "
      "FROM pg_stat_activity WHERE application_name = " +
          SqlLiteral(application_name) + " AND pid <> pg_backend_pid()) AS t WHERE done",
      "postgres");
  if (!rows.ok()) return rows.status();
  if (rows->size() != 1 || (*rows)[0].size() != 1) {
    return InternalError("pg fixture: unexpected answer to pg_terminate_backend");
  }
  return std::stoi((*rows)[0][0]);
}

Status PgServer::SetClockOffset(const std::string& spec) {
  if (!options_.faketime) {
    return FailedPreconditionError(
        "pg fixture: SetClockOffset needs a server started with "
        "faketime = true");
  }
  return WriteFileFor(user_, offset_file_, spec + "\n", 0644);
}

std::string PgServer::LogTail() const { return Tail(log_file_); }

void PgServer::RemoveStaleSharedMemory() {
  // A killed postmaster leaves its SysV interlock segment behind (a restart
  // would remove it); its id is on line 7 of postmaster.pid: "key id".
  if (data_dir_.empty()) return;
  std::ifstream in(data_dir_ + "/postmaster.pid");
  std::string line;
  for (int i = 0; i < 7 && std::getline(in, line); ++i) {
  }
  long key = 0;
  long id = -1;
  if (!(std::istringstream(line) >> key >> id) || id < 0) return;
  shmid_ds ds{};
  if (shmctl(static_cast<int>(id), IPC_STAT, &ds) == 0 && ds.shm_nattch == 0) {
    shmctl(static_cast<int>(id), IPC_RMID, nullptr);
  }
}

// ---- PgBouncer -------------------------------------------------------------

PgBouncer::PgBouncer() = default;

Result<std::unique_ptr<PgBouncer>> PgBouncer::Start(const PgServer& server,
                                                    PgBouncerOptions options) {
  for (int attempt = 1;; ++attempt) {
    Result<std::unique_ptr<PgBouncer>> bouncer = StartOnce(server, options);
    if (bouncer.ok() || attempt == kStartAttempts ||
        bouncer.status().message().find(kPortTaken) == std::string::npos) {
      return bouncer;
    }
  }
}

Result<std::unique_ptr<PgBouncer>> PgBouncer::StartOnce(const PgServer& server,
                                                        const PgBouncerOptions& options) {
  if (access(kPgBouncer, X_OK) != 0) {
    return FailedPreconditionError(std::string("pg fixture: no ") + kPgBouncer +
                                   " (apt-get install pgbouncer)");
  }
  std::unique_ptr<PgBouncer> b(new PgBouncer());
  Result<detail::ServerUser> user = ServerUserOfThisProcess();
  if (!user.ok()) return user.status();
  b->user_ = *user;
  b->password_ = server.options().password;
  b->dir_ = std::make_unique<testing::TempDir>("pgbouncer");
  if (!b->dir_->ok()) return InternalError("pg fixture: cannot create a temporary directory");
  Status st = GiveTo(b->user_, b->dir_->path());
  if (!st.ok()) return st;
  b->log_file_ = b->dir_->File("pgbouncer.log");
  b->port_ = testing::FreePort();
  if (b->port_ == 0) return InternalError("pg fixture: no free port on 127.0.0.1");

  // auth_file: "user" "password", a quote inside doubled. With trust the
  // users must still be listed; with SCRAM the plain password lets PgBouncer
  // both check clients and log in to the server.
  auto quoted = [](const std::string& v) {
    std::string out = "\"";
    for (char c : v) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    return out + "\"";
  };
  const bool scram = !b->password_.empty();
  const std::string users = scram ? quoted("leasehold") + " " + quoted(b->password_) + "\n"
                                  : "\"leasehold\" \"\"\n\"postgres\" \"\"\n";
  const std::string auth_file = b->dir_->File("userlist.txt");
  st = WriteFileFor(b->user_, auth_file, users, 0600);
  if (!st.ok()) return st;

  std::string ini = "[databases]\n* = host=127.0.0.1 port=" + std::to_string(server.port()) +
                    "\n\n[pgbouncer]\n"
                    "listen_addr = 127.0.0.1\n"
                    "listen_port = " +
                    std::to_string(b->port_) +
                    "\n"
                    "unix_socket_dir = " +
                    b->dir_->path() +
                    "\n"
                    "auth_type = " +
                    (scram ? "scram-sha-256" : "trust") +
                    "\n"
                    "auth_file = " +
                    auth_file +
                    "\n"
                    "admin_users = leasehold\n"
                    "pool_mode = " +
                    options.pool_mode +
                    "\n"
                    "max_client_conn = 500\n"
                    "default_pool_size = 50\n"
                    "server_login_retry = 1\n"
                    "ignore_startup_parameters = extra_float_digits\n";
  for (const std::string& s : options.settings) ini += s + "\n";
  const std::string ini_file = b->dir_->File("pgbouncer.ini");
  st = WriteFileFor(b->user_, ini_file, ini, 0600);
  if (!st.ok()) return st;

  Result<pid_t> pid =
      Spawn(b->user_, {.argv = {kPgBouncer, ini_file}, .output = b->log_file_, .own_group = true});
  if (!pid.ok()) return pid.status();
  b->pid_ = *pid;

  // Ready when a query through it reaches the server.
  std::string probe = b->user_conninfo() + " sslmode=disable";
  if (scram) probe += " password=" + ConninfoValue(b->password_);
  const auto until = SteadyClock::now() + kReadyTimeout;
  while (true) {
    int status = 0;
    if (waitpid(b->pid_, &status, WNOHANG) == b->pid_) {
      b->pid_ = -1;
      return UnavailableError("pg fixture: pgbouncer exited while starting (" +
                              DescribeExit(status) + "); its log ends:\n" + b->LogTail());
    }
    Result<Rows> r = RunSql(probe, "SELECT 1", 2s);
    if (r.ok()) return b;
    if (SteadyClock::now() > until) {
      return UnavailableError("pg fixture: no query through pgbouncer succeeded in time (" +
                              r.status().message() + "); its log ends:\n" + b->LogTail());
    }
    std::this_thread::sleep_for(10ms);
  }
}

PgBouncer::~PgBouncer() { Kill(); }

std::string PgBouncer::user_conninfo() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=leasehold user=leasehold";
}

std::string PgBouncer::admin_conninfo() const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=pgbouncer user=leasehold";
}

void PgBouncer::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

void PgBouncer::Pause() {
  if (pid_ > 0) kill(pid_, SIGSTOP);
}

void PgBouncer::Resume() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

std::string PgBouncer::LogTail() const { return Tail(log_file_); }

}  // namespace leasehold::pg_test
