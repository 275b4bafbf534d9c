// The leasehold command-line tool: each command is a function over parsed
// arguments and output streams, so tests call them directly; main.cc only
// parses arguments (CLI11) and maps results to exit codes.
#ifndef LEASEHOLD_TOOLS_LEASEHOLD_CLI_H_
#define LEASEHOLD_TOOLS_LEASEHOLD_CLI_H_

#include <chrono>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "leasehold/runtime.h"
#include "leasehold/status.h"
#include "leasehold/store.h"

namespace leasehold::cli {

// Exit codes (sysexits.h where one fits).
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 64;        // bad arguments or store URL
inline constexpr int kExitUnavailable = 69;  // store unreachable or store error
inline constexpr int kExitNotAcquired = 75;  // held by another (no --wait) or --timeout passed
inline constexpr int kExitLost = 76;         // lease lost while the command ran

// "500ms", "15s", "2m", "1h", "250us", "1.5s": a positive number and a unit.
Result<Duration> ParseDuration(std::string_view text);

// A parsed --store URL.
struct StoreSpec {
  enum class Kind { kMemory, kSqlite, kEtcd, kKubernetes, kPostgres, kRedis };
  Kind kind = Kind::kMemory;
  std::string url;   // as given, for messages (never contains secrets)
  std::string path;  // sqlite: absolute database path
  // etcd: endpoints "host:port", prefix, TLS and auth query options;
  // kubernetes: host:port (empty for in-cluster/kubeconfig), namespace, files.
  std::vector<std::string> endpoints;
  std::string prefix;
  bool tls = false;
  std::string ns;
  std::string ca_file, cert_file, key_file, token_file, username, password_file;
  // kubernetes:///NS?kubeconfig=PATH&context=NAME&insecure=1
  std::string kubeconfig, context;
  bool insecure = false;
  // postgresql://: the connection URI for libpq (leasehold's own parameters
  // removed; it may hold a password: never print it), schema, table, listen.
  std::string conninfo;
  std::string schema = "public";
  std::string table = "leasehold_leases";
  bool listen = true;
  // redis://, rediss://, redis-sentinel://: the URL as given (it may hold a
  // password: never print it), for ParseRedisUrl when the store is opened.
  std::string redis_url;
};

// Parses memory:, sqlite:///ABS/PATH.db, etcd://H:P[,H:P...][/PREFIX][?...],
// etcds://..., kubernetes:///NAMESPACE[?kubeconfig=PATH&context=NAME&insecure=1],
// kubernetes://HOST:PORT/NAMESPACE?token-file=PATH&ca-file=PATH,
// postgresql://... or postgres://... (libpq's URI; leasehold's own query
// parameters leasehold-schema, leasehold-table, leasehold-listen=0|1 are taken
// out, the rest goes to libpq as it is), redis://, rediss:// and
// redis-sentinel:// (leasehold/backends/redis.h: ParseRedisUrl)
// kInvalidArgument naming what is wrong.
Result<StoreSpec> ParseStoreUrl(std::string_view url);

// $LEASEHOLD_STORE if set, else
// sqlite://${XDG_STATE_HOME:-$HOME/.local/state}/leasehold/leases.db.
std::string DefaultStoreUrl();

// Opens the store (creating the SQLite file's directory on first use).
// kUnimplemented for backends not built in or not yet written.
Result<std::shared_ptr<Store>> OpenStore(const StoreSpec& spec, std::shared_ptr<Runtime> runtime);

// `leasehold init`: creates or migrates a postgresql:// store's schema and
// prints its version; kInvalidArgument for other stores.
Status InitSchema(const StoreSpec& spec, std::ostream& out);

// Exit code for a store error: kExitUsage for bad input, else kExitUnavailable.
int ExitCodeFor(const Status& status);

struct RunArgs {
  std::string store_url{};
  std::string name{};
  Duration ttl = std::chrono::seconds(15);
  std::string owner{};  // default: hostname
  bool wait = false;
  std::optional<Duration> timeout{};
  // Grace between SIGTERM and SIGKILL; unset: DefaultKillAfter(ttl).
  std::optional<Duration> kill_after{};
  // HOST:PORT: serve /metrics and /healthz (http_face.h) while running.
  // /healthz is 200 while the lease is held and its renewals keep up
  // (CheckRenewing), 503 before it is acquired and once it is at risk.
  std::string metrics{};
  // Log every step of the lifecycle as JSON lines on stderr, not only errors.
  bool json_log = false;
  std::vector<std::string> command{};
};
// The grace `run` gives a command when none is asked for: a quarter of the
// TTL, at most 2 s -- always less than half the TTL, which Run requires.
Duration DefaultKillAfter(Duration ttl);
// Runs the command under the lease; returns the process exit code.
int Run(const RunArgs& args, std::ostream& err);

struct StatusArgs {
  std::string store_url{};
  std::string name{};
  bool json = false;
};
int StatusCommand(const StatusArgs& args, std::ostream& out, std::ostream& err);

// `leasehold list [PREFIX]`: every lease whose name starts with PREFIX, with
// holder, sequence and time left; --json: a JSON array of `status --json`
// objects. Exit 0 also when there is none.
struct ListArgs {
  std::string store_url{};
  std::string prefix{};
  bool json = false;
};
int ListCommand(const ListArgs& args, std::ostream& out, std::ostream& err);

struct WatchArgs {
  std::string store_url{};
  std::string name{};
  bool json = false;
  // Stops after this many lines (0 = until interrupted); for tests.
  int max_events = 0;
};
int WatchCommand(const WatchArgs& args, std::ostream& out, std::ostream& err);

struct BreakArgs {
  std::string store_url{};
  std::string name{};
  bool yes = false;
};
int BreakCommand(const BreakArgs& args, std::ostream& out, std::ostream& err);

struct BenchArgs {
  std::string store_url{};
  int ops = 1000;
  bool json = false;
};
int BenchCommand(const BenchArgs& args, std::ostream& out, std::ostream& err);

struct ElectArgs {
  std::string store_url{};
  std::string name{};
  std::string listen{};  // HOST:PORT or [IPv6]:PORT for the HTTP face
  Duration ttl = std::chrono::seconds(15);
  std::string owner{};                  // default: hostname
  std::string on_elected{}, on_lost{};  // shell commands (sh -c)
};
// `leasehold elect`: the leader-election sidecar (elect.cc); runs until
// SIGTERM/SIGINT/SIGHUP, then releases and returns 0.
int Elect(const ElectArgs& args, std::ostream& err);
// "HOST:PORT" or "[IPv6]:PORT" -> host and port; kInvalidArgument naming
// `flag` and what is wrong (http_face.cc).
Result<std::pair<std::string, int>> ParseListenAddress(std::string_view text,
                                                       std::string_view flag = "--listen");

struct DemoArgs {
  std::string store_url{};
  std::string self{};  // path of this executable, to start `run` contenders
};
int DemoCommand(const DemoArgs& args, std::ostream& out, std::ostream& err);

// The runtime of one command. Declare it before the command's stores and
// leases so that it goes last: its destructor hands the runtime to ShutDown(),
// which joins its threads once the tasks that completed the command's last
// operations have let go -- no runtime thread is left running when leasehold
// returns from main().
class CommandRuntime {
 public:
  CommandRuntime() : runtime_(Runtime::Create()) {}
  ~CommandRuntime() { (void)ShutDown(std::move(runtime_)); }
  CommandRuntime(const CommandRuntime&) = delete;
  CommandRuntime& operator=(const CommandRuntime&) = delete;

  const std::shared_ptr<Runtime>& get() const noexcept { return runtime_; }

 private:
  std::shared_ptr<Runtime> runtime_;
};

// Helpers shared by status, watch and break (defined in status.cc).
namespace internal {
// Parses the URL, opens the store on `runtime` and checks that it can hold
// `name`; on failure reports to `err`, sets `*exit_code` and returns null.
std::shared_ptr<Store> OpenOrReport(const std::string& url, const std::string& name,
                                    const std::shared_ptr<Runtime>& runtime, std::ostream& err,
                                    int* exit_code);
// The same, for commands that name no lease.
std::shared_ptr<Store> OpenStoreOrReport(const std::string& url,
                                         const std::shared_ptr<Runtime>& runtime, std::ostream& err,
                                         int* exit_code);
// The record, or nullopt when the store has none, read within `timeout`.
Result<std::optional<LeaseRecord>> InspectNow(Store& store, const std::string& name,
                                              Duration timeout = std::chrono::seconds(10));
// This host's name ("localhost" if it has none): the default owner.
std::string HostName();
bool IsHeld(const std::optional<LeaseRecord>& record);
// The `status --json` object (keys: name, held, holder, sequence, token,
// expires_in_ms) and the human-readable line.
std::string RecordJson(const std::string& name, const std::optional<LeaseRecord>& record);
// For a terminal: `text` with control bytes (escape sequences, newlines) shown
// as \xNN. Holders, names and tokens come from records anyone may have written.
std::string Printable(std::string_view text);
// `j` as compact JSON text; bytes that are not UTF-8 (a hostile record's)
// become U+FFFD instead of throwing.
std::string JsonText(const nlohmann::json& j);
std::string RecordLine(const std::string& name, const std::optional<LeaseRecord>& record,
                       WallTime now);
// "2024-05-01T12:00:00.123Z" (UTC); "-" for an unset time.
std::string FormatWallTime(WallTime t);
}  // namespace internal

}  // namespace leasehold::cli

#endif  // LEASEHOLD_TOOLS_LEASEHOLD_CLI_H_
