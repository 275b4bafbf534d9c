#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <utility>
#include <vector>

#include "leasehold/backends/kubernetes_credentials.h"
#include "leasehold/detail/io.h"

namespace leasehold::kubernetes {
namespace {

// The token file is re-read while leases are held (rotation): any failure to
// read it is worth retrying, so it is kUnavailable.
Result<std::string> ReadTokenFile(const std::string& path) {
  Result<std::string> text = leasehold::detail::ReadSmallFile(path, "the token file");
  if (!text.ok()) return UnavailableError(text.status().message());
  std::string token = std::move(*text);
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ' ||
                            token.back() == '\t')) {
    token.pop_back();
  }
  if (token.empty()) return UnavailableError("the token file " + path + " is empty");
  if (token.find_first_of("\r\n") != std::string::npos) {
    return InvalidArgumentError("the token file " + path + " holds more than one line");
  }
  return token;
}

constexpr int kMaxNesting = 64;

std::optional<std::string> GetEnv(const CredentialOptions& options, const std::string& name) {
  if (options.environment) {
    auto it = options.environment->find(name);
    if (it == options.environment->end() || it->second.empty()) return std::nullopt;
    return it->second;
  }
  const char* value = std::getenv(name.c_str());
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

// Reads a whole (small) file named in the configuration; `what` names it in
// errors, which are all configuration errors (kInvalidArgument).
Result<std::string> ReadSmallFile(const std::string& path, const std::string& what) {
  Result<std::string> text = leasehold::detail::ReadSmallFile(path, what);
  if (!text.ok()) return InvalidArgumentError(text.status().message());
  return text;
}

Result<std::string> Base64Decode(std::string_view in, const std::string& where) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  uint32_t bits = 0;
  int nbits = 0;
  size_t padding = 0;
  for (char c : in) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++padding;
      continue;
    }
    const int v = value(c);
    if (v < 0 || padding > 0) return InvalidArgumentError(where + " is not valid base64");
    bits = (bits << 6) | static_cast<uint32_t>(v);
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out.push_back(static_cast<char>((bits >> nbits) & 0xff));
    }
  }
  if (padding > 2 || nbits >= 6) return InvalidArgumentError(where + " is not valid base64");
  if (out.empty()) return InvalidArgumentError(where + " is empty");
  return out;
}

Status CheckPem(const std::string& text, const std::string& where) {
  if (text.find("-----BEGIN ") == std::string::npos) {
    return InvalidArgumentError(where + " does not hold a PEM block");
  }
  return Status::Ok();
}

// A bearer token goes into an HTTP header: visible ASCII only.
Status CheckToken(const std::string& token, const std::string& where) {
  if (token.empty()) return InvalidArgumentError(where + " is empty");
  for (unsigned char c : token) {
    if (c <= 0x20 || c >= 0x7f) {
      return InvalidArgumentError(where + " holds a character a bearer token cannot have");
    }
  }
  return Status::Ok();
}

// "https://host[:port][/path]" -> the same without a trailing '/'.
Result<std::string> NormalizeServer(std::string_view url, bool allow_insecure,
                                    const std::string& where) {
  std::string_view rest;
  if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else if (url.starts_with("http://")) {
    if (!allow_insecure) {
      return PermissionDeniedError(where +
                                   ": plain http:// servers are refused (no TLS); "
                                   "allow insecure connections explicitly to use one");
    }
    rest = url.substr(7);
  } else {
    return InvalidArgumentError(where + ": the server URL must start with https://");
  }
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash);
  std::string_view port;
  if (authority.starts_with('[')) {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos || close == 1) {
      return InvalidArgumentError(where + ": bad IPv6 host in the server URL");
    }
    for (char c : authority.substr(1, close - 1)) {
      if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') {
        return InvalidArgumentError(where + ": bad IPv6 host in the server URL");
      }
    }
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (!after.starts_with(':')) return InvalidArgumentError(where + ": bad server URL");
      port = after.substr(1);
      if (port.empty()) return InvalidArgumentError(where + ": empty port in the server URL");
    }
  } else {
    const size_t colon = authority.find(':');
    std::string_view host = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return InvalidArgumentError(where + ": empty port in the server URL");
    }
    if (host.empty()) return InvalidArgumentError(where + ": no host in the server URL");
    for (char c : host) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '_') {
        return InvalidArgumentError(where + ": bad host in the server URL");
      }
    }
  }
  if (!port.empty()) {
    if (port.size() > 5) return InvalidArgumentError(where + ": bad port in the server URL");
    int number = 0;
    for (char c : port) {
      if (c < '0' || c > '9') return InvalidArgumentError(where + ": bad port in the server URL");
      number = number * 10 + (c - '0');
    }
    if (number < 1 || number > 65535) {
      return InvalidArgumentError(where + ": port out of range in the server URL");
    }
  }
  for (char c : path) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f || c == '?' || c == '#') {
      return InvalidArgumentError(where +
                                  ": the server URL may hold a path but no query, "
                                  "fragment, space or control character");
    }
  }
  std::string out(url);
  while (out.ends_with('/')) out.pop_back();
  return out;
}

// yaml-cpp parses recursively: refuse what could exhaust its stack before
// handing it over. Every level of block nesting takes at least one character
// of a line's prefix (indentation, "- ", "? ", ": "); flow brackets are
// counted across lines (conservatively, quotes included).
Status CheckNesting(std::string_view text, const std::string& where) {
  if (text.size() > leasehold::detail::kMaxSmallFileBytes) {
    return InvalidArgumentError(where + " is larger than 1 MiB");
  }
  constexpr int kMaxPrefix = 4 * kMaxNesting;
  int flow = 0;
  int prefix = 0;
  bool line_start = true;
  for (char c : text) {
    if (c == '\n') {
      line_start = true;
      prefix = 0;
      continue;
    }
    if (line_start) {
      if (c == ' ' || c == '\t' || c == '-' || c == '?' || c == ':') {
        if (++prefix > kMaxPrefix) return InvalidArgumentError(where + " is nested too deeply");
        continue;
      }
      line_start = false;
    }
    if (c == '[' || c == '{') {
      if (++flow > kMaxNesting) return InvalidArgumentError(where + " is nested too deeply");
    } else if ((c == ']' || c == '}') && flow > 0) {
      --flow;
    }
  }
  return Status::Ok();
}

// One named entry of a kubeconfig list, with the directory of the file that
// defined it (relative paths are relative to it).
struct Entry {
  YAML::Node body;
  std::string dir;
  std::string file;
};

// A kubeconfig, possibly merged from several files.
struct Kubeconfig {
  std::string current_context;
  std::string files;  // for messages
  std::map<std::string, Entry> contexts, clusters, users;
};

// The string value of `key` in the map `node`; nullopt when absent or null.
std::optional<std::string> Scalar(const YAML::Node& node, const char* key,
                                  const std::string& where) {
  const YAML::Node value = node[key];
  if (!value || value.IsNull()) return std::nullopt;
  if (!value.IsScalar()) {
    throw std::invalid_argument(where + ": field " + key + " must be a string");
  }
  return value.Scalar();
}

bool Flag(const YAML::Node& node, const char* key, const std::string& where) {
  const std::optional<std::string> value = Scalar(node, key, where);
  if (!value) return false;
  if (*value == "true") return true;
  if (*value == "false") return false;
  throw std::invalid_argument(where + ": field " + std::string(key) + " must be true or false");
}

void MergeList(const YAML::Node& root, const char* list, const char* body_key,
               std::map<std::string, Entry>& into, const std::string& dir,
               const std::string& file) {
  const YAML::Node items = root[list];
  if (!items || items.IsNull()) return;
  if (!items.IsSequence()) {
    throw std::invalid_argument("kubeconfig " + file + ": " + list + " must be a list");
  }
  for (const YAML::Node& item : items) {
    if (!item.IsMap()) {
      throw std::invalid_argument("kubeconfig " + file + ": an entry of " + list + " is not a map");
    }
    const std::optional<std::string> name = Scalar(item, "name", "kubeconfig " + file);
    if (!name || name->empty()) {
      throw std::invalid_argument("kubeconfig " + file + ": an entry of " + list + " has no name");
    }
    YAML::Node body = item[body_key];
    if (body && !body.IsNull() && !body.IsMap()) {
      throw std::invalid_argument("kubeconfig " + file + ": " + list + " entry '" + *name +
                                  "': " + body_key + " must be a map");
    }
    into.try_emplace(*name, Entry{body, dir, file});
  }
}

Status MergeDocument(Kubeconfig& config, std::string_view text, const std::string& dir,
                     const std::string& file) {
  const std::string where = "kubeconfig " + file;
  if (Status s = CheckNesting(text, where); !s.ok()) return s;
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    if (root.IsNull()) return Status::Ok();  // an empty file adds nothing
    if (!root.IsMap()) return InvalidArgumentError(where + " is not a YAML map");
    if (config.current_context.empty()) {
      config.current_context = Scalar(root, "current-context", where).value_or("");
    }
    MergeList(root, "contexts", "context", config.contexts, dir, file);
    MergeList(root, "clusters", "cluster", config.clusters, dir, file);
    MergeList(root, "users", "user", config.users, dir, file);
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(where + " is not valid YAML: " + e.what());
  } catch (const std::invalid_argument& e) {
    return InvalidArgumentError(e.what());
  }
  config.files += config.files.empty() ? file : ", " + file;
  return Status::Ok();
}

std::string Resolve(const std::string& dir, const std::string& path) {
  if (path.empty() || path.front() == '/' || dir.empty()) return path;
  return dir + "/" + path;
}

// PEM text from `key`-data (base64) or `key` (a file), data first as kubectl
// does; "" when neither is set.
Result<std::string> PemField(const Entry& entry, const std::string& key, const std::string& where) {
  if (std::optional<std::string> data = Scalar(entry.body, (key + "-data").c_str(), where)) {
    Result<std::string> pem = Base64Decode(*data, where + ": " + key + "-data");
    if (!pem.ok()) return pem.status();
    if (Status s = CheckPem(*pem, where + ": " + key + "-data"); !s.ok()) return s;
    return pem;
  }
  if (std::optional<std::string> path = Scalar(entry.body, key.c_str(), where)) {
    Result<std::string> pem = ReadSmallFile(Resolve(entry.dir, *path), where + ": " + key);
    if (!pem.ok()) return pem.status();
    if (Status s = CheckPem(*pem, where + ": " + key); !s.ok()) return s;
    return pem;
  }
  return std::string();
}

Result<Credentials> ResolveContext(const Kubeconfig& config, const std::string& context_override,
                                   bool allow_insecure) {
  const std::string name = context_override.empty() ? config.current_context : context_override;
  const std::string where = "kubeconfig " + config.files;
  if (name.empty()) {
    return InvalidArgumentError(where + ": no current-context is set and no context was given");
  }
  auto context_it = config.contexts.find(name);
  if (context_it == config.contexts.end()) {
    return NotFoundError(where + ": no context named '" + name + "'");
  }
  const Entry& context = context_it->second;
  const std::string context_where = where + ", context '" + name + "'";
  try {
    if (!context.body) return InvalidArgumentError(context_where + " is empty");
    const std::string cluster_name = Scalar(context.body, "cluster", context_where).value_or("");
    const std::string user_name = Scalar(context.body, "user", context_where).value_or("");
    Credentials out;
    out.namespace_name = Scalar(context.body, "namespace", context_where).value_or("");
    out.source = "kubeconfig " + context.file + " context " + name;
    if (cluster_name.empty()) return InvalidArgumentError(context_where + " names no cluster");
    auto cluster_it = config.clusters.find(cluster_name);
    if (cluster_it == config.clusters.end() || !cluster_it->second.body) {
      return NotFoundError(context_where + ": no cluster named '" + cluster_name + "'");
    }
    const Entry& cluster = cluster_it->second;
    const std::string cluster_where =
        "kubeconfig " + cluster.file + ", cluster '" + cluster_name + "'";
    const std::optional<std::string> server = Scalar(cluster.body, "server", cluster_where);
    if (!server || server->empty()) return InvalidArgumentError(cluster_where + " has no server");
    if (Flag(cluster.body, "insecure-skip-tls-verify", cluster_where)) {
      if (!allow_insecure) {
        return PermissionDeniedError(cluster_where +
                                     " sets insecure-skip-tls-verify; leasehold "
                                     "verifies TLS unless insecure connections are allowed "
                                     "explicitly");
      }
      out.insecure_skip_tls_verify = true;
    }
    Result<std::string> normalized = NormalizeServer(*server, allow_insecure, cluster_where);
    if (!normalized.ok()) return normalized.status();
    out.server = *std::move(normalized);
    Result<std::string> ca = PemField(cluster, "certificate-authority", cluster_where);
    if (!ca.ok()) return ca.status();
    out.ca_pem = *std::move(ca);

    if (user_name.empty()) return out;  // anonymous (or TLS client auth not configured)
    auto user_it = config.users.find(user_name);
    if (user_it == config.users.end()) {
      return NotFoundError(context_where + ": no user named '" + user_name + "'");
    }
    const Entry& user = user_it->second;
    if (!user.body) return out;
    const std::string user_where = "kubeconfig " + user.file + ", user '" + user_name + "'";
    for (const char* plugin : {"exec", "auth-provider"}) {
      if (user.body[plugin]) {
        return UnimplementedError(user_where + " uses " + plugin +
                                  "; leasehold does not run credential plugins: give a token, "
                                  "a token file or a client certificate");
      }
    }
    if (user.body["username"] || user.body["password"]) {
      return UnimplementedError(user_where +
                                " uses basic authentication, which Kubernetes no "
                                "longer supports");
    }
    if (std::optional<std::string> file = Scalar(user.body, "tokenFile", user_where)) {
      out.token_file = Resolve(user.dir, *file);
      Result<std::string> token = ReadSmallFile(out.token_file, user_where + ": tokenFile");
      if (!token.ok()) return token.status();
    }
    if (std::optional<std::string> token = Scalar(user.body, "token", user_where)) {
      if (Status s = CheckToken(*token, user_where + ": token"); !s.ok()) return s;
      out.token = *token;
    }
    Result<std::string> cert = PemField(user, "client-certificate", user_where);
    if (!cert.ok()) return cert.status();
    Result<std::string> key = PemField(user, "client-key", user_where);
    if (!key.ok()) return key.status();
    if (cert->empty() != key->empty()) {
      return InvalidArgumentError(user_where +
                                  ": a client certificate needs its key and a key "
                                  "its certificate");
    }
    out.client_cert_pem = *std::move(cert);
    out.client_key_pem = *std::move(key);
    return out;
  } catch (const YAML::Exception& e) {
    return InvalidArgumentError(context_where + ": " + e.what());
  } catch (const std::invalid_argument& e) {
    return InvalidArgumentError(e.what());
  }
}

Result<Credentials> LoadExplicit(const CredentialOptions& options) {
  std::vector<std::string> missing;
  if (options.server.empty()) missing.push_back("the API server URL");
  if (options.token.empty() && options.token_file.empty())
    missing.push_back("a token or token file");
  if (options.ca_file.empty()) missing.push_back("a CA file");
  if (!missing.empty()) {
    std::string list;
    for (const std::string& m : missing) list += (list.empty() ? "" : ", ") + m;
    return InvalidArgumentError(
        "explicit Kubernetes credentials need the server URL, a token "
        "(or token file) and a CA file together; missing: " +
        list);
  }
  if (!options.token.empty() && !options.token_file.empty()) {
    return InvalidArgumentError("give either a token or a token file, not both");
  }
  Credentials out;
  out.source = "explicit";
  Result<std::string> server =
      NormalizeServer(options.server, options.allow_insecure, "the API server URL");
  if (!server.ok()) return server.status();
  out.server = *std::move(server);
  Result<std::string> ca = ReadSmallFile(options.ca_file, "the CA file");
  if (!ca.ok()) return ca.status();
  if (Status s = CheckPem(*ca, "the CA file " + options.ca_file); !s.ok()) return s;
  out.ca_pem = *std::move(ca);
  if (!options.token.empty()) {
    if (Status s = CheckToken(options.token, "the token"); !s.ok()) return s;
    out.token = options.token;
  } else {
    Result<std::string> token = ReadSmallFile(options.token_file, "the token file");
    if (!token.ok()) return token.status();
    out.token_file = options.token_file;
  }
  return out;
}

Result<Credentials> LoadInCluster(const CredentialOptions& options, const std::string& host,
                                  const std::string& port) {
  const std::string where = "in-cluster configuration";
  const std::string authority =
      host.find(':') != std::string::npos && !host.starts_with('[') ? "[" + host + "]" : host;
  Result<std::string> server =
      NormalizeServer("https://" + authority + ":" + port, false,
                      where + " (KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT)");
  if (!server.ok()) return server.status();
  Credentials out;
  out.source = "in-cluster";
  out.server = *std::move(server);
  const std::string dir = options.service_account_dir;
  out.token_file = dir + "/token";
  Result<std::string> token = ReadSmallFile(out.token_file, where + ": the service account token");
  if (!token.ok()) return token.status();
  Result<std::string> ca = ReadSmallFile(dir + "/ca.crt", where + ": the service account CA");
  if (!ca.ok()) return ca.status();
  if (Status s = CheckPem(*ca, where + ": " + dir + "/ca.crt"); !s.ok()) return s;
  out.ca_pem = *std::move(ca);
  std::error_code ec;
  if (std::filesystem::exists(dir + "/namespace", ec)) {
    Result<std::string> ns = ReadSmallFile(dir + "/namespace", where + ": the namespace file");
    if (!ns.ok()) return ns.status();
    std::string name = *std::move(ns);
    while (!name.empty() && std::isspace(static_cast<unsigned char>(name.back()))) name.pop_back();
    out.namespace_name = std::move(name);
  }
  return out;
}

}  // namespace

Result<Credentials> ParseKubeconfig(std::string_view yaml_text, const std::string& dir,
                                    const std::string& context, bool allow_insecure) {
  Kubeconfig config;
  if (Status s = MergeDocument(config, yaml_text, dir, "(text)"); !s.ok()) return s;
  return ResolveContext(config, context, allow_insecure);
}

Result<Credentials> LoadCredentials(const CredentialOptions& options) {
  if (!options.server.empty() || !options.token.empty() || !options.token_file.empty() ||
      !options.ca_file.empty()) {
    return LoadExplicit(options);
  }

  std::vector<std::string> files;
  std::string origin;
  if (!options.kubeconfig_path.empty()) {
    files.push_back(options.kubeconfig_path);
    origin = "the kubeconfig option";
  } else if (std::optional<std::string> list = GetEnv(options, "KUBECONFIG")) {
    origin = "KUBECONFIG";
    std::error_code ec;
    std::string_view rest = *list;
    while (!rest.empty()) {
      const size_t colon = rest.find(':');
      std::string path(rest.substr(0, colon));
      rest = colon == std::string_view::npos ? "" : rest.substr(colon + 1);
      // As kubectl does: files of the list that do not exist are skipped.
      if (!path.empty() && std::filesystem::exists(path, ec)) files.push_back(path);
    }
    if (files.empty()) {
      return InvalidArgumentError("KUBECONFIG names no existing file: " + *list);
    }
  } else if (std::optional<std::string> home = GetEnv(options, "HOME")) {
    std::error_code ec;
    const std::string path = *home + "/.kube/config";
    if (std::filesystem::exists(path, ec)) {
      files.push_back(path);
      origin = "~/.kube/config";
    }
  }
  if (!files.empty()) {
    Kubeconfig config;
    for (const std::string& file : files) {
      Result<std::string> text = ReadSmallFile(file, "kubeconfig (from " + origin + ")");
      if (!text.ok()) return text.status();
      const std::string dir = std::filesystem::path(file).parent_path().string();
      if (Status s = MergeDocument(config, *text, dir, file); !s.ok()) return s;
    }
    return ResolveContext(config, options.context, options.allow_insecure);
  }
  if (!options.context.empty()) {
    return InvalidArgumentError("context '" + options.context +
                                "' was given but no kubeconfig "
                                "was found (kubeconfig option, KUBECONFIG, ~/.kube/config)");
  }

  const std::optional<std::string> host = GetEnv(options, "KUBERNETES_SERVICE_HOST");
  const std::optional<std::string> port = GetEnv(options, "KUBERNETES_SERVICE_PORT");
  if (host && port) return LoadInCluster(options, *host, *port);
  if (host || port) {
    return InvalidArgumentError(
        "in-cluster configuration needs both KUBERNETES_SERVICE_HOST and "
        "KUBERNETES_SERVICE_PORT; only one is set");
  }
  return FailedPreconditionError(
      "no Kubernetes credentials found: no explicit server, token "
      "and CA; no kubeconfig (KUBECONFIG, ~/.kube/config); not in a "
      "cluster (KUBERNETES_SERVICE_HOST unset)");
}

TokenSource::TokenSource(Credentials credentials, const Clock* clock, Duration max_age)
    : credentials_(std::move(credentials)),
      clock_(clock != nullptr ? clock : &RealClock()),
      max_age_(max_age),
      token_(credentials_.token) {}

Result<std::string> TokenSource::Current() {
  std::lock_guard lock(mu_);
  if (credentials_.token_file.empty()) return token_;
  const TimePoint now = clock_->Now();
  if (fresh_ && now - read_at_ < max_age_) return token_;
  ++reads_;
  Result<std::string> read = ReadTokenFile(credentials_.token_file);
  if (!read.ok()) {
    // Keep serving the last good token: the kubelet rewrites the file
    // atomically, so a failed read is transient; the server says if the old
    // token stopped working.
    if (token_.empty()) return read.status();
    return token_;
  }
  token_ = *std::move(read);
  read_at_ = now;
  fresh_ = true;
  return token_;
}

void TokenSource::Invalidate() {
  std::lock_guard lock(mu_);
  fresh_ = false;
}

uint64_t TokenSource::reads() const {
  std::lock_guard lock(mu_);
  return reads_;
}

}  // namespace leasehold::kubernetes
