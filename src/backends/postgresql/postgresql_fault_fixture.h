// The fixture and helpers of the PostgreSQL store's fault tests
// (postgresql_fault_*_test.cc): each test's own throwaway server, a sampler
// that checks two holders never both believe they hold the lease, a log of
// OnLost deliveries, a store that records how each renewal ended, and a
// polling contender.
#ifndef LEASEHOLD_SRC_BACKENDS_POSTGRESQL_POSTGRESQL_FAULT_FIXTURE_H_
#define LEASEHOLD_SRC_BACKENDS_POSTGRESQL_POSTGRESQL_FAULT_FIXTURE_H_

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "conformance/fault_store.h"
#include "leasehold/backends/postgresql.h"
#include "leasehold/backends/postgresql_fence.h"
#include "leasehold/forwarding_store.h"
#include "leasehold/future.h"
#include "leasehold/lease.h"
#include "postgresql_test_util.h"
#include "testing/sanitizers.h"
#include "testing/tenure_probe.h"

namespace leasehold::pg_test {

using namespace std::chrono_literals;
using leasehold::testing::kSanitized;

// A short TTL for the tests that wait for a loss or a takeover (as the
// conformance suite's real-time runs), a longer one for the restart.
constexpr Duration kTtl = kSanitized ? Duration(2s) : Duration(1s);
constexpr Duration kRestartTtl = 3s;
// How late after its deadline an OnLost may run.
constexpr Duration kSlack = kSanitized ? Duration(500ms) : Duration(250ms);
constexpr char kName[] = "job";

using leasehold::testing::Eventually;
using leasehold::testing::Ms;

// A raw libpq session: a foreign transaction, or the connection of a fenced
// write.
struct PqFinish {
  void operator()(PGconn* c) const noexcept { PQfinish(c); }
};
using PgConn = std::unique_ptr<PGconn, PqFinish>;

inline PgConn Connect(const std::string& conninfo) {
  PgConn conn(PQconnectdb(conninfo.c_str()));
  EXPECT_EQ(PQstatus(conn.get()), CONNECTION_OK) << PQerrorMessage(conn.get());
  return conn;
}

// Runs `sql`: OK, or the server's message with its SQLSTATE.
inline Status Exec(PGconn* conn, const std::string& sql) {
  PGresult* r = PQexec(conn, sql.c_str());
  const ExecStatusType st = PQresultStatus(r);
  Status out;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    out = InternalError(std::string(PQerrorMessage(conn)) + " (SQLSTATE " +
                        (state ? state : "none") + ")");
  }
  PQclear(r);
  return out;
}

using leasehold::testing::LossLog;
using leasehold::testing::RecordingStore;

class PostgresFaultTest : public ::testing::Test {
 protected:
  void TearDown() override {
    StopSampler();
    holder_lost_sub_.Unsubscribe();
    leases_.clear();
    stores_.clear();
    recorders_.clear();
  }

  void StartServer(PgServerOptions options = {}) {
    const auto start = std::chrono::steady_clock::now();
    auto s = PgServer::Start(std::move(options));
    ASSERT_TRUE(s.ok()) << "cannot start PostgreSQL: " << s.status().ToString();
    server_ = std::move(s).value();
    std::printf("[ server  ] started on port %d in %s\n", server_->port(),
                Ms(std::chrono::steady_clock::now() - start).c_str());
  }

  // The conninfo of a client "process" whose sessions are named `app`.
  std::string Conninfo(const std::string& app) const {
    return server_->user_conninfo() + " application_name=" + app;
  }
  // The superuser in the leases' database, for foreign transactions.
  std::string SuperuserConninfo(const std::string& app) const {
    return "host=127.0.0.1 port=" + std::to_string(server_->port()) +
           " dbname=leasehold user=postgres application_name=" + app;
  }

  // A store of its own (as another process would have), whose sessions carry
  // application_name `app`, behind a RecordingStore.
  RecordingStore* OpenStore(const std::string& app) {
    PostgresOptions o;
    o.conninfo = Conninfo(app);
    o.table = table_;
    o.connect_timeout = 2s;
    auto store = PostgresStore::Open(o, runtime_);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok()) return nullptr;
    stores_.push_back(*store);
    recorders_.push_back(std::make_shared<RecordingStore>(*store));
    return recorders_.back().get();
  }

  Lease* NewLease(std::shared_ptr<Store> store, const std::string& owner, Duration ttl,
                  Duration request_timeout = Duration::zero()) {
    auto lease = Lease::Create(std::move(store), {.name = kName,
                                                  .owner = owner,
                                                  .ttl = ttl,
                                                  .request_timeout = request_timeout,
                                                  .retry_delay = 50ms});
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    if (!lease.ok()) return nullptr;
    leases_.push_back(std::move(*lease));
    return leases_.back().get();
  }
  Lease* NewLease(RecordingStore* store, const std::string& owner, Duration ttl,
                  Duration request_timeout = Duration::zero()) {
    for (auto& r : recorders_) {
      if (r.get() == store) return NewLease(std::shared_ptr<Store>(r), owner, ttl, request_timeout);
    }
    ADD_FAILURE() << "no such store";
    return nullptr;
  }

  std::optional<FencingToken> AcquireNow(Lease& l) {
    // Three attempts: the first may have to connect (a new server process and
    // a login), which on a loaded machine can outlast one attempt's budget.
    auto t = l.AcquireWithToken({.attempts = 3});
    EXPECT_TRUE(t.ok()) << l.identity() << ": " << t.status().ToString();
    if (!t.ok()) return std::nullopt;
    EXPECT_TRUE(t->has_value()) << l.identity() << ": contended";
    return *t;
  }

  // The row as the server has it: {holder, sequence}.
  std::pair<std::string, std::string> Row() {
    auto r =
        server_->Query("SELECT holder, sequence FROM " + table_ + " WHERE name = " + Lit(kName));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok() || r->size() != 1) return {};
    return {(*r)[0][0], (*r)[0][1]};
  }

  // The row's version (-1 if it cannot be read).
  int64_t Version() {
    auto r = server_->Query("SELECT version FROM " + table_ + " WHERE name = " + Lit(kName));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() && r->size() == 1 ? std::stoll((*r)[0][0]) : -1;
  }

  // The overlap sampler (testing/tenure_probe.h).
  void Sample(Lease& l) { sampler_.Sample(l); }
  void StartSampler() { sampler_.Start(); }
  void StopSampler() { sampler_.Stop(); }
  TimePoint LatestDeadline(Lease& l) { return sampler_.LatestDeadline(l); }
  int overlaps() { return sampler_.overlaps(); }
  std::string overlap_report() { return sampler_.overlap_report(); }

  // Asserts that `l` lost its tenure exactly once, as `reason`, on time.
  void ExpectLostOnTime(Lease& l, LossLog& losses, LossReason reason) {
    testing::ExpectLostOnTime(sampler_, l, losses, reason, kTtl, kSlack);
  }

  TimePoint Now() const { return runtime_->clock().Now(); }

  // The opening most fault tests share: a server; a holder (store
  // "holder", lease owner "h") holding the lease, its losses logged in
  // holder_losses_; a second party (store `other`, owner other's first
  // letter) beside it with the same TTL; both sampled for overlaps.
  struct Scene {
    RecordingStore* hs = nullptr;
    RecordingStore* os = nullptr;
    Lease* h = nullptr;
    Lease* o = nullptr;
    std::optional<FencingToken> th;  // the holder's tenure
  };
  void OpenScene(const std::string& other, Scene& scene, PgServerOptions options = {},
                 Duration ttl = kTtl) {
    ASSERT_NO_FATAL_FAILURE(StartServer(std::move(options)));
    scene.hs = OpenStore("holder");
    scene.os = OpenStore(other);
    ASSERT_TRUE(scene.hs && scene.os);
    scene.h = NewLease(scene.hs, "h", ttl);
    scene.o = NewLease(scene.os, other.substr(0, 1), ttl);
    ASSERT_TRUE(scene.h && scene.o);
    holder_lost_sub_ = scene.h->OnLost(holder_losses_.Handler());
    scene.th = AcquireNow(*scene.h);
    ASSERT_TRUE(scene.th.has_value());
    Sample(*scene.h);
    Sample(*scene.o);
    StartSampler();
  }

  std::unique_ptr<PgServer> server_;
  std::shared_ptr<Runtime> runtime_ = Runtime::Create();
  const std::string table_ = pg_test::FreshTable();
  std::vector<std::shared_ptr<PostgresStore>> stores_;
  std::vector<std::shared_ptr<RecordingStore>> recorders_;
  std::vector<std::unique_ptr<Lease>> leases_;
  testing::TenureSampler sampler_;
  LossLog holder_losses_{runtime_->clock()};  // OpenScene's holder's
  Subscription holder_lost_sub_;
};

// A contender that tries a non-waiting acquire every 20 ms until it wins or
// is stopped, and notes whether the holder still believed it held the lease
// at that moment.
class Poller {
 public:
  Poller(Lease& contender, Lease& holder) {
    thread_ = std::jthread([this, &contender, &holder](std::stop_token stop) {
      while (!stop.stop_requested()) {
        auto r = contender.Acquire({.attempts = 1});
        if (r.ok() && *r) {
          holder_alive_ = holder.CheckAlive();
          won_ = true;
          return;
        }
        if (!r.ok()) ++errors_;
        std::this_thread::sleep_for(20ms);
      }
    });
  }
  void Stop() {
    thread_.request_stop();
    thread_.join();
  }
  bool won() const { return won_.load(); }
  bool holder_alive_when_won() const { return holder_alive_.load(); }
  int errors() const { return errors_.load(); }

 private:
  std::atomic<bool> won_{false};
  std::atomic<bool> holder_alive_{false};
  std::atomic<int> errors_{0};
  std::jthread thread_;
};

}  // namespace leasehold::pg_test

#endif  // LEASEHOLD_SRC_BACKENDS_POSTGRESQL_POSTGRESQL_FAULT_FIXTURE_H_
