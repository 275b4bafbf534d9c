// leasehold: run a command under a lease, look at leases, measure a store.
// Argument parsing only; the commands live in their own files (cli.h).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <climits>
#include <iostream>

#include "cli.h"

namespace {

using leasehold::Duration;
namespace cli = leasehold::cli;

std::string SelfPath(const char* argv0) {
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) return std::string(buf, n);
  return argv0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"leasehold: distributed leases with fencing tokens"};
  app.set_version_flag("--version", "leasehold " LEASEHOLD_VERSION);
  app.require_subcommand(1);
  std::string store = cli::DefaultStoreUrl();
  const std::string store_help =
      "store URL: memory:, sqlite:///ABS/PATH.db, etcd://HOST:PORT[,...][/PREFIX], "
      "kubernetes:///NAMESPACE, postgresql://[USER@]HOST[:PORT]/DB[?...], "
      "redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB][?...], redis[s]-sentinel://HOSTS/MASTER "
      "(default: "
      "$LEASEHOLD_STORE, else the SQLite file under "
      "$XDG_STATE_HOME or ~/.local/state)";
  // On the tool and on every command, so it can go before or after the
  // command name and shows in each command's --help.
  app.add_option("--store", store, store_help)->envname("LEASEHOLD_STORE");
  auto add_store = [&](CLI::App* cmd) { cmd->add_option("--store", store, store_help); };

  // run
  cli::RunArgs run;
  std::string ttl = "15s", timeout, kill_after, log_format = "text";
  auto* run_cmd = app.add_subcommand("run", "run a command while holding a lease");
  run_cmd->add_option("name", run.name, "lease name")->required();
  run_cmd->add_option("--ttl", ttl, "lease TTL (default 15s)");
  run_cmd->add_option("--owner", run.owner, "owner identity (default: this host's name)");
  run_cmd->add_flag("--wait", run.wait, "wait for the lease instead of exiting 75");
  run_cmd->add_option("--timeout", timeout, "give up waiting after this long (exit 75)");
  run_cmd->add_option(
      "--kill-after", kill_after,
      "grace between SIGTERM and SIGKILL when the lease is being lost (default: a quarter of "
      "--ttl, at most 2s)");
  run_cmd->add_option("--metrics", run.metrics,
                      "serve /metrics (Prometheus) and /healthz on HOST:PORT while running");
  run_cmd
      ->add_option("--log-format", log_format,
                   "text: only errors, as lines (default); json: every step of the run as "
                   "JSON lines on stderr")
      ->check(CLI::IsMember({"text", "json"}));
  run_cmd->add_option("command", run.command, "command and arguments (after --)")->required();
  run_cmd->footer(
      "Exit codes: the command's own; 75 not acquired; 76 lease lost while the command ran; "
      "69 store unreachable or store error; 64 usage or bad URL.");

  // status
  cli::StatusArgs status;
  auto* status_cmd =
      app.add_subcommand("status", "who holds a lease, with which sequence, for how long");
  status_cmd->add_option("name", status.name, "lease name")->required();
  status_cmd->add_flag("--json", status.json, "one JSON object");

  // list
  cli::ListArgs list;
  auto* list_cmd = app.add_subcommand(
      "list",
      "every lease in the store (or whose name starts with PREFIX): holder, sequence, "
      "time left");
  list_cmd->add_option("prefix", list.prefix, "only names that start with this");
  list_cmd->add_flag("--json", list.json, "a JSON array of `status --json` objects");

  // watch
  cli::WatchArgs watch;
  auto* watch_cmd =
      app.add_subcommand("watch", "print a line per change of holder until interrupted");
  watch_cmd->add_option("name", watch.name, "lease name")->required();
  watch_cmd->add_flag("--json", watch.json, "JSON lines");
  watch_cmd->add_option("--max-events", watch.max_events, "stop after N lines")->group("");

  // break
  cli::BreakArgs brk;
  auto* break_cmd =
      app.add_subcommand("break",
                         "force a lease free; the next holder gets a higher sequence, so fenced "
                         "resources reject the broken holder");
  break_cmd->add_option("name", brk.name, "lease name")->required();
  break_cmd->add_flag("--yes", brk.yes, "confirm")->required();

  // bench
  cli::BenchArgs bench;
  auto* bench_cmd =
      app.add_subcommand("bench", "measure acquire+release cycles and hand-off on the store");
  bench_cmd->add_option("--ops", bench.ops, "cycles to measure (default 1000)")
      ->check(CLI::Range(1, 10'000'000));
  bench_cmd->add_flag("--json", bench.json, "one JSON object");

  // init
  auto* init_cmd = app.add_subcommand(
      "init", "create or migrate the store's schema (postgresql://; needs CREATE on the schema)");

  // elect
  cli::ElectArgs elect;
  std::string elect_ttl = "15s";
  auto* elect_cmd = app.add_subcommand(
      "elect",
      "leader-election sidecar: campaign for a lease, answer GET /leader, /healthz, "
      "/metrics over HTTP; SIGTERM releases at once");
  elect_cmd->add_option("name", elect.name, "lease name")->required();
  elect_cmd->add_option("--listen", elect.listen, "HTTP address, HOST:PORT (e.g. 127.0.0.1:8080)")
      ->required();
  elect_cmd->add_option("--ttl", elect_ttl, "lease TTL (default 15s)");
  elect_cmd->add_option("--owner", elect.owner, "owner identity (default: this host's name)");
  elect_cmd->add_option("--on-elected", elect.on_elected,
                        "shell command run when this instance starts leading");
  elect_cmd->add_option("--on-lost", elect.on_lost,
                        "shell command run when this instance stops leading");

  // demo
  cli::DemoArgs demo;
  auto* demo_cmd = app.add_subcommand(
      "demo", "three `run` contenders for one lease: a crash, a failover, a hand-off");
  for (CLI::App* cmd : {run_cmd, status_cmd, list_cmd, watch_cmd, break_cmd, bench_cmd, init_cmd,
                        elect_cmd, demo_cmd}) {
    add_store(cmd);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "leasehold: " << e.what() << "\n";
    const CLI::App* sub = app.get_subcommands().empty() ? &app : app.get_subcommands().front();
    std::cerr << sub->help("", CLI::AppFormatMode::Normal);
    return cli::kExitUsage;
  }

  auto duration = [&](const std::string& flag, const std::string& text) -> std::optional<Duration> {
    auto d = cli::ParseDuration(text);
    if (!d.ok()) {
      std::cerr << "leasehold: " << flag << ": " << d.status().message() << "\n";
      std::cerr << run_cmd->help("", CLI::AppFormatMode::Normal);
      return std::nullopt;
    }
    return *d;
  };
  if (*run_cmd) {
    run.store_url = store;
    run.json_log = log_format == "json";
    auto t = duration("--ttl", ttl);
    if (!t) return cli::kExitUsage;
    run.ttl = *t;
    if (!kill_after.empty()) {
      auto k = duration("--kill-after", kill_after);
      if (!k) return cli::kExitUsage;
      run.kill_after = *k;
    }
    if (!timeout.empty()) {
      auto to = duration("--timeout", timeout);
      if (!to) return cli::kExitUsage;
      run.timeout = *to;
    }
    return cli::Run(run, std::cerr);
  }
  if (*elect_cmd) {
    elect.store_url = store;
    auto t = duration("--ttl", elect_ttl);
    if (!t) return cli::kExitUsage;
    elect.ttl = *t;
    return cli::Elect(elect, std::cerr);
  }
  if (*init_cmd) {
    auto spec = cli::ParseStoreUrl(store);
    leasehold::Status s = spec.ok() ? cli::InitSchema(*spec, std::cout) : spec.status();
    if (s.ok()) return cli::kExitOk;
    std::cerr << "leasehold: init: " << s.message() << "\n";
    return cli::ExitCodeFor(s);
  }
  if (*status_cmd) {
    status.store_url = store;
    return cli::StatusCommand(status, std::cout, std::cerr);
  }
  if (*list_cmd) {
    list.store_url = store;
    return cli::ListCommand(list, std::cout, std::cerr);
  }
  if (*watch_cmd) {
    watch.store_url = store;
    return cli::WatchCommand(watch, std::cout, std::cerr);
  }
  if (*break_cmd) {
    brk.store_url = store;
    return cli::BreakCommand(brk, std::cout, std::cerr);
  }
  if (*bench_cmd) {
    bench.store_url = store;
    return cli::BenchCommand(bench, std::cout, std::cerr);
  }
  demo.store_url = store;
  demo.self = SelfPath(argv[0]);
  return cli::DemoCommand(demo, std::cout, std::cerr);
}
