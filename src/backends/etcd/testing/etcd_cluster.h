// Test fixtures for the etcd backend: real etcd processes (Debian's etcd
// binary) on 127.0.0.1 with free ports and temporary data directories, stopped
// by PID; and a raw gRPC client for playing a foreign writer.
#ifndef LEASEHOLD_SRC_BACKENDS_ETCD_TESTING_ETCD_CLUSTER_H_
#define LEASEHOLD_SRC_BACKENDS_ETCD_TESTING_ETCD_CLUSTER_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "leasehold/status.h"
#include "testing/temp_dir.h"

namespace leasehold::etcd_test {

struct ClusterOptions {
  int members = 1;
  // Fast elections (heartbeat 10 ms, election 100 ms): a new leader ~0.1 s
  // after the old one dies, and a minimum lease TTL of 1 s.
  bool fast_election = true;
  // Serve clients over TLS with these files (server cert/key; client certs
  // verified against ca_file when set).
  std::string tls_cert_file{};
  std::string tls_key_file{};
  std::string tls_client_ca_file{};
  // More etcd flags for every member (e.g. {"--auth-token-ttl", "1"}).
  std::vector<std::string> extra_args{};
  // Member i listens (client and peer URLs) on hosts[i], an address in
  // 127.0.0.0/8; members past the list's end on 127.0.0.1. The partition
  // tests give every member an address of its own.
  std::vector<std::string> hosts{};
  // Member i runs as user and group uids[i] (0: as the test); its data
  // directory is made its own. The partition tests tell the members' packets
  // apart by the user that owns their sockets.
  std::vector<uid_t> uids{};
};

// Runs Debian's etcdctl against `endpoint` with `args`; true when it exits 0.
bool Etcdctl(const std::string& endpoint, const std::vector<std::string>& args);

class EtcdCluster {
 public:
  // Starts the members and waits until every one reports healthy (and, for a
  // cluster, a leader exists). The error says why it could not (no etcd
  // binary, a member died: the tail of its log). A start that lost a race
  // for its ports is retried on new ones, up to five times.
  static Result<std::unique_ptr<EtcdCluster>> Start(ClusterOptions options = {});
  // SIGKILLs every member still running and removes the data.
  ~EtcdCluster();

  int size() const { return static_cast<int>(members_.size()); }
  // "HOST:PORT" of every member's client URL.
  std::vector<std::string> endpoints() const;
  std::string endpoint(int i) const;

  // Faults, by PID. Kill: SIGKILL and reap. Pause/Resume: SIGSTOP/SIGCONT.
  // Restart: start a killed member again with the same data (waits until
  // healthy when `wait`).
  void Kill(int i);
  void Pause(int i);
  void Resume(int i);
  Status Restart(int i, bool wait = true);
  bool running(int i) const { return members_[i].pid > 0; }

  // Index of the current leader, or -1 if none answers within `timeout`.
  int Leader(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) const;
  // Waits until member i (or every running member when i < 0) is healthy.
  Status WaitHealthy(int i, std::chrono::milliseconds timeout) const;
  std::string LogTail(int i) const;

 private:
  struct Member {
    std::string name;
    std::string host;
    uid_t uid = 0;
    int client_port = 0;
    int peer_port = 0;
    std::string data_dir;
    std::string log;
    pid_t pid = -1;
  };
  EtcdCluster() = default;
  static Result<std::unique_ptr<EtcdCluster>> StartOnce(const ClusterOptions& options);
  Status Spawn(int i, bool existing);

  ClusterOptions options_;
  std::unique_ptr<testing::TempDir> dir_;
  std::vector<Member> members_;
  std::string initial_cluster_;
};

// A plain HTTP request to host:port (for /health and the JSON gateway).
// Returns the body, or nullopt on any failure.
std::optional<std::string> HttpRequest(const std::string& host, int port, const std::string& method,
                                       const std::string& path, const std::string& body,
                                       std::chrono::milliseconds timeout);

// A foreign etcd writer over gRPC (synchronous), for tests.
class RawEtcd {
 public:
  explicit RawEtcd(const std::string& endpoint);
  ~RawEtcd();
  // Grants an etcd lease; 0 on failure.
  int64_t Grant(int64_t ttl_seconds);
  bool Revoke(int64_t lease);
  bool Put(const std::string& key, const std::string& value, int64_t lease = 0);
  bool Delete(const std::string& key);
  // The key's (value, create_revision, lease), or nullopt if absent/failed.
  struct Kv {
    std::string value;
    int64_t create_revision = 0;
    int64_t lease = 0;
  };
  std::optional<Kv> Get(const std::string& key);
  // The lease's remaining TTL in seconds (<= 0: gone), or nullopt on failure.
  std::optional<int64_t> TimeToLive(int64_t lease);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace leasehold::etcd_test

#endif  // LEASEHOLD_SRC_BACKENDS_ETCD_TESTING_ETCD_CLUSTER_H_
