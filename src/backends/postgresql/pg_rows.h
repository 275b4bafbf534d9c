// What the PostgreSQL store reads back: lease rows (written by anyone with
// access to the table, so possibly hand-edited or hostile) and its own watch
// versions. Pure functions, fuzzed (fuzz/postgresql_reply_fuzzer.cc).
#ifndef LEASEHOLD_SRC_BACKENDS_POSTGRESQL_PG_ROWS_H_
#define LEASEHOLD_SRC_BACKENDS_POSTGRESQL_PG_ROWS_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "leasehold/clock.h"
#include "leasehold/status.h"
#include "pg_connection.h"

namespace leasehold::postgres {

// The longest TTL the store accepts (rows state it in milliseconds).
inline constexpr Duration kMaxTtl = std::chrono::hours(24);

inline int64_t CeilMs(Duration d) {
  return std::chrono::ceil<std::chrono::milliseconds>(d).count();
}

// A bigint column as the server sent it (text); nullopt when NULL or not a
// number (a column someone altered).
std::optional<int64_t> Int(const std::optional<std::string>& v);

// One lease row, judged so that what cannot be trusted never frees a lease
// early (an unreadable TTL waits the longest window) and never makes a
// sequence go backwards.
struct Row {
  std::optional<std::string> holder;  // nullopt when free
  int64_t sequence = 0;               // 0 when missing or not positive
  std::optional<Duration> ttl;        // as the row states it, when in (0, kMaxTtl]
  int64_t version = 0;
  int64_t acquired_ms = 0;  // Unix ms, 0 when missing or out of range
  int64_t renewed_ms = 0;
};

// The columns SchemaNames::select_row returns.
inline constexpr size_t kRowColumns = 6;

// The first row of `rows` (nullopt when there is none). kDataLoss naming
// `what` for a row of another shape or a version that is not an integer.
Result<std::optional<Row>> ParseRow(const Rows& rows, const std::string& what);

// A listing (SchemaNames::list_rows: a row's columns, then its name), sorted
// by name, bytewise. kDataLoss naming the row for one that ParseRow would
// refuse, or a NULL name.
Result<std::vector<std::pair<std::string, Row>>> ParseListing(const Rows& rows,
                                                              const std::string& what);

// Watch versions: "<row version>@<notifications heard before the read>".
std::string WatchVersion(int64_t version, uint64_t heard);
// Both parts; (nullopt, 0) for what this store did not make.
std::pair<std::optional<int64_t>, uint64_t> ParseWatchVersion(const std::string& v);

// Appends `element` to the inside of a PostgreSQL array literal ("a","b"),
// quoted and escaped: the server reads back exactly `element`.
void AppendArrayElement(std::string& array, std::string_view element);

}  // namespace leasehold::postgres

#endif  // LEASEHOLD_SRC_BACKENDS_POSTGRESQL_PG_ROWS_H_
