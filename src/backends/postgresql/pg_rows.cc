#include "pg_rows.h"

#include <algorithm>
#include <charconv>

#include "kit/watch_version.h"

namespace leasehold::postgres {
namespace {

// Unix milliseconds a WallTime (nanoseconds since 1970) can hold: up to the
// year 2262.
constexpr int64_t kMaxWallMs = 9'000'000'000'000;

int64_t WallMs(const std::optional<std::string>& v) {
  const std::optional<int64_t> ms = Int(v);
  return ms && *ms >= 0 && *ms <= kMaxWallMs ? *ms : 0;
}

}  // namespace

std::optional<int64_t> Int(const std::optional<std::string>& v) {
  if (!v) return std::nullopt;
  int64_t out = 0;
  const char* end = v->data() + v->size();
  auto [p, ec] = std::from_chars(v->data(), end, out);
  if (ec != std::errc() || p != end) return std::nullopt;
  return out;
}

namespace {

// One row's first kRowColumns columns.
Result<Row> ParseColumns(const std::vector<std::optional<std::string>>& r,
                         const std::string& what) {
  Row row;
  row.holder = r[0];
  const std::optional<int64_t> version = Int(r[3]);
  if (!version) return DataLossError(what + ": the row's version is not a number");
  row.version = *version;
  row.sequence = std::max<int64_t>(0, Int(r[1]).value_or(0));
  const std::optional<int64_t> ttl_ms = Int(r[2]);
  if (ttl_ms && *ttl_ms > 0 && *ttl_ms <= CeilMs(kMaxTtl)) {
    row.ttl = std::chrono::milliseconds(*ttl_ms);
  }
  row.acquired_ms = WallMs(r[4]);
  row.renewed_ms = WallMs(r[5]);
  return row;
}

}  // namespace

Result<std::optional<Row>> ParseRow(const Rows& rows, const std::string& what) {
  if (rows.rows.empty()) return std::optional<Row>();
  const auto& r = rows.rows.front();
  if (r.size() != kRowColumns) {
    return DataLossError(what + ": the lease table has an unexpected shape");
  }
  Result<Row> row = ParseColumns(r, what);
  if (!row.ok()) return row.status();
  return std::optional<Row>(std::move(*row));
}

Result<std::vector<std::pair<std::string, Row>>> ParseListing(const Rows& rows,
                                                              const std::string& what) {
  std::vector<std::pair<std::string, Row>> out;
  out.reserve(rows.rows.size());
  for (const auto& r : rows.rows) {
    if (r.size() != kRowColumns + 1) {
      return DataLossError(what + ": the lease table has an unexpected shape");
    }
    if (!r.back()) return DataLossError(what + ": a row has no name");
    Result<Row> row = ParseColumns(r, what + ": lease \"" + r.back()->substr(0, 253) + "\"");
    if (!row.ok()) return row.status();
    out.emplace_back(*r.back(), std::move(*row));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

std::string WatchVersion(int64_t version, uint64_t heard) {
  return kit::StampVersion(std::to_string(version), heard);
}

std::pair<std::optional<int64_t>, uint64_t> ParseWatchVersion(const std::string& v) {
  const auto [version, heard] = kit::UnstampVersion(v);
  return {Int(std::optional<std::string>(version)), heard};
}

void AppendArrayElement(std::string& array, std::string_view element) {
  if (!array.empty()) array += ',';
  array += '"';
  for (char c : element) {
    if (c == '"' || c == '\\') array += '\\';
    array += c;
  }
  array += '"';
}

}  // namespace leasehold::postgres
