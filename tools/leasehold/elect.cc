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
#include "http_face.h"
#include "leasehold/leader_elector.h"
#include "leasehold/lease.h"

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

int Elect(const ElectArgs& args, std::ostream& err) {
  if (auto listen = ParseListenAddress(args.listen); !listen.ok()) {
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
  HttpFace face;  // Stop()ped before what its routes use goes
  auto created = Lease::Create(store, {.name = args.name,
                                       .owner = args.owner.empty() ? HostName() : args.owner,
                                       .ttl = args.ttl,
                                       .observer = face.observer()});
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

  face.server().Get("/leader", [&](const httplib::Request&, httplib::Response& res) {
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
  if (Status s = face.Listen("--listen", args.listen, [&] { return (*elector)->CheckHealth(); });
      !s.ok()) {
    err << "leasehold elect: " << s.message() << "\n";
    close(sfd);
    return kExitUnavailable;
  }
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
  face.Stop();
  close(sfd);
  return kExitOk;
}

}  // namespace leasehold::cli
