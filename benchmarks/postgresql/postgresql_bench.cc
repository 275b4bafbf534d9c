// postgresql_bench: the measurements of benchmarks/postgresql/run against one
// PostgreSQL server. CONNINFO is a libpq connection string.
//
//   postgresql_bench cycle CONNINFO OPS    leasehold acquire+release cycles
//                                     (AcquireWithToken + Release) interleaved
//                                     with the raw floor: the store's own
//                                     statements (SchemaNames::For) sent bare
//                                     through libpq in pipeline mode, one Sync
//                                     per operation, as the store sends them;
//                                     prints both p50/p99 in microseconds
//   postgresql_bench handoff CONNINFO ROUNDS  holder releases -> waiting
//                                     contender (woken by LISTEN/NOTIFY) holds
//   postgresql_bench hold CONNINFO NAME TTL_S   acquires, prints "held", sleeps
//                                     until killed
//   postgresql_bench wait CONNINFO NAME TTL_S   waits for the lease; prints the
//                                     wall-clock time (ns since the epoch) when
//                                     it holds it
//   postgresql_bench many CONNINFO COUNT TTL_S WINDOW_S   holds COUNT leases
//                                     through one store; prints CPU % of one
//                                     core over WINDOW_S at steady state, the
//                                     renewals the store was asked for (client
//                                     count) and the server's commits and
//                                     updated rows (pg_stat_*) in the window
//   postgresql_bench renew-floor CONNINFO ROWS BATCHES_PER_S PER_BATCH WINDOW_S
//                                     the CPU floor of `many`: bare libpq sends
//                                     the store's renewal UPDATE for ROWS rows
//                                     of its own, PER_BATCH rows per UPDATE,
//                                     BATCHES_PER_S pipelines a second, from one
//                                     thread; prints CPU % of one core
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "../store_bench.h"
#include "leasehold/backends/postgresql.h"
#include "leasehold/forwarding_store.h"
#include "leasehold/lease.h"
#include "pg_rows.h"    // the store's array literals, for the floor
#include "pg_schema.h"  // the store's exact SQL text, for the floor

namespace {

using namespace std::chrono_literals;
using leasehold::Duration;
using SteadyClock = std::chrono::steady_clock;
using leasehold::bench::Check;
using leasehold::bench::CpuSeconds;
using leasehold::bench::Die;
using leasehold::bench::NewLease;
using leasehold::bench::Percentile;

// Where the store keeps its rows (PostgresOptions' defaults).
constexpr const char* kSchema = "public";
constexpr const char* kTable = "leasehold_leases";

std::shared_ptr<leasehold::PostgresStore> OpenStore(const std::string& conninfo,
                                                    const std::shared_ptr<leasehold::Runtime>& rt,
                                                    bool share_observations = true) {
  auto s = leasehold::PostgresStore::Open(
      {.conninfo = conninfo, .share_observations = share_observations}, rt);
  if (!s.ok()) Die(s.status().ToString());
  return *s;
}

// A blocking libpq connection of the benchmark's own.
class RawConnection {
 public:
  explicit RawConnection(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
    if (PQstatus(conn_) != CONNECTION_OK) Die(std::string("connect: ") + PQerrorMessage(conn_));
  }
  ~RawConnection() { PQfinish(conn_); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  // One pipeline: every statement, one Sync, every result read up to the
  // Sync -- one round trip and one implicit transaction, as the store's
  // Connection::Run. Returns the first row's first column of each statement
  // ("" when it returned no row).
  std::vector<std::string> Pipeline(
      const std::vector<std::pair<const std::string*, std::vector<const char*>>>& statements) {
    Check(PQenterPipelineMode(conn_) == 1, "enter pipeline mode");
    for (const auto& [sql, params] : statements) {
      Check(PQsendQueryParams(conn_, sql->c_str(), static_cast<int>(params.size()), nullptr,
                              params.data(), nullptr, nullptr, 0) == 1,
            "send");
    }
    Check(PQpipelineSync(conn_) == 1, "sync");
    std::vector<std::string> out;
    for (;;) {
      PGresult* r = PQgetResult(conn_);
      if (!r) {  // the end of one statement's results
        Check(PQstatus(conn_) == CONNECTION_OK, "connection");
        continue;
      }
      const ExecStatusType st = PQresultStatus(r);
      if (st == PGRES_PIPELINE_SYNC) {
        PQclear(r);
        break;
      }
      if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
        Die(std::string("statement: ") + PQresultErrorMessage(r));
      }
      out.emplace_back(PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
      PQclear(r);
    }
    Check(PQexitPipelineMode(conn_) == 1, "exit pipeline mode");
    Check(out.size() == statements.size(), "one result per statement");
    return out;
  }

  // One simple-protocol query returning one number.
  int64_t Number(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
      Die(sql + ": " + PQresultErrorMessage(r));
    }
    const int64_t v = PQgetisnull(r, 0, 0) ? 0 : std::atoll(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
  }

 private:
  PGconn* conn_;
};

// The floor: what the store sends for one acquire of a free row (the
// transaction's statement_timeout, the compare-and-swap UPDATE, the row's
// SELECT and the contender's `want`, in one pipeline) and one release (the
// statement_timeout and one UPDATE), bare, on a connection of its own.
class RawFloor {
 public:
  RawFloor(const std::string& conninfo, const leasehold::postgres::SchemaNames& names)
      : conn_(conninfo), names_(names) {
    // The row must exist (the store inserts it on a name's first acquire).
    const std::vector<std::string> got =
        conn_.Pipeline({{&names_.insert, {kName, kHolder, kTtlMs, names_.channel.c_str()}}});
    if (!got[0].empty()) Check(Release(got[0]), "raw release of the new row");
  }

  bool Cycle() {
    const std::vector<std::string> acquired = conn_.Pipeline(
        {{&names_.set_timeout, {kTimeoutMs}},
         {&names_.acquire, {kName, kHolder, kTtlMs, nullptr, names_.channel.c_str()}},
         {&names_.select_row, {kName}},
         {&names_.want, {kName, kHolder}}});
    return !acquired[1].empty() && Release(acquired[1]);
  }

 private:
  static constexpr const char* kName = "raw-floor";
  static constexpr const char* kHolder = "raw#floor";
  static constexpr const char* kTtlMs = "10000";
  static constexpr const char* kTimeoutMs = "10000";

  bool Release(const std::string& sequence) {
    const std::vector<std::string> released = conn_.Pipeline(
        {{&names_.set_timeout, {kTimeoutMs}},
         {&names_.release, {kName, kHolder, sequence.c_str(), names_.channel.c_str()}}});
    return released.size() == 2;
  }

  RawConnection conn_;
  const leasehold::postgres::SchemaNames& names_;
};

int Cycle(const std::string& conninfo, int ops) {
  auto rt = leasehold::Runtime::Create();
  auto lease = NewLease(OpenStore(conninfo, rt), "cycle", "bench", 10s);
  auto names = leasehold::postgres::SchemaNames::For(kSchema, kTable);
  if (!names.ok()) Die(names.status().ToString());
  RawFloor raw(conninfo, *names);
  return leasehold::bench::CycleAgainstFloor(
      *lease, [&raw] { return raw.Cycle(); }, ops);
}

int Handoff(const std::string& conninfo, int rounds) {
  auto rt = leasehold::Runtime::Create();
  // Two stores that share nothing, as two processes would.
  return leasehold::bench::Handoff(OpenStore(conninfo, rt, false), OpenStore(conninfo, rt, false),
                                   rounds);
}

using leasehold::bench::CountingStore;

int Many(const std::string& conninfo, int count, int ttl_s, int window_s) {
  auto rt = leasehold::Runtime::Create();
  auto store = std::make_shared<CountingStore>(OpenStore(conninfo, rt));
  auto leases = leasehold::bench::AcquireMany(store, count, std::chrono::seconds(ttl_s));
  // Every lease renews at least once before the window starts.
  std::this_thread::sleep_for(std::chrono::seconds(ttl_s) / 2);
  // The server's view, read on a connection of our own (its two queries per
  // read are in the counts, and in our CPU: negligible).
  RawConnection stats(conninfo);
  auto server = [&stats] {
    return std::pair{stats.Number("SELECT xact_commit FROM pg_stat_database"
                                  " WHERE datname = current_database()"),
                     stats.Number(std::string("SELECT n_tup_upd FROM pg_stat_user_tables"
                                              " WHERE schemaname = '") +
                                  kSchema + "' AND relname = '" + kTable + "'")};
  };
  const auto [commits0, updates0] = server();
  const uint64_t batches0 = store->batches, renewals0 = store->renewals;
  const double c0 = CpuSeconds();
  const auto t0 = SteadyClock::now();
  std::printf("steady\n");
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(window_s));
  const double cpu = CpuSeconds() - c0;
  const double wall = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  const uint64_t batches = store->batches - batches0, renewals = store->renewals - renewals0;
  // A busy backend publishes its counts about once a second, so both reads
  // lag by up to a second: the difference still spans one window.
  const auto [commits1, updates1] = server();
  int alive = 0;
  for (auto& l : leases) alive += l->CheckAlive() ? 1 : 0;
  std::printf(
      "alive %d\ncpu_percent %.2f\nwindow_s %.2f\nrenew_batches %llu\nrenewals %llu\n"
      "server_commits %lld\nserver_rows_updated %lld\n",
      alive, 100.0 * cpu / wall, wall, static_cast<unsigned long long>(batches),
      static_cast<unsigned long long>(renewals), static_cast<long long>(commits1 - commits0),
      static_cast<long long>(updates1 - updates0));
  std::fflush(stdout);
  return alive == count ? 0 : 1;
}

int RenewFloor(const std::string& conninfo, int rows, double batches_per_s, int per_batch,
               int window_s) {
  auto names = leasehold::postgres::SchemaNames::For(kSchema, kTable);
  if (!names.ok()) Die(names.status().ToString());
  RawConnection conn(conninfo);
  const char* holder = "floor#renew";
  const char* ttl_ms = "15000";
  std::vector<std::string> name(static_cast<size_t>(rows)), sequence(name.size());
  for (int i = 0; i < rows; ++i) name[static_cast<size_t>(i)] = "renew-floor/" + std::to_string(i);
  // The rows, held by us: the store's own insert, 500 to a pipeline.
  for (size_t i = 0; i < name.size(); i += 500) {
    std::vector<std::pair<const std::string*, std::vector<const char*>>> batch;
    for (size_t k = i; k < std::min(name.size(), i + 500); ++k) {
      batch.push_back({&names->insert, {name[k].c_str(), holder, ttl_ms, names->channel.c_str()}});
    }
    const std::vector<std::string> got = conn.Pipeline(batch);
    for (size_t k = 0; k < got.size(); ++k) {
      Check(!got[k].empty(), "insert of a floor row (rows left from an earlier run?)");
      sequence[i + k] = got[k];
    }
  }
  const auto period = std::chrono::duration_cast<SteadyClock::duration>(
      std::chrono::duration<double>(1.0 / batches_per_s));
  size_t next = 0;
  uint64_t renewals = 0;
  const double c0 = CpuSeconds();
  const auto t0 = SteadyClock::now();
  for (auto tick = t0 + period; tick < t0 + std::chrono::seconds(window_s); tick += period) {
    std::this_thread::sleep_until(tick);
    // As the store: one UPDATE for the batch, its rows as arrays.
    std::string names_array, holders, sequences, ttls;
    for (int k = 0; k < per_batch; ++k, next = (next + 1) % name.size()) {
      leasehold::postgres::AppendArrayElement(names_array, name[next]);
      leasehold::postgres::AppendArrayElement(holders, holder);
      leasehold::postgres::AppendArrayElement(sequences, sequence[next]);
      leasehold::postgres::AppendArrayElement(ttls, ttl_ms);
    }
    const std::string a = "{" + names_array + "}", h = "{" + holders + "}",
                      q = "{" + sequences + "}", t = "{" + ttls + "}";
    const std::vector<std::string> got = conn.Pipeline(
        {{&names->set_timeout, {"5000"}},
         {&names->renew, {a.c_str(), h.c_str(), q.c_str(), t.c_str(), names->channel.c_str()}}});
    Check(!got[1].empty(), "renewal");
    renewals += static_cast<uint64_t>(per_batch);
  }
  const double cpu = CpuSeconds() - c0;
  const double wall = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  std::printf("floor_renewals_per_s %.1f\nfloor_cpu_percent %.2f\n",
              static_cast<double>(renewals) / wall, 100.0 * cpu / wall);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  using Args = std::vector<std::string>;
  return leasehold::bench::Main(
      argc, argv, "postgresql_bench", "CONNINFO",
      {{"cycle", 1, [](const std::string& t, const Args& a) { return Cycle(t, std::stoi(a[0])); }},
       {"handoff", 1,
        [](const std::string& t, const Args& a) { return Handoff(t, std::stoi(a[0])); }},
       {"many", 3,
        [](const std::string& t, const Args& a) {
          return Many(t, std::stoi(a[0]), std::stoi(a[1]), std::stoi(a[2]));
        }},
       {"renew-floor", 4,
        [](const std::string& t, const Args& a) {
          return RenewFloor(t, std::stoi(a[0]), std::stod(a[1]), std::stoi(a[2]), std::stoi(a[3]));
        }}},
      [](const std::string& t, std::shared_ptr<leasehold::Runtime> rt)
          -> std::shared_ptr<leasehold::Store> { return OpenStore(t, rt); });
}
