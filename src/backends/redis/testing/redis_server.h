// Test fixture for the Redis backend: a real, throwaway redis-server 7.0
// (Debian's /usr/bin/redis-server) on 127.0.0.1 with a free port and a
// temporary directory, started by fork/exec and stopped by PID, with the
// faults the backend's tests need (kill, pause, restart, a server wall clock
// that jumps, TLS, passwords and ACL users, an eviction policy).
//
// The wall clock: libfaketime gives up under Debian's redis-server (jemalloc
// calls clock_gettime before libfaketime has initialised), so the server
// runs with tests/testing/walltime_shift.cc preloaded instead, which shifts
// CLOCK_REALTIME, gettimeofday and time by the seconds in a file.
//
// Admin commands (Command) go over a plain connection of the fixture's own
// (hiredis' blocking client): with TLS, the server also listens in plain
// text on a second port for the fixture only.
//
// Thread-safety: Command and the accessors may be called from any thread
// while the server is not being started, restarted or killed; the fault
// methods from one thread at a time.
#ifndef LEASEHOLD_SRC_BACKENDS_REDIS_TESTING_REDIS_SERVER_H_
#define LEASEHOLD_SRC_BACKENDS_REDIS_TESTING_REDIS_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "leasehold/status.h"
#include "testing/temp_dir.h"
#include "testing/test_pki.h"

namespace leasehold::redis_test {

struct RedisServerOptions {
  bool aof = false;  // appendonly yes, appendfsync always
  bool tls = false;  // clients over TLS (test PKI), the fixture in plain text
  // With tls: the PKI to use (servers of one replication group share one),
  // else one of the server's own. A TLS replica replicates over TLS
  // (tls-replication yes) from replica_of, the primary's TLS port.
  std::shared_ptr<const testing::TestPki> pki{};
  std::string password{};  // requirepass (the default user's)
  std::vector<std::string>
      acl{};  // ACL SETUSER rules, one user per entry, e.g. "app on >pw ~* +@all"
  std::string maxmemory_policy = "noeviction";
  bool faketime = false;           // wall clock shifted by SetClockOffset (walltime_shift.cc)
  int replica_of = 0;              // port of a primary on 127.0.0.1 to replicate
  std::string primary_password{};  // masterauth, with replica_of
};

class RedisServer {
 public:
  // Fails (never skips) when the server cannot start: kFailedPrecondition
  // when redis-server (or libfaketime) is not installed.
  static Result<std::unique_ptr<RedisServer>> Start(RedisServerOptions options = {});
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }  // what clients use (TLS when tls)
  int admin_port() const { return admin_port_; }
  pid_t pid() const { return pid_; }
  // redis://127.0.0.1:PORT (rediss:// with ?ca=... when TLS).
  std::string url() const;
  const testing::TestPki* pki() const { return pki_.get(); }
  std::shared_ptr<const testing::TestPki> shared_pki() const { return pki_; }

  // One command on the admin connection: the reply as text (integers in
  // decimal, nil as "", arrays as their elements joined by '\n'); an error
  // reply is kFailedPrecondition with its text.
  Result<std::string> Command(const std::vector<std::string>& args);

  void Kill();    // SIGKILL, and wait
  void Pause();   // SIGSTOP
  void Resume();  // SIGCONT
  // Kill and start again on the same ports and directory (what survives is
  // what the AOF kept).
  Status Restart();
  // Shifts the server's wall clock by whole seconds, e.g. "+3600" or
  // "-3600" (needs faketime).
  Status SetClockOffset(const std::string& spec);
  std::string LogTail() const;

 private:
  explicit RedisServer(RedisServerOptions options) : options_(std::move(options)) {}
  Status Spawn();

  const RedisServerOptions options_;
  std::unique_ptr<testing::TempDir> dir_;
  std::shared_ptr<const testing::TestPki> pki_;
  std::string log_file_, offset_file_;
  int port_ = 0, admin_port_ = 0;
  pid_t pid_ = -1;
  bool paused_ = false;
};

// A redis-sentinel process monitoring the primary at 127.0.0.1:primary_port
// as "mymaster" (down after 1 s, quorum 2), with a writable config file of
// its own in a temporary directory. With `tls`: clients reach it over TLS
// (port()), and it talks TLS to the servers and to the other sentinels
// (tls-replication yes: primary_port is the primary's TLS port); the fixture
// asks it in plain text on a port of its own.
class RedisSentinel {
 public:
  static Result<std::unique_ptr<RedisSentinel>> Start(int primary_port, int quorum = 2,
                                                      const testing::TestPki* tls = nullptr);
  ~RedisSentinel();
  RedisSentinel(const RedisSentinel&) = delete;
  RedisSentinel& operator=(const RedisSentinel&) = delete;

  int port() const { return port_; }  // what clients use (TLS with tls)
  // SENTINEL get-master-addr-by-name mymaster: "host:port", or an error.
  Result<std::string> Primary();
  void Kill();

 private:
  RedisSentinel() = default;
  std::unique_ptr<testing::TempDir> dir_;
  int port_ = 0, admin_port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace leasehold::redis_test

#endif  // LEASEHOLD_SRC_BACKENDS_REDIS_TESTING_REDIS_SERVER_H_
