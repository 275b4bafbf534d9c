#include "etcd_cluster.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "rpc.grpc.pb.h"
#include "testing/free_port.h"

namespace leasehold::etcd_test {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

// The value of the first "field":"..." in a JSON text (etcd's gateway quotes
// its integers).
std::string JsonString(const std::string& json, const std::string& field) {
  const std::string needle = "\"" + field + "\":\"";
  const auto at = json.find(needle);
  if (at == std::string::npos) return {};
  const auto start = at + needle.size();
  const auto end = json.find('"', start);
  return end == std::string::npos ? std::string() : json.substr(start, end - start);
}

}  // namespace

std::optional<std::string> HttpRequest(const std::string& host, int port, const std::string& method,
                                       const std::string& path, const std::string& body,
                                       std::chrono::milliseconds timeout) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return std::nullopt;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    close(fd);
    return std::nullopt;
  }
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const auto until = SteadyClock::now() + timeout;
  auto wait = [&](short events) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    return poll(&p, 1, static_cast<int>(left.count())) == 1;
  };
  std::optional<std::string> result;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
    close(fd);
    return std::nullopt;
  }
  std::string req = method + " " + path + " HTTP/1.0\r\nHost: " + host +
                    "\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\nContent-Type: application/json\r\n\r\n" + body;
  size_t sent = 0;
  while (sent < req.size()) {
    if (!wait(POLLOUT)) break;
    const ssize_t n = send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  if (sent == req.size()) {
    std::string resp;
    char buf[4096];
    while (wait(POLLIN)) {
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) {
        if (n == 0) {
          const auto split = resp.find("\r\n\r\n");
          if (split != std::string::npos) result = resp.substr(split + 4);
        }
        break;
      }
      resp.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return result;
}

Result<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(ClusterOptions options) {
  // A free port is free only until someone else binds it: another test's
  // server, or any process's outgoing connection, which takes its local port
  // from the same ephemeral range. When a member lost that race, start the
  // whole cluster again on new ports.
  constexpr int kAttempts = 5;
  for (int attempt = 1;; ++attempt) {
    Result<std::unique_ptr<EtcdCluster>> cluster = StartOnce(options);
    if (cluster.ok() || attempt == kAttempts ||
        cluster.status().message().find("address already in use") == std::string::npos) {
      return cluster;
    }
  }
}

Result<std::unique_ptr<EtcdCluster>> EtcdCluster::StartOnce(const ClusterOptions& options) {
  std::unique_ptr<EtcdCluster> c(new EtcdCluster());
  c->options_ = options;
  c->dir_ = std::make_unique<testing::TempDir>("etcd");
  if (!c->dir_->ok()) return InternalError("etcd fixture: cannot create a temporary directory");
  // The kernel may hand the same free port out twice in a row (it was closed
  // in between): every port of the cluster must differ from the others.
  std::set<int> used;
  auto distinct_port = [&used]() {
    for (int tries = 0; tries < 50; ++tries) {
      const int port = testing::FreePort();
      if (port == 0) return 0;
      if (used.insert(port).second) return port;
    }
    return 0;
  };
  for (int i = 0; i < options.members; ++i) {
    Member m;
    m.name = "n" + std::to_string(i);
    m.host = i < static_cast<int>(options.hosts.size()) ? options.hosts[i] : "127.0.0.1";
    m.uid = i < static_cast<int>(options.uids.size()) ? options.uids[i] : 0;
    m.client_port = distinct_port();
    m.peer_port = distinct_port();
    if (m.client_port == 0 || m.peer_port == 0) {
      return InternalError("etcd fixture: no free port on 127.0.0.1");
    }
    m.data_dir = c->dir_->File(m.name + ".etcd");
    m.log = c->dir_->File(m.name + ".log");
    if (m.uid != 0) {
      // A member of its own user needs to reach and own its data directory.
      if (chmod(c->dir_->path().c_str(), 0711) != 0 || mkdir(m.data_dir.c_str(), 0700) != 0 ||
          chown(m.data_dir.c_str(), m.uid, m.uid) != 0) {
        return InternalError("etcd fixture: cannot give " + m.data_dir + " to user " +
                             std::to_string(m.uid));
      }
    }
    if (!c->initial_cluster_.empty()) c->initial_cluster_ += ",";
    c->initial_cluster_ += m.name + "=http://" + m.host + ":" + std::to_string(m.peer_port);
    c->members_.push_back(m);
  }
  for (int i = 0; i < options.members; ++i) {
    Status s = c->Spawn(i, false);
    if (!s.ok()) return s;
  }
  Status s = c->WaitHealthy(-1, 20s);
  if (!s.ok()) return s;
  if (options.members > 1 && c->Leader(10000ms) < 0) {
    return UnavailableError("etcd fixture: the cluster elected no leader");
  }
  return c;
}

EtcdCluster::~EtcdCluster() {
  for (auto& m : members_) {
    if (m.pid > 0) {
      kill(m.pid, SIGKILL);
      waitpid(m.pid, nullptr, 0);
      m.pid = -1;
    }
  }
}

Status EtcdCluster::Spawn(int i, bool existing) {
  Member& m = members_[i];
  const bool tls = !options_.tls_cert_file.empty();
  const std::string client_url =
      std::string(tls ? "https" : "http") + "://" + m.host + ":" + std::to_string(m.client_port);
  const std::string peer_url = "http://" + m.host + ":" + std::to_string(m.peer_port);
  std::vector<std::string> args = {"etcd",
                                   "--name",
                                   m.name,
                                   "--data-dir",
                                   m.data_dir,
                                   "--listen-client-urls",
                                   client_url,
                                   "--advertise-client-urls",
                                   client_url,
                                   "--listen-peer-urls",
                                   peer_url,
                                   "--initial-advertise-peer-urls",
                                   peer_url,
                                   "--initial-cluster",
                                   initial_cluster_,
                                   "--initial-cluster-token",
                                   "leasehold-test",
                                   "--initial-cluster-state",
                                   existing ? "existing" : "new",
                                   "--logger",
                                   "zap",
                                   "--log-outputs",
                                   "stderr"};
  if (options_.fast_election) {
    for (const char* a : {"--heartbeat-interval", "10", "--election-timeout", "100"}) {
      args.emplace_back(a);
    }
  }
  if (tls) {
    args.insert(args.end(),
                {"--cert-file", options_.tls_cert_file, "--key-file", options_.tls_key_file});
    if (!options_.tls_client_ca_file.empty()) {
      args.insert(args.end(),
                  {"--client-cert-auth", "--trusted-ca-file", options_.tls_client_ca_file});
    }
  }
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int log_fd = open(m.log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (log_fd < 0) return InternalError("etcd fixture: cannot open " + m.log);
  const pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return InternalError("etcd fixture: fork failed");
  }
  if (pid == 0) {
    // A test process that dies takes its etcd with it.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    if (m.uid != 0 && (setgroups(0, nullptr) != 0 || setgid(m.uid) != 0 || setuid(m.uid) != 0)) {
      const char msg[] = "etcd fixture: cannot switch to the member's user\n";
      (void)!write(2, msg, sizeof msg - 1);
      _exit(126);
    }
    execvp("etcd", argv.data());
    const char msg[] = "exec etcd failed: is the etcd-server package installed?\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(127);
  }
  close(log_fd);
  m.pid = pid;
  return Status::Ok();
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

std::string EtcdCluster::endpoint(int i) const {
  return members_[i].host + ":" + std::to_string(members_[i].client_port);
}

void EtcdCluster::Kill(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return;
  kill(m.pid, SIGKILL);
  waitpid(m.pid, nullptr, 0);
  m.pid = -1;
}

void EtcdCluster::Pause(int i) {
  const pid_t pid = members_[i].pid;
  if (pid <= 0) return;
  kill(pid, SIGSTOP);
  // The stop lands asynchronously: wait until every thread of the member is
  // stopped, so that nothing sent from now on is answered.
  const std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
  for (int tries = 0; tries < 200; ++tries) {
    bool all_stopped = true;
    if (DIR* d = opendir(task_dir.c_str())) {
      while (const dirent* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream stat(task_dir + "/" + e->d_name + "/stat");
        std::string line;
        std::getline(stat, line);
        const auto paren = line.rfind(')');
        if (paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'T' &&
            line[paren + 2] != 't') {
          all_stopped = false;
        }
      }
      closedir(d);
    }
    if (all_stopped) return;
    std::this_thread::sleep_for(5ms);
  }
}

void EtcdCluster::Resume(int i) {
  if (members_[i].pid > 0) kill(members_[i].pid, SIGCONT);
}

Status EtcdCluster::Restart(int i, bool wait) {
  if (members_[i].pid > 0) return Status::Ok();
  Status s = Spawn(i, true);
  if (!s.ok() || !wait) return s;
  return WaitHealthy(i, 20s);
}

Status EtcdCluster::WaitHealthy(int i, std::chrono::milliseconds timeout) const {
  const auto until = SteadyClock::now() + timeout;
  for (int k = 0; k < size(); ++k) {
    if ((i >= 0 && k != i) || members_[k].pid <= 0) continue;
    const bool tls = !options_.tls_cert_file.empty();
    while (true) {
      int status = 0;
      if (waitpid(members_[k].pid, &status, WNOHANG) == members_[k].pid) {
        const_cast<Member&>(members_[k]).pid = -1;
        return UnavailableError("etcd fixture: member " + members_[k].name +
                                " exited; its log ends:\n" + LogTail(k));
      }
      if (tls) {
        // No plain-HTTP probe over TLS: wait for the "ready to serve" log line.
        if (LogTail(k).find("serving client traffic securely") != std::string::npos) break;
      } else {
        auto body =
            HttpRequest(members_[k].host, members_[k].client_port, "GET", "/health", "", 500ms);
        if (body && body->find("\"health\":\"true\"") != std::string::npos) break;
      }
      if (SteadyClock::now() > until) {
        return UnavailableError("etcd fixture: member " + members_[k].name +
                                " not healthy in time; its log ends:\n" + LogTail(k));
      }
      std::this_thread::sleep_for(20ms);
    }
  }
  return Status::Ok();
}

int EtcdCluster::Leader(std::chrono::milliseconds timeout) const {
  const auto until = SteadyClock::now() + timeout;
  do {
    for (int k = 0; k < size(); ++k) {
      if (members_[k].pid <= 0) continue;
      auto body = HttpRequest(members_[k].host, members_[k].client_port, "POST",
                              "/v3/maintenance/status", "{}", 300ms);
      if (!body) continue;
      const std::string leader = JsonString(*body, "leader");
      const std::string self = JsonString(*body, "member_id");
      if (!leader.empty() && leader != "0" && leader == self) return k;
    }
    std::this_thread::sleep_for(20ms);
  } while (SteadyClock::now() < until);
  return -1;
}

std::string EtcdCluster::LogTail(int i) const {
  std::ifstream in(members_[i].log);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string all = ss.str();
  return all.size() > 3000 ? all.substr(all.size() - 3000) : all;
}

bool Etcdctl(const std::string& endpoint, const std::vector<std::string>& args) {
  std::vector<std::string> all = {"etcdctl", "--endpoints", endpoint};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    const int null_fd = open("/dev/null", O_RDWR);
    if (null_fd >= 0) {
      dup2(null_fd, 0);
      dup2(null_fd, 1);
    }
    setenv("ETCDCTL_API", "3", 1);
    execvp("etcdctl", argv.data());
    _exit(127);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// ---------------------------------------------------------------------------

struct RawEtcd::Impl {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  void Deadline(grpc::ClientContext& ctx) {
    ctx.set_deadline(std::chrono::system_clock::now() + 5s);
  }
};

RawEtcd::RawEtcd(const std::string& endpoint) : impl_(std::make_unique<Impl>()) {
  impl_->channel = grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials());
  impl_->kv = etcdserverpb::KV::NewStub(impl_->channel);
  impl_->lease = etcdserverpb::Lease::NewStub(impl_->channel);
}

RawEtcd::~RawEtcd() = default;

int64_t RawEtcd::Grant(int64_t ttl_seconds) {
  grpc::ClientContext ctx;
  impl_->Deadline(ctx);
  etcdserverpb::LeaseGrantRequest req;
  req.set_ttl(ttl_seconds);
  etcdserverpb::LeaseGrantResponse resp;
  return impl_->lease->LeaseGrant(&ctx, req, &resp).ok() ? resp.id() : 0;
}

bool RawEtcd::Revoke(int64_t lease) {
  grpc::ClientContext ctx;
  impl_->Deadline(ctx);
  etcdserverpb::LeaseRevokeRequest req;
  req.set_id(lease);
  etcdserverpb::LeaseRevokeResponse resp;
  return impl_->lease->LeaseRevoke(&ctx, req, &resp).ok();
}

bool RawEtcd::Put(const std::string& key, const std::string& value, int64_t lease) {
  grpc::ClientContext ctx;
  impl_->Deadline(ctx);
  etcdserverpb::PutRequest req;
  req.set_key(key);
  req.set_value(value);
  req.set_lease(lease);
  etcdserverpb::PutResponse resp;
  return impl_->kv->Put(&ctx, req, &resp).ok();
}

bool RawEtcd::Delete(const std::string& key) {
  grpc::ClientContext ctx;
  impl_->Deadline(ctx);
  etcdserverpb::DeleteRangeRequest req;
  req.set_key(key);
  etcdserverpb::DeleteRangeResponse resp;
  return impl_->kv->DeleteRange(&ctx, req, &resp).ok();
}

std::optional<RawEtcd::Kv> RawEtcd::Get(const std::string& key) {
  grpc::ClientContext ctx;
  impl_->Deadline(ctx);
  etcdserverpb::RangeRequest req;
  req.set_key(key);
  etcdserverpb::RangeResponse resp;
  if (!impl_->kv->Range(&ctx, req, &resp).ok() || resp.kvs_size() == 0) return std::nullopt;
  return Kv{resp.kvs(0).value(), resp.kvs(0).create_revision(), resp.kvs(0).lease()};
}

std::optional<int64_t> RawEtcd::TimeToLive(int64_t lease) {
  grpc::ClientContext ctx;
  impl_->Deadline(ctx);
  etcdserverpb::LeaseTimeToLiveRequest req;
  req.set_id(lease);
  etcdserverpb::LeaseTimeToLiveResponse resp;
  if (!impl_->lease->LeaseTimeToLive(&ctx, req, &resp).ok()) return std::nullopt;
  return resp.ttl();
}

}  // namespace leasehold::etcd_test
