// ParseRedisUrl (leasehold/backends/redis.h): redis://, rediss:// and
// redis-sentinel:// URLs into RedisOptions. Every error names the part of
// the URL that is wrong; a password never appears in one.
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "leasehold/backends/redis.h"
#include "redis_reply.h"

namespace leasehold {
namespace {

Status Bad(const std::string& why) { return InvalidArgumentError("redis store URL: " + why); }

// %XX decoding; nullopt for a malformed escape.
std::optional<std::string> Unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    auto hex = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

std::optional<int64_t> Number(std::string_view s, int64_t lo, int64_t hi) {
  if (s.empty() || s[0] == '-' || s[0] == '+') return std::nullopt;
  std::optional<int64_t> v = redis::ParseInt64(s);
  if (!v || *v < lo || *v > hi) return std::nullopt;
  return v;
}

Result<RedisEndpoint> ParseHost(std::string_view hp) {
  RedisEndpoint e;
  std::string_view port;
  if (!hp.empty() && hp[0] == '[') {  // [v6]:port
    const size_t close = hp.find(']');
    if (close == std::string_view::npos)
      return Bad("unclosed '[' in host \"" + std::string(hp) + "\"");
    e.host = std::string(hp.substr(1, close - 1));
    std::string_view rest = hp.substr(close + 1);
    if (!rest.empty()) {
      if (rest[0] != ':') return Bad("junk after ']' in host \"" + std::string(hp) + "\"");
      port = rest.substr(1);
      if (port.empty()) return Bad("empty port in \"" + std::string(hp) + "\"");
    }
  } else {
    const size_t colon = hp.rfind(':');
    e.host = std::string(hp.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = hp.substr(colon + 1);
      if (port.empty()) return Bad("empty port in \"" + std::string(hp) + "\"");
    }
  }
  if (e.host.empty()) return Bad("no host");
  if (!port.empty()) {
    std::optional<int64_t> p = Number(port, 1, 65535);
    if (!p) return Bad("port \"" + std::string(port) + "\" is not a number in 1..65535");
    e.port = static_cast<int>(*p);
  }
  return e;
}

Status ParseBool(const std::string& key, const std::string& value, bool& out) {
  if (value == "1" || value == "true") {
    out = true;
  } else if (value == "0" || value == "false") {
    out = false;
  } else {
    return Bad("option " + key + " must be 0 or 1, got \"" + value + "\"");
  }
  return Status::Ok();
}

Status ApplyOption(const std::string& key, const std::string& value, RedisOptions& o) {
  if (key == "prefix") {
    o.key_prefix = value;
  } else if (key == "ca") {
    o.tls_ca_file = value;
  } else if (key == "cert") {
    o.tls_cert_file = value;
  } else if (key == "key") {
    o.tls_key_file = value;
  } else if (key == "server-name") {
    o.tls_server_name = value;
  } else if (key == "allow-eviction") {
    return ParseBool(key, value, o.allow_eviction);
  } else if (key == "require-aof") {
    return ParseBool(key, value, o.require_aof);
  } else if (key == "subscribe") {
    return ParseBool(key, value, o.subscribe);
  } else if (key == "wait-replicas") {
    std::optional<int64_t> n = Number(value, 0, 100);
    if (!n) return Bad("option wait-replicas must be a number in 0..100, got \"" + value + "\"");
    o.wait_replicas = static_cast<int>(*n);
  } else if (key == "wait-timeout-ms") {
    std::optional<int64_t> n = Number(value, 1, 600'000);
    if (!n)
      return Bad("option wait-timeout-ms must be a number in 1..600000, got \"" + value + "\"");
    o.wait_timeout = std::chrono::milliseconds(*n);
  } else if (key == "sentinel-user") {
    o.sentinel_username = value;
  } else {
    return Bad("unknown option \"" + key +
               "\" (known: prefix, ca, cert, key, server-name, allow-eviction, require-aof, "
               "subscribe, wait-replicas, wait-timeout-ms, sentinel-user)");
  }
  return Status::Ok();
}

}  // namespace

Result<RedisOptions> ParseRedisUrl(const std::string& url) {
  RedisOptions o;
  std::string_view rest(url);
  bool sentinel = false;
  if (rest.substr(0, 8) == "redis://") {
    rest.remove_prefix(8);
  } else if (rest.substr(0, 9) == "rediss://") {
    rest.remove_prefix(9);
    o.tls = true;
  } else if (rest.substr(0, 17) == "redis-sentinel://") {
    rest.remove_prefix(17);
    sentinel = true;
  } else if (rest.substr(0, 18) == "rediss-sentinel://") {
    // TLS to the sentinels and to the servers they name, as Redis does with
    // tls-replication: one CA, one set of options for both.
    rest.remove_prefix(18);
    sentinel = true;
    o.tls = true;
  } else {
    return Bad("must start with redis://, rediss://, redis-sentinel:// or rediss-sentinel://");
  }
  // Options.
  if (const size_t q = rest.find('?'); q != std::string_view::npos) {
    std::string_view query = rest.substr(q + 1);
    rest = rest.substr(0, q);
    while (!query.empty()) {
      const size_t amp = query.find('&');
      std::string_view item = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
      if (item.empty()) continue;
      const size_t eq = item.find('=');
      std::optional<std::string> key = Unescape(item.substr(0, eq));
      std::optional<std::string> value =
          Unescape(eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1));
      if (!key || !value) return Bad("malformed %-escape in the options");
      if (eq == std::string_view::npos) return Bad("option \"" + *key + "\" has no value");
      if (Status s = ApplyOption(*key, *value, o); !s.ok()) return s;
    }
  }
  // Credentials: everything before the last '@' of the authority.
  const size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? std::string_view() : rest.substr(slash);
  if (const size_t at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority = authority.substr(at + 1);
    const size_t colon = userinfo.find(':');
    std::optional<std::string> user = Unescape(userinfo.substr(0, colon));
    if (!user) return Bad("malformed %-escape in the user name");
    if (colon == std::string_view::npos) {
      return Bad("credentials need a ':' before the password (redis://[USER]:PASSWORD@HOST)");
    }
    std::optional<std::string> password = Unescape(userinfo.substr(colon + 1));
    if (!password) return Bad("malformed %-escape in the password");
    o.username = *user;
    o.password = *password;
  }
  if (authority.empty()) return Bad("no host");
  while (!authority.empty()) {
    const size_t comma = authority.find(',');
    Result<RedisEndpoint> e = ParseHost(authority.substr(0, comma));
    if (!e.ok()) return e.status();
    o.endpoints.push_back(*e);
    authority = comma == std::string_view::npos ? std::string_view() : authority.substr(comma + 1);
    if (comma != std::string_view::npos && authority.empty()) return Bad("empty host after ','");
  }
  if (!sentinel && o.endpoints.size() > 1) {
    return Bad(
        "several hosts are for redis-sentinel:// (one server per redis:// or rediss:// URL)");
  }
  // Path: [/MASTER][/DB].
  std::vector<std::string> parts;
  while (!path.empty()) {
    path.remove_prefix(1);  // '/'
    const size_t next = path.find('/');
    std::optional<std::string> part = Unescape(path.substr(0, next));
    if (!part) return Bad("malformed %-escape in the path");
    if (!part->empty()) parts.push_back(*part);
    path = next == std::string_view::npos ? std::string_view() : path.substr(next);
  }
  size_t k = 0;
  if (sentinel) {
    if (parts.empty())
      return Bad("redis-sentinel:// needs the master's name: redis-sentinel://HOSTS/MASTER");
    o.sentinel_master = parts[k++];
  }
  if (k < parts.size()) {
    std::optional<int64_t> db = Number(parts[k], 0, 65535);
    if (!db) return Bad("database \"" + parts[k] + "\" is not a number in 0..65535");
    o.database = static_cast<int>(*db);
    ++k;
  }
  if (k < parts.size()) return Bad("unexpected path part \"" + parts[k] + "\"");
  if (o.password.empty()) {
    if (const char* env = std::getenv("REDISCLI_AUTH")) o.password = env;
  }
  if (sentinel) {
    if (const char* env = std::getenv("LEASEHOLD_SENTINEL_AUTH")) o.sentinel_password = env;
  }
  return o;
}

}  // namespace leasehold
