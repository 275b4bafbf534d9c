// Fuzzes the --store URL and duration parsers with arbitrary bytes: they must
// never crash, and whatever they accept must hold the invariants the commands
// rely on (OpenStore and the backends take a parsed StoreSpec on trust).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "cli.h"

namespace {

using leasehold::cli::StoreSpec;

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

bool IsEndpoint(const std::string& ep) {
  const size_t colon = ep.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == ep.size()) return false;
  const int port = std::atoi(ep.c_str() + colon + 1);
  return port >= 1 && port <= 65535;
}

void CheckSpec(std::string_view input, const StoreSpec& s) {
  // Shown URLs are the input, but for PostgreSQL and Redis passwords (redacted).
  Require(s.kind == StoreSpec::Kind::kPostgres || s.kind == StoreSpec::Kind::kRedis ||
          s.url == input);
  Require(input.find('\0') == std::string_view::npos);
  switch (s.kind) {
    case StoreSpec::Kind::kMemory:
      Require(input == "memory:" || input == "memory://");
      break;
    case StoreSpec::Kind::kRedis:
      // Kept whole for ParseRedisUrl (fuzzed in redis_reply_fuzzer).
      Require(s.redis_url == input);
      break;
    case StoreSpec::Kind::kSqlite:
      Require(!s.path.empty() && s.path.front() == '/' && s.path.back() != '/');
      Require(s.path.find('\0') == std::string::npos);
      Require(s.endpoints.empty());
      break;
    case StoreSpec::Kind::kEtcd:
      Require(!s.endpoints.empty());
      for (const auto& ep : s.endpoints) Require(IsEndpoint(ep));
      Require(s.tls || (s.ca_file.empty() && s.cert_file.empty() && s.key_file.empty()));
      Require(s.cert_file.empty() == s.key_file.empty());       // no half client cert
      Require(!s.username.empty() || s.password_file.empty());  // no password without a user
      Require(s.token_file.empty());
      break;
    case StoreSpec::Kind::kKubernetes:
      Require(!s.ns.empty() && s.ns.size() <= 63);
      Require(s.ns.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") == std::string::npos);
      Require(s.ns.front() != '-' && s.ns.back() != '-');
      Require(s.endpoints.size() <= 1);
      if (s.endpoints.empty()) {
        Require(s.token_file.empty() && s.ca_file.empty());
      } else {
        Require(IsEndpoint(s.endpoints.front()));
        Require(!s.token_file.empty() && !s.ca_file.empty());
        Require(s.kubeconfig.empty() && s.context.empty() && !s.insecure);
      }
      break;
    case StoreSpec::Kind::kPostgres:
      Require(s.conninfo.rfind("postgres", 0) == 0);
      // leasehold's own parameters never reach libpq.
      if (const size_t q = s.conninfo.find('?'); q != std::string::npos) {
        std::string_view query = std::string_view(s.conninfo).substr(q + 1);
        while (!query.empty()) {
          Require(query.rfind("leasehold-", 0) != 0);
          const size_t amp = query.find('&');
          query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        }
      }
      Require(!s.schema.empty() && !s.table.empty());
      // No password survives into the shown URL.
      for (size_t at = s.url.find("password="); at != std::string::npos;
           at = s.url.find("password=", at + 1)) {
        Require(s.url.compare(at + 9, 3, "***") == 0);
      }
      break;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if (auto spec = leasehold::cli::ParseStoreUrl(input); spec.ok()) {
    CheckSpec(input, *spec);
  } else {
    Require(spec.status().code() == leasehold::StatusCode::kInvalidArgument);
    Require(!spec.status().message().empty());
  }
  if (auto d = leasehold::cli::ParseDuration(input); d.ok()) {
    Require(d->count() > 0);
  } else {
    Require(d.status().code() == leasehold::StatusCode::kInvalidArgument);
  }
  return 0;
}
