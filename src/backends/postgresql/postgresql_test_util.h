// Shared by the PostgreSQL backend's tests: one throwaway server per test
// process (started on first use, on the test's thread), a fresh table per
// user so that tests never see each other's rows, and a foreign writer that
// edits rows as another program (or a hostile user) would.
#ifndef LEASEHOLD_SRC_BACKENDS_POSTGRESQL_POSTGRESQL_TEST_UTIL_H_
#define LEASEHOLD_SRC_BACKENDS_POSTGRESQL_POSTGRESQL_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <string>

#include "leasehold/backends/postgresql.h"
#include "pg_server.h"

namespace leasehold::pg_test {

// The process's server; fails the test (nullptr) when it cannot start.
inline PgServer* SharedServer() {
  static std::unique_ptr<PgServer> server = [] {
    // Room for the conformance suite's 200 clients, each with a connection.
    auto s = PgServer::Start({.settings = {"max_connections=300"}});
    EXPECT_TRUE(s.ok()) << "cannot start PostgreSQL: " << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }();
  return server.get();
}

// PgBouncer (transaction pooling) in front of SharedServer(); nullptr (and
// the test fails) when it cannot start.
inline PgBouncer* SharedBouncer() {
  static std::unique_ptr<PgBouncer> bouncer = []() -> std::unique_ptr<PgBouncer> {
    PgServer* server = SharedServer();
    if (!server) return nullptr;
    auto b = PgBouncer::Start(*server);
    EXPECT_TRUE(b.ok()) << "cannot start PgBouncer: " << b.status().ToString();
    return b.ok() ? std::move(*b) : nullptr;
  }();
  return bouncer.get();
}

// A table name no other test of this process uses.
inline std::string FreshTable() {
  static std::atomic<int> next{0};
  return "lh_" + std::to_string(next++);
}

// SQL text literal.
inline std::string Lit(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

// Writes as a foreign program: `holder` takes `name` over with the next
// sequence of the fences table (as a well-behaved other client would).
inline bool ForeignTakeOver(const PgServer& server, const std::string& table,
                            const std::string& name, const std::string& holder,
                            int64_t ttl_ms = 60000) {
  auto r = server.Query(
      "WITH f AS (INSERT INTO " + table + "_fences (name, last) VALUES (" + Lit(name) +
      ", 1) ON CONFLICT (name) DO UPDATE SET last = " + table +
      "_fences.last + 1 RETURNING last) UPDATE " + table + " SET holder = " + Lit(holder) +
      ", sequence = (SELECT last FROM f), ttl_ms = " + std::to_string(ttl_ms) +
      ", version = version + 1 WHERE name = " + Lit(name) + " RETURNING sequence");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() && r->size() == 1;
}

inline bool ForeignDelete(const PgServer& server, const std::string& table,
                          const std::string& name) {
  auto r = server.Query("DELETE FROM " + table + " WHERE name = " + Lit(name));
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok();
}

}  // namespace leasehold::pg_test

#endif  // LEASEHOLD_SRC_BACKENDS_POSTGRESQL_POSTGRESQL_TEST_UTIL_H_
