// --store URLs and --ttl-style durations.
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "cli.h"
#include "leasehold/backends/memory.h"
#include "leasehold/backends/sqlite.h"
#include "leasehold/detail/io.h"
#ifdef LEASEHOLD_CLI_KUBERNETES
#include "leasehold/backends/kubernetes.h"
#endif
#include "leasehold/lease.h"
#ifdef LEASEHOLD_HAVE_ETCD
#include "leasehold/backends/etcd.h"
#endif
#ifdef LEASEHOLD_HAVE_REDIS
#include "leasehold/backends/redis.h"
#endif
#ifdef LEASEHOLD_HAVE_POSTGRESQL
#include "leasehold/backends/postgresql.h"
#endif

namespace leasehold::cli {
namespace {

Status Bad(std::string_view url, const std::string& why) {
  return InvalidArgumentError("store URL \"" + std::string(url) + "\": " + why);
}

// "host:port" or "[v6]:port" with a port in 1..65535 (as the backends check).
Status CheckEndpoint(std::string_view url, std::string_view ep) {
  if (Status s = detail::CheckEndpoint(ep); !s.ok()) return Bad(url, s.message());
  return Status::Ok();
}

Result<std::string> PercentDecode(std::string_view url, std::string_view in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out += in[i];
      continue;
    }
    if (i + 2 >= in.size() || !std::isxdigit(static_cast<unsigned char>(in[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
      return Bad(url, "malformed percent-escape in \"" + std::string(in) + "\"");
    }
    const char hex[3] = {in[i + 1], in[i + 2], 0};
    const char c = static_cast<char>(std::strtol(hex, nullptr, 16));
    if (c == '\0') return Bad(url, "a NUL byte (%00) is not allowed");
    out += c;
    i += 2;
  }
  return out;
}

// Splits "a=b&c=d" into the spec's fields; unknown keys are errors.
Status ParseQuery(std::string_view url, std::string_view query, StoreSpec& spec,
                  const std::vector<std::string_view>& allowed) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    if (eq == std::string_view::npos || eq == 0) {
      return Bad(url, "query parameter \"" + std::string(pair) + "\" needs KEY=VALUE");
    }
    const std::string_view key = pair.substr(0, eq);
    auto value = PercentDecode(url, pair.substr(eq + 1));
    if (!value.ok()) return value.status();
    if (value->empty()) return Bad(url, "query parameter \"" + std::string(key) + "\" is empty");
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string list;
      for (auto a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      return Bad(url, "unknown query parameter \"" + std::string(key) + "\" (known: " + list + ")");
    }
    if (key == "insecure") {
      if (*value != "1" && *value != "true" && *value != "0" && *value != "false") {
        return Bad(url, "insecure must be 1/true or 0/false");
      }
      spec.insecure = *value == "1" || *value == "true";
      continue;
    }
    std::string* field = key == "kubeconfig"   ? &spec.kubeconfig
                         : key == "context"    ? &spec.context
                         : key == "ca-file"    ? &spec.ca_file
                         : key == "cert-file"  ? &spec.cert_file
                         : key == "key-file"   ? &spec.key_file
                         : key == "token-file" ? &spec.token_file
                         : key == "username"   ? &spec.username
                                               : &spec.password_file;
    if (!field->empty())
      return Bad(url, "query parameter \"" + std::string(key) + "\" given twice");
    *field = std::move(*value);
  }
  return Status::Ok();
}

// The URL as it may be shown: a password in the user information or in a
// password= parameter replaced by ***.
std::string Redacted(std::string_view url) {
  std::string out(url);
  const size_t begin = out.find("://") + 3;
  const size_t at = out.find('@', begin);
  const size_t end = out.find_first_of("/?", begin);
  if (at != std::string::npos && (end == std::string::npos || at < end)) {
    const size_t colon = out.find(':', begin);
    if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
  }
  for (size_t p = out.find("password="); p != std::string::npos; p = out.find("password=", p + 1)) {
    const size_t v = p + 9;
    const size_t e = out.find('&', v);
    out.replace(v, (e == std::string::npos ? out.size() : e) - v, "***");
  }
  return out;
}

// postgresql:// and postgres:// URLs: libpq parses the URI; leasehold takes
// out its own parameters.
Result<StoreSpec> ParsePostgresUrl(std::string_view url, std::string_view query) {
  StoreSpec spec;
  spec.kind = StoreSpec::Kind::kPostgres;
  spec.url = Redacted(url);
  const std::string shown = spec.url;
  std::string kept;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    const std::string_view key = pair.substr(0, eq);
    if (key.rfind("leasehold-", 0) != 0) {
      if (!pair.empty()) kept += (kept.empty() ? "?" : "&") + std::string(pair);
      continue;
    }
    if (eq == std::string_view::npos) return Bad(shown, std::string(key) + " needs a value");
    auto value = PercentDecode(shown, pair.substr(eq + 1));
    if (!value.ok()) return value.status();
    if (value->empty()) return Bad(shown, std::string(key) + " is empty");
    if (key == "leasehold-schema") {
      spec.schema = *value;
    } else if (key == "leasehold-table") {
      spec.table = *value;
    } else if (key == "leasehold-listen") {
      if (*value != "0" && *value != "1") return Bad(shown, "leasehold-listen must be 0 or 1");
      spec.listen = *value == "1";
    } else {
      return Bad(shown, "unknown parameter \"" + std::string(key) +
                            "\" (known: leasehold-schema, leasehold-table, leasehold-listen)");
    }
  }
  const size_t q = url.find('?');
  spec.conninfo = std::string(url.substr(0, q)) + kept;
  return spec;
}

Status MakeDirs(const std::string& dir) {
  std::string path;
  for (size_t i = 0; i <= dir.size(); ++i) {
    if (i == dir.size() || (dir[i] == '/' && i > 0)) {
      path = dir.substr(0, i);
      if (mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
        return UnavailableError("cannot create directory " + path + ": " + std::strerror(errno));
      }
    }
  }
  return Status::Ok();
}

}  // namespace

Result<Duration> ParseDuration(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError("duration \"" + std::string(text) + "\": " + why +
                                " (examples: 500ms, 15s, 2m)");
  };
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  const std::string number(text.substr(0, i));
  const std::string_view unit = text.substr(i);
  if (number.empty() || number == "." || std::count(number.begin(), number.end(), '.') > 1) {
    return bad("needs a number");
  }
  if (unit.empty()) return bad("needs a unit");
  double scale;  // nanoseconds per unit
  if (unit == "ns")
    scale = 1;
  else if (unit == "us")
    scale = 1e3;
  else if (unit == "ms")
    scale = 1e6;
  else if (unit == "s")
    scale = 1e9;
  else if (unit == "m")
    scale = 60e9;
  else if (unit == "h")
    scale = 3600e9;
  else
    return bad("unknown unit \"" + std::string(unit) + "\" (ns, us, ms, s, m, h)");
  const double value = std::strtod(number.c_str(), nullptr) * scale;
  if (!std::isfinite(value) || value >= 1e18) return bad("is too long");
  if (value < 1) return bad("must be > 0");
  return Duration(static_cast<int64_t>(value));
}

Result<StoreSpec> ParseStoreUrl(std::string_view url) {
  StoreSpec spec;
  spec.url = std::string(url);
  if (url.find('\0') != std::string_view::npos) return Bad("(binary)", "contains a NUL byte");
  if (url == "memory:" || url == "memory://") {
    spec.kind = StoreSpec::Kind::kMemory;
    return spec;
  }
  const size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) {
    return Bad(url,
               "expected memory:, sqlite:///PATH, etcd://HOST:PORT, kubernetes:///NAMESPACE, "
               "postgresql://... or redis://...");
  }
  const std::string_view scheme = url.substr(0, scheme_end);
  std::string_view rest = url.substr(scheme_end + 3);
  std::string_view query;
  if (const size_t q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (scheme == "postgresql" || scheme == "postgres") return ParsePostgresUrl(url, query);
  if (scheme == "redis" || scheme == "rediss" || scheme == "redis-sentinel" ||
      scheme == "rediss-sentinel") {
    spec.kind = StoreSpec::Kind::kRedis;
    spec.url = Redacted(url);
#ifdef LEASEHOLD_HAVE_REDIS
    // Checked now, so that a bad URL is a usage error before anything runs.
    if (auto parsed = ParseRedisUrl(std::string(url)); !parsed.ok()) {
      return Bad(spec.url, std::string(parsed.status().message()));
    }
#endif
    spec.redis_url = std::string(url);
    return spec;
  }
  if (rest.find('#') != std::string_view::npos) return Bad(url, "fragments (#) are not allowed");

  if (scheme == "sqlite") {
    if (!query.empty()) return Bad(url, "sqlite URLs take no query parameters");
    if (rest.empty() || rest.front() != '/') {
      return Bad(url, "the database path must be absolute: sqlite:///abs/path.db");
    }
    auto path = PercentDecode(url, rest);
    if (!path.ok()) return path.status();
    if (path->back() == '/') return Bad(url, "the path names a directory, not a database file");
    spec.kind = StoreSpec::Kind::kSqlite;
    spec.path = std::move(*path);
    return spec;
  }
  if (scheme == "etcd" || scheme == "etcds") {
    spec.kind = StoreSpec::Kind::kEtcd;
    spec.tls = scheme == "etcds";
    const size_t slash = rest.find('/');
    const std::string_view hosts = rest.substr(0, slash);
    if (slash != std::string_view::npos) spec.prefix = std::string(rest.substr(slash + 1));
    if (hosts.empty()) return Bad(url, "needs at least one HOST:PORT endpoint");
    std::string_view list = hosts;
    while (true) {
      const size_t comma = list.find(',');
      const std::string_view ep = list.substr(0, comma);
      if (Status s = CheckEndpoint(url, ep); !s.ok()) return s;
      spec.endpoints.emplace_back(ep);
      if (comma == std::string_view::npos) break;
      list = list.substr(comma + 1);
    }
    if (Status s = ParseQuery(url, query, spec,
                              {"ca-file", "cert-file", "key-file", "username", "password-file"});
        !s.ok()) {
      return s;
    }
    if (!spec.tls && (!spec.ca_file.empty() || !spec.cert_file.empty() || !spec.key_file.empty())) {
      return Bad(url, "TLS files need the etcds:// scheme");
    }
    if (spec.cert_file.empty() != spec.key_file.empty()) {
      return Bad(url, "cert-file and key-file go together");
    }
    // The password comes from password-file or, without one, from the
    // environment (LEASEHOLD_ETCD_PASSWORD) when the store is opened: never
    // from the URL.
    if (spec.username.empty() && !spec.password_file.empty()) {
      return Bad(url, "password-file needs a username");
    }
    return spec;
  }
  if (scheme == "kubernetes") {
    spec.kind = StoreSpec::Kind::kKubernetes;
    spec.tls = true;
    const size_t slash = rest.find('/');
    if (slash == std::string_view::npos)
      return Bad(url, "needs a namespace: kubernetes:///NAMESPACE");
    const std::string_view host = rest.substr(0, slash);
    spec.ns = std::string(rest.substr(slash + 1));
    if (!detail::IsDnsLabel(spec.ns)) {
      return Bad(url,
                 "namespace \"" + spec.ns + "\" is not a valid Kubernetes namespace (a DNS label)");
    }
    if (host.empty()) {
      // Credentials from a kubeconfig or the pod's service account.
      if (Status s = ParseQuery(url, query, spec, {"kubeconfig", "context", "insecure"}); !s.ok()) {
        return s;
      }
      return spec;
    }
    if (Status s = CheckEndpoint(url, host); !s.ok()) return s;
    spec.endpoints.emplace_back(host);
    if (Status s = ParseQuery(url, query, spec, {"token-file", "ca-file"}); !s.ok()) return s;
    if (spec.token_file.empty() || spec.ca_file.empty()) {
      return Bad(url, "an explicit API server needs both token-file and ca-file");
    }
    return spec;
  }
  return Bad(url, "unknown scheme \"" + std::string(scheme) + "\"");
}

std::string DefaultStoreUrl() {
  if (const char* env = std::getenv("LEASEHOLD_STORE"); env && *env) return env;
  std::string state;
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg && *xdg == '/') {
    state = xdg;
  } else if (const char* home = std::getenv("HOME"); home && *home == '/') {
    state = std::string(home) + "/.local/state";
  } else {
    state = "/tmp";
  }
  return "sqlite://" + state + "/leasehold/leases.db";
}

#ifdef LEASEHOLD_HAVE_POSTGRESQL
PostgresOptions PostgresOptionsFor(const StoreSpec& spec) {
  return {
      .conninfo = spec.conninfo, .schema = spec.schema, .table = spec.table, .listen = spec.listen};
}
#endif

Status InitSchema(const StoreSpec& spec, std::ostream& out) {
  if (spec.kind != StoreSpec::Kind::kPostgres) {
    return InvalidArgumentError("store " + spec.url + ": init applies to postgresql:// stores");
  }
#ifdef LEASEHOLD_HAVE_POSTGRESQL
  Result<int> version = PostgresStore::InitSchema(PostgresOptionsFor(spec));
  if (!version.ok()) return version.status();
  out << "schema " << spec.schema << "." << spec.table << " is at version " << *version << "\n";
  return Status::Ok();
#else
  (void)out;
  return UnimplementedError("store " + spec.url +
                            ": the PostgreSQL backend is not built into this leasehold");
#endif
}

Result<std::shared_ptr<Store>> OpenStore(const StoreSpec& spec, std::shared_ptr<Runtime> runtime) {
  switch (spec.kind) {
    case StoreSpec::Kind::kMemory:
      return std::shared_ptr<Store>(MemoryStore::Create(std::move(runtime)));
    case StoreSpec::Kind::kSqlite: {
      if (Status s = MakeDirs(spec.path.substr(0, spec.path.rfind('/'))); !s.ok()) {
        return s.WithContext("store " + spec.url);
      }
      auto store = SqliteStore::Open({.path = spec.path}, std::move(runtime));
      if (!store.ok()) return store.status();
      return std::shared_ptr<Store>(*store);
    }
    case StoreSpec::Kind::kEtcd: {
#ifdef LEASEHOLD_HAVE_ETCD
      EtcdOptions options{.endpoints = spec.endpoints,
                          .tls = spec.tls,
                          .ca_file = spec.ca_file,
                          .cert_file = spec.cert_file,
                          .key_file = spec.key_file,
                          .username = spec.username};
      if (!spec.prefix.empty()) {
        options.key_prefix = spec.prefix.back() == '/' ? spec.prefix : spec.prefix + "/";
      }
      if (!spec.username.empty()) {
        if (!spec.password_file.empty()) {
          auto password = leasehold::detail::ReadSmallFile(spec.password_file, "password-file");
          if (!password.ok()) {
            return Status(password.status().code(),
                          "store " + spec.url + ": " + password.status().message());
          }
          options.password = std::move(*password);
          while (!options.password.empty() &&
                 (options.password.back() == '\n' || options.password.back() == '\r')) {
            options.password.pop_back();
          }
        } else if (const char* pw = std::getenv("LEASEHOLD_ETCD_PASSWORD"); pw && *pw) {
          options.password = pw;
        } else {
          return InvalidArgumentError("store " + spec.url +
                                      ": username given but no password: set "
                                      "LEASEHOLD_ETCD_PASSWORD or password-file");
        }
      }
      auto store = EtcdStore::Open(std::move(options), std::move(runtime));
      if (!store.ok()) return store.status();
      return std::shared_ptr<Store>(*store);
#else
      return UnimplementedError("store " + spec.url +
                                ": the etcd backend is not built into this leasehold");
#endif
    }
    case StoreSpec::Kind::kKubernetes: {
#ifdef LEASEHOLD_CLI_KUBERNETES
      kubernetes::CredentialOptions options;
      if (!spec.endpoints.empty()) {
        options.server = "https://" + spec.endpoints.front();
        options.token_file = spec.token_file;
        options.ca_file = spec.ca_file;
      }
      options.kubeconfig_path = spec.kubeconfig;
      options.context = spec.context;
      options.allow_insecure = spec.insecure;
      auto creds = kubernetes::LoadCredentials(options);
      if (!creds.ok()) return creds.status().WithContext("store " + spec.url);
      auto store = kubernetes::KubernetesStore::Open({.credentials = *std::move(creds),
                                                      .namespace_name = spec.ns,
                                                      .allow_insecure = spec.insecure},
                                                     std::move(runtime));
      if (!store.ok()) return store.status().WithContext("store " + spec.url);
      return std::shared_ptr<Store>(*store);
#else
      return UnimplementedError("store " + spec.url +
                                ": the Kubernetes backend is not built into this leasehold");
#endif
    }
    case StoreSpec::Kind::kPostgres: {
#ifdef LEASEHOLD_HAVE_POSTGRESQL
      // The store's messages name it (without the password).
      auto store = PostgresStore::Open(PostgresOptionsFor(spec), std::move(runtime));
      if (!store.ok()) return store.status();
      return std::shared_ptr<Store>(*store);
#else
      return UnimplementedError("store " + spec.url +
                                ": the PostgreSQL backend is not built into this leasehold");
#endif
    }
    case StoreSpec::Kind::kRedis: {
#ifdef LEASEHOLD_HAVE_REDIS
      auto options = ParseRedisUrl(spec.redis_url);
      if (!options.ok()) return options.status().WithContext("store " + spec.url);
      // The store's messages name it (without the password).
      auto store = RedisStore::Open(*std::move(options), std::move(runtime));
      if (!store.ok()) return store.status();
      return std::shared_ptr<Store>(*store);
#else
      return UnimplementedError("store " + spec.url +
                                ": the Redis backend is not built into this leasehold");
#endif
    }
  }
  return InternalError("unknown store kind");
}

int ExitCodeFor(const Status& status) {
  return status.code() == StatusCode::kInvalidArgument ? kExitUsage : kExitUnavailable;
}

}  // namespace leasehold::cli
