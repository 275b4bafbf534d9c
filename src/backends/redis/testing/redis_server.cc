#include "redis_server.h"

#include <hiredis/hiredis.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "testing/child_process.h"
#include "testing/free_port.h"

namespace leasehold::redis_test {
namespace {

using namespace std::chrono_literals;

constexpr char kRedisServer[] = "/usr/bin/redis-server";
constexpr char kWalltimeShift[] = LEASEHOLD_WALLTIME_SHIFT;
constexpr auto kReadyTimeout = 10s;
constexpr int kStartAttempts = 5;

std::string Text(const redisReply* r) {
  switch (r->type) {
    case REDIS_REPLY_INTEGER:
      return std::to_string(r->integer);
    case REDIS_REPLY_NIL:
      return "";
    case REDIS_REPLY_ARRAY: {
      std::string out;
      for (size_t i = 0; i < r->elements; ++i) {
        if (i) out += '\n';
        out += Text(r->element[i]);
      }
      return out;
    }
    default:
      return std::string(r->str, r->len);
  }
}

bool WriteAtomically(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << contents;
    if (!f) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

}  // namespace

Result<std::unique_ptr<RedisServer>> RedisServer::Start(RedisServerOptions options) {
  if (access(kRedisServer, X_OK) != 0) {
    return FailedPreconditionError(std::string("redis fixture: no ") + kRedisServer +
                                   " (apt-get install redis-server)");
  }
  if (options.faketime && access(kWalltimeShift, R_OK) != 0) {
    return FailedPreconditionError(std::string("redis fixture: no ") + kWalltimeShift +
                                   " (build the leasehold_walltime_shift target)");
  }
  std::unique_ptr<RedisServer> s(new RedisServer(std::move(options)));
  s->dir_ = std::make_unique<testing::TempDir>("redis");
  if (!s->dir_->ok()) return InternalError("redis fixture: cannot create a temporary directory");
  s->log_file_ = s->dir_->File("redis.log");
  if (s->options_.tls && s->options_.pki) {
    s->pki_ = s->options_.pki;
  } else if (s->options_.tls) {
    Result<testing::TestPki> pki = testing::TestPki::Create(s->dir_->path());
    if (!pki.ok()) return pki.status();
    s->pki_ = std::make_shared<const testing::TestPki>(*pki);
  }
  if (s->options_.faketime) {
    s->offset_file_ = s->dir_->File("clock-offset");
    if (!WriteAtomically(s->offset_file_, "0\n")) {
      return InternalError("redis fixture: cannot write " + s->offset_file_);
    }
  }
  Status last = InternalError("redis fixture: not started");
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    s->port_ = testing::FreePort();
    s->admin_port_ = s->options_.tls ? testing::FreePort() : s->port_;
    if (s->port_ == 0 || s->admin_port_ == 0) return InternalError("redis fixture: no free port");
    last = s->Spawn();
    if (last.ok()) return s;
    if (last.message().find("Address already in use") == std::string::npos) break;
  }
  return last;
}

RedisServer::~RedisServer() { Kill(); }

std::string RedisServer::url() const {
  const std::string hostport = "127.0.0.1:" + std::to_string(port_);
  if (!options_.tls) return "redis://" + hostport;
  return "rediss://" + hostport + "?ca=" + pki_->ca_file;
}

Status RedisServer::Spawn() {
  std::vector<std::string> argv = {
      kRedisServer, "--bind", "127.0.0.1", "--port",
      std::to_string(options_.tls ? admin_port_ : port_), "--dir", dir_->path(), "--save", "",
      "--appendonly", options_.aof ? "yes" : "no", "--appendfsync", "always", "--daemonize", "no",
      "--maxmemory-policy", options_.maxmemory_policy,
      // A replica's first sync at once, not after 5 s.
      "--repl-diskless-sync-delay", "0", "--logfile", log_file_};
  if (options_.tls) {
    argv.insert(argv.end(),
                {"--tls-port", std::to_string(port_), "--tls-cert-file", pki_->server_cert_file,
                 "--tls-key-file", pki_->server_key_file, "--tls-ca-cert-file", pki_->ca_file,
                 "--tls-auth-clients", "optional"});
  }
  if (!options_.password.empty()) argv.insert(argv.end(), {"--requirepass", options_.password});
  if (options_.replica_of > 0) {
    argv.insert(argv.end(), {"--replicaof", "127.0.0.1", std::to_string(options_.replica_of)});
    if (options_.tls) argv.insert(argv.end(), {"--tls-replication", "yes"});
    if (!options_.primary_password.empty()) {
      argv.insert(argv.end(), {"--masterauth", options_.primary_password});
    }
  }
  testing::ChildCommand cmd{.argv = argv,
                            .env = testing::EnvironmentWithout({"FAKETIME", "LD_PRELOAD="}),
                            .output = dir_->File("stdout.log")};
  if (options_.faketime) {
    cmd.env.insert(cmd.env.end(), {std::string("LD_PRELOAD=") + kWalltimeShift,
                                   "LEASEHOLD_WALLTIME_OFFSET_FILE=" + offset_file_});
  }
  Result<pid_t> pid = testing::SpawnChild(cmd, "redis fixture");
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  const auto until = std::chrono::steady_clock::now() + kReadyTimeout;
  while (std::chrono::steady_clock::now() < until) {
    if (std::optional<int> status = testing::WaitChild(pid_, 0ms)) {
      pid_ = -1;
      return InternalError("redis fixture: redis-server exited (" + testing::DescribeExit(*status) +
                           "); its log ends:\n" + LogTail());
    }
    if (Command({"PING"}).ok()) {
      if (!options_.acl.empty()) {
        for (const std::string& rule : options_.acl) {
          std::vector<std::string> args = {"ACL", "SETUSER"};
          std::istringstream words(rule);
          for (std::string w; words >> w;) args.push_back(w);
          if (Result<std::string> r = Command(args); !r.ok()) return r.status();
        }
      }
      return Status::Ok();
    }
    std::this_thread::sleep_for(10ms);
  }
  Kill();
  return InternalError("redis fixture: redis-server did not answer within 10 s; its log ends:\n" +
                       LogTail());
}

Result<std::string> RedisServer::Command(const std::vector<std::string>& args) {
  const timeval timeout{5, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", admin_port_, timeout);
  if (!c || c->err) {
    std::string why = c ? c->errstr : "cannot allocate";
    if (c) redisFree(c);
    return UnavailableError("redis fixture: connect: " + why);
  }
  redisSetTimeout(c, timeout);
  auto run = [&](const std::vector<std::string>& a) -> Result<std::string> {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& x : a) {
      argv.push_back(x.data());
      lens.push_back(x.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (!r) return UnavailableError(std::string("redis fixture: ") + c->errstr);
    Result<std::string> out =
        r->type == REDIS_REPLY_ERROR
            ? Result<std::string>(FailedPreconditionError("redis fixture: " + a[0] + ": " +
                                                          std::string(r->str, r->len)))
            : Result<std::string>(Text(r));
    freeReplyObject(r);
    return out;
  };
  Result<std::string> out = InternalError("");
  if (!options_.password.empty()) {
    Result<std::string> auth = run({"AUTH", options_.password});
    if (!auth.ok()) {
      redisFree(c);
      return auth.status();
    }
  }
  out = run(args);
  redisFree(c);
  return out;
}

void RedisServer::Kill() {
  if (pid_ <= 0) return;
  if (paused_) Resume();
  kill(pid_, SIGKILL);
  testing::WaitChild(pid_, 10s);
  pid_ = -1;
}

void RedisServer::Pause() {
  if (pid_ <= 0) return;
  kill(pid_, SIGSTOP);
  paused_ = true;
}

void RedisServer::Resume() {
  if (pid_ <= 0) return;
  kill(pid_, SIGCONT);
  paused_ = false;
}

Status RedisServer::Restart() {
  Kill();
  return Spawn();
}

Status RedisServer::SetClockOffset(const std::string& spec) {
  if (!options_.faketime) {
    return FailedPreconditionError("redis fixture: SetClockOffset needs faketime = true");
  }
  if (!WriteAtomically(offset_file_, spec + "\n")) {
    return InternalError("redis fixture: cannot write " + offset_file_);
  }
  return Status::Ok();
}

std::string RedisServer::LogTail() const {
  std::ifstream f(log_file_);
  std::stringstream all;
  all << f.rdbuf();
  const std::string text = all.str();
  return text.size() > 2000 ? text.substr(text.size() - 2000) : text;
}

Result<std::unique_ptr<RedisSentinel>> RedisSentinel::Start(int primary_port, int quorum,
                                                            const testing::TestPki* tls) {
  constexpr char kSentinel[] = "/usr/bin/redis-sentinel";
  if (access(kSentinel, X_OK) != 0) {
    return FailedPreconditionError(
        "redis fixture: no /usr/bin/redis-sentinel "
        "(apt-get install redis-sentinel)");
  }
  std::unique_ptr<RedisSentinel> s(new RedisSentinel());
  s->dir_ = std::make_unique<testing::TempDir>("sentinel");
  if (!s->dir_->ok()) return InternalError("redis fixture: cannot create a temporary directory");
  s->port_ = testing::FreePort();
  s->admin_port_ = tls ? testing::FreePort() : s->port_;
  if (s->port_ == 0 || s->admin_port_ == 0) return InternalError("redis fixture: no free port");
  const std::string conf = s->dir_->File("sentinel.conf");
  {
    std::ofstream f(conf);
    f << "port " << s->admin_port_ << "\nbind 127.0.0.1\ndir " << s->dir_->path();
    if (tls) {
      // tls-replication: TLS to the servers and the other sentinels, and
      // the TLS port announced to them.
      f << "\ntls-port " << s->port_ << "\ntls-cert-file " << tls->server_cert_file
        << "\ntls-key-file " << tls->server_key_file << "\ntls-ca-cert-file " << tls->ca_file
        << "\ntls-auth-clients optional\ntls-replication yes";
    }
    f << "\nsentinel monitor mymaster 127.0.0.1 " << primary_port << " " << quorum
      << "\nsentinel down-after-milliseconds mymaster 1000\n"
         "sentinel failover-timeout mymaster 5000\nsentinel parallel-syncs mymaster 1\n";
    if (!f) return InternalError("redis fixture: cannot write " + conf);
  }
  Result<pid_t> pid = testing::SpawnChild({.argv = {kSentinel, conf},
                                           .env = testing::EnvironmentWithout({"LD_PRELOAD="}),
                                           .output = s->dir_->File("sentinel.log")},
                                          "redis fixture");
  if (!pid.ok()) return pid.status();
  s->pid_ = *pid;
  const auto until = std::chrono::steady_clock::now() + kReadyTimeout;
  while (std::chrono::steady_clock::now() < until) {
    if (s->Primary().ok()) return s;
    std::this_thread::sleep_for(20ms);
  }
  return InternalError("redis fixture: redis-sentinel did not answer within 10 s");
}

RedisSentinel::~RedisSentinel() { Kill(); }

void RedisSentinel::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  testing::WaitChild(pid_, 10s);
  pid_ = -1;
}

Result<std::string> RedisSentinel::Primary() {
  const timeval timeout{2, 0};
  redisContext* c = redisConnectWithTimeout("127.0.0.1", admin_port_, timeout);
  if (!c || c->err) {
    if (c) redisFree(c);
    return UnavailableError("redis fixture: sentinel not reachable");
  }
  redisSetTimeout(c, timeout);
  auto* r = static_cast<redisReply*>(redisCommand(c, "SENTINEL get-master-addr-by-name mymaster"));
  Result<std::string> out = UnavailableError("redis fixture: sentinel knows no primary");
  if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
    out = Text(r->element[0]) + ":" + Text(r->element[1]);
  }
  if (r) freeReplyObject(r);
  redisFree(c);
  return out;
}

}  // namespace leasehold::redis_test
