// `leasehold elect`: a leader-election sidecar. It campaigns for a lease on
// any store (LeaderElector), holds it while it runs, and answers over HTTP:
//
//   GET /leader   {name, holder, is_leader, sequence, token, expires_in_ms}.
//                 The leader answers from its own tenure (no IO). A standby
//                 reads the store on each request (bounded by 2 s), so it
//                 reports the store's current holder, never one it remembers;
//                 a record naming this instance's own ended tenure is reported
//                 as no holder. 503 with {error} when the store cannot be read.
//   GET /healthz  200 "ok"; 503 when this instance leads but its renewals do
//                 not keep up (LeaderElector::CheckHealth).
//   GET /metrics  Prometheus text: the lease's metrics (observer.h), with
//                 leader_election_master_status{name}.
//
// Hooks: --on-elected / --on-lost run a shell command (sh -c) with
// LEASEHOLD_NAME, LEASEHOLD_OWNER, LEASEHOLD_SEQUENCE and LEASEHOLD_TOKEN in
// its environment; they are not waited for (reaped when they exit).
// SIGTERM / SIGINT / SIGHUP: stop campaigning, release at once (the next
// standby's watch wakes it: a hand-off of about one round trip), exit 0.
#include <httplib.h>
#include <signal.h>
#include <spawn.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli.h"
#include "leasehold/leader_elector.h"
#include "leasehold/lease.h"
#ifdef LEASEHOLD_HAVE_PROMETHEUS
#include <prometheus/text_serializer.h>

#include "leasehold/observers/prometheus.h"
#endif

extern char** environ;

namespace leasehold::cli {

using namespace internal;

namespace {

constexpr Duration kStandbyReadTimeout = std::chrono::seconds(2);

int64_t Ms(Duration d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); }

// Starts `sh -c command` with the tenure in its environment; not waited for.
void RunHook(const std::string& command, const std::string& what,
             const std::vector<std::string>& vars, std::ostream& err) {
  if (command.empty()) return;
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) env_strings.emplace_back(*e);
  env_strings.insert(env_strings.end(), vars.begin(), vars.end());
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string sh = "/bin/sh", dash_c = "-c", cmd = command;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  pid_t pid = 0;
  // The hook must not inherit our blocked signal mask.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  const int rc = posix_spawn(&pid, "/bin/sh", nullptr, &attr, argv, envp.data());
  posix_spawnattr_destroy(&attr);
  if (rc != 0) err << "leasehold elect: cannot start the " << what << " hook: " << rc << "\n";
}

}  // namespace

Result<std::pair<std::string, int>> ParseListenAddress(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError("--listen \"" + std::string(text) + "\": " + why +
                                " (HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)");
  };
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("no ']' after the IPv6 address");
    host = text.substr(1, close - 1);
    if (text.substr(close + 1, 1) != ":") return bad("no ':PORT' after the address");
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("no ':PORT'");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad("an IPv6 address needs [brackets]");
  }
  if (host.empty()) return bad("no host");
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string_view::npos) {
    return bad("the port is not a number");
  }
  const int p = std::stoi(std::string(port));
  if (p < 1 || p > 65535) return bad("the port is not in 1..65535");
  return std::make_pair(std::string(host), p);
}

int Elect(const ElectArgs& args, std::ostream& err) {
  auto listen = ParseListenAddress(args.listen);
  if (!listen.ok()) {
    err << "leasehold elect: " << listen.status().message() << "\n";
    return kExitUsage;
  }
  if (args.ttl <= Duration::zero()) {
    err << "leasehold elect: --ttl must be positive\n";
    return kExitUsage;
  }
  // Signals are read from a signalfd; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  const int sfd = signalfd(-1, &signals, SFD_CLOEXEC);
  if (sfd < 0) {
    err << "leasehold elect: signalfd failed\n";
    return kExitUnavailable;
  }

  int code = kExitOk;
  CommandRuntime runtime;
  std::shared_ptr<Store> store = OpenOrReport(args.store_url, args.name, runtime.get(), err, &code);
  if (!store) {
    close(sfd);
    return code;
  }
#ifdef LEASEHOLD_HAVE_PROMETHEUS
  auto registry = std::make_shared<prometheus::Registry>();
  auto observer = std::make_shared<PrometheusObserver>(registry);
#else
  std::shared_ptr<LeaseObserver> observer;
#endif
  auto created = Lease::Create(store, {.name = args.name,
                                       .owner = args.owner.empty() ? HostName() : args.owner,
                                       .ttl = args.ttl,
                                       .observer = observer});
  if (!created.ok()) {
    err << "leasehold elect: " << created.status().message() << "\n";
    close(sfd);
    return kExitUsage;
  }
  std::shared_ptr<Lease> lease = std::move(*created);
  const std::string identity = lease->identity();

  std::mutex err_mu;  // the callbacks and the HTTP threads write to `err`
  auto log = [&](const std::string& line) {
    std::lock_guard lock(err_mu);
    err << "leasehold elect: " << line << "\n" << std::flush;
  };
  auto vars = [&](const FencingToken& t) {
    return std::vector<std::string>{"LEASEHOLD_NAME=" + args.name, "LEASEHOLD_OWNER=" + identity,
                                    "LEASEHOLD_SEQUENCE=" + std::to_string(t.sequence),
                                    "LEASEHOLD_TOKEN=" + t.value};
  };
  std::mutex tenure_mu;
  FencingToken last_token;
  LeaderElectorOptions options;
  options.retry_period = std::min<Duration>(std::chrono::seconds(2), args.ttl / 3);
  options.callbacks.on_started_leading = [&](const FencingToken& t, std::stop_token) {
    {
      std::lock_guard lock(tenure_mu);
      last_token = t;
    }
    log("leading \"" + args.name + "\" as " + identity + " (sequence " +
        std::to_string(t.sequence) + ")");
    std::lock_guard lock(err_mu);
    RunHook(args.on_elected, "--on-elected", vars(t), err);
  };
  options.callbacks.on_stopped_leading = [&] {
    FencingToken t;
    {
      std::lock_guard lock(tenure_mu);
      t = last_token;
    }
    log("no longer leading \"" + args.name + "\" (sequence " + std::to_string(t.sequence) + ")");
    std::lock_guard lock(err_mu);
    RunHook(args.on_lost, "--on-lost", vars(t), err);
  };
  auto elector = LeaderElector::Create(lease, options);
  if (!elector.ok()) {
    err << "leasehold elect: " << elector.status().message() << "\n";
    close(sfd);
    return kExitUsage;
  }

  httplib::Server server;
  server.Get("/leader", [&](const httplib::Request&, httplib::Response& res) {
    nlohmann::json j;
    j["name"] = args.name;
    const std::optional<FencingToken> token = lease->token();
    const std::optional<TimePoint> deadline = lease->safe_deadline();
    if (lease->CheckAlive() && token && deadline) {
      j["holder"] = identity;
      j["is_leader"] = true;
      j["sequence"] = token->sequence;
      j["token"] = token->value;
      j["expires_in_ms"] = std::max<int64_t>(0, Ms(*deadline - store->runtime()->clock().Now()));
      res.set_content(JsonText(j), "application/json");
      return;
    }
    auto record = InspectNow(*store, args.name, kStandbyReadTimeout);
    if (!record.ok()) {
      res.status = 503;
      res.set_content(
          JsonText(nlohmann::json{{"name", args.name}, {"error", record.status().message()}}),
          "application/json");
      return;
    }
    // Our own ended tenure, still in the store: nobody leads.
    const bool held = IsHeld(*record) && (*record)->holder != identity &&
                      (!(*record)->remaining || *(*record)->remaining > Duration::zero());
    j["holder"] = held ? nlohmann::json((*record)->holder) : nlohmann::json(nullptr);
    j["is_leader"] = false;
    // The holder's tenure; null when nobody holds (a store may have deleted
    // an expired record, and with it the last sequence: etcd does).
    j["sequence"] = held ? nlohmann::json((*record)->token.sequence) : nlohmann::json(nullptr);
    j["token"] = held ? nlohmann::json((*record)->token.value) : nlohmann::json(nullptr);
    j["expires_in_ms"] = held && (*record)->remaining ? nlohmann::json(Ms(*(*record)->remaining))
                                                      : nlohmann::json(nullptr);
    res.set_content(JsonText(j), "application/json");
  });
  server.Get("/healthz", [&](const httplib::Request&, httplib::Response& res) {
    const Status health = (*elector)->CheckHealth();
    if (health.ok()) {
      res.set_content("ok\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content(std::string(health.message()) + "\n", "text/plain");
    }
  });
  server.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
#ifdef LEASEHOLD_HAVE_PROMETHEUS
    res.set_content(prometheus::TextSerializer().Serialize(registry->Collect()),
                    "text/plain; version=0.0.4");
#else
    res.status = 501;
    res.set_content("leasehold was built without the Prometheus adapter\n", "text/plain");
#endif
  });
  // httplib's default sets SO_REUSEPORT too, which lets a second sidecar bind
  // the same port and take half its requests: reuse TIME_WAIT ports only.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  if (!server.bind_to_port(listen->first, listen->second)) {
    err << "leasehold elect: cannot listen on " << args.listen
        << " (address in use, or not an address of this host)\n";
    close(sfd);
    return kExitUnavailable;
  }
  std::thread http([&server] { server.listen_after_bind(); });
  log("serving http://" + args.listen + "/leader for \"" + args.name + "\" on " +
      store->Describe() + " as " + identity);
  (*elector)->Start();

  for (;;) {
    signalfd_siginfo info{};
    if (read(sfd, &info, sizeof info) != static_cast<ssize_t>(sizeof info)) continue;
    if (info.ssi_signo == SIGCHLD) {
      while (waitpid(-1, nullptr, WNOHANG) > 0) {
      }
      continue;
    }
    log("signal " + std::to_string(info.ssi_signo) + ": releasing \"" + args.name + "\"");
    break;
  }
  (*elector)->Shutdown();  // releases when leading: the standby's watch wakes it
  server.stop();
  http.join();
  close(sfd);
  return kExitOk;
}

}  // namespace leasehold::cli
