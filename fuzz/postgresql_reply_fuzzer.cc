// Fuzzes what the PostgreSQL store parses: lease rows as the server returns
// them (written by anyone with access to the table), its watch versions,
// connection strings (described without secrets) and fencing tokens. None may
// crash; a parsed row must hold the invariants the store relies on; a
// password in a connection string never reaches a description or an error.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "leasehold/backends/postgresql_fence.h"
#include "pg_connection.h"
#include "pg_rows.h"

namespace {

using namespace leasehold;

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

// The input as one row: fields split at '\n', a field "\x01" is NULL.
postgres::Rows AsRow(std::string_view in) {
  postgres::Rows rows;
  auto& row = rows.rows.emplace_back();
  while (true) {
    const size_t nl = in.find('\n');
    const std::string field(in.substr(0, nl));
    row.emplace_back(field == "\x01" ? std::nullopt : std::optional<std::string>(field));
    if (nl == std::string_view::npos) break;
    in.remove_prefix(nl + 1);
  }
  return rows;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  auto row = postgres::ParseRow(AsRow(input), "lease \"x\"");
  if (row.ok()) {
    Require(row->has_value());
    const postgres::Row& r = **row;
    Require(r.sequence >= 0);
    Require(!r.ttl || (*r.ttl > Duration::zero() && *r.ttl <= postgres::kMaxTtl));
    Require(r.acquired_ms >= 0 && r.renewed_ms >= 0);
    // Fits a WallTime without overflow.
    Require(r.acquired_ms <= 9'000'000'000'000 && r.renewed_ms <= 9'000'000'000'000);
  } else {
    Require(row.status().code() == StatusCode::kDataLoss);
  }

  // The same fields as a listing's row: sorted, every name kept.
  auto listing = postgres::ParseListing(AsRow(input), "list leases");
  if (listing.ok()) {
    Require(listing->size() == 1);
    Require(AsRow(input).rows.front().back() == listing->front().first);
  } else {
    Require(listing.status().code() == StatusCode::kDataLoss);
  }

  const auto [version, heard] = postgres::ParseWatchVersion(std::string(input));
  if (version) {
    Require(postgres::ParseWatchVersion(postgres::WatchVersion(*version, heard)) ==
            std::make_pair(version, heard));
  }

  const std::string conninfo(input);
  if (conninfo.find('\0') == std::string::npos) {
    auto described = postgres::DescribeConninfo(conninfo);
    // What libpq and the input contributed (not the fixed words around them).
    const std::string prefix = "postgresql store: cannot parse the connection string: ";
    std::string text = described.ok() ? *described : described.status().message();
    if (text.rfind(prefix, 0) == 0) text = text.substr(prefix.size());
    // The value of a single unquoted password=: never in a message.
    const size_t at = conninfo.find("password=");
    if (at != std::string::npos && conninfo.find("password=", at + 1) == std::string::npos &&
        at + 9 < conninfo.size() && conninfo[at + 9] != '\'') {
      size_t end = at + 9;
      while (end < conninfo.size() && !std::isspace(static_cast<unsigned char>(conninfo[end])) &&
             conninfo[end] != '&' && conninfo[end] != '#') {
        ++end;
      }
      const std::string secret = conninfo.substr(at + 9, end - at - 9);
      const bool unique =
          conninfo.find(secret) == at + 9 && conninfo.find(secret, at + 10) == std::string::npos;
      if (secret.size() >= 4 && unique && !described.ok()) {
        Require(text.find(secret) == std::string::npos);
      }
    }
  }

  FencingToken token{std::string(input), 7};
  auto statement = MakeFenceStatement("x", token);
  if (statement.ok()) {
    Require(statement->params.size() == 3);
    Require(statement->params[0] == "x" && statement->params[1] == "7");
    Require(!statement->params[2].empty());
    Require(statement->params[2].find('/') == std::string::npos);
  }
  return 0;
}
