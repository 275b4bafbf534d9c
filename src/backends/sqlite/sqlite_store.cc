#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include "kit/fair_mutex.h"
#include "kit/lease_label.h"
#include "kit/renew_batch.h"
#include "kit/sync_store.h"
#include "kit/watch_registry.h"
#include "leasehold/backends/sqlite.h"
#include "leasehold/clock.h"
#include "leasehold/detail/io.h"

namespace leasehold {
namespace {

// The longest TTL this store accepts. Records are written by other processes
// and may be broken or hostile; bounding what a legitimate record can say
// bounds how long a broken one can hold a lease.
constexpr Duration kMaxTtl = std::chrono::hours(1);

int64_t Ns(TimePoint t) { return t.time_since_epoch().count(); }
int64_t UnixMs(WallTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string ReadBootId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id.empty() ? "unknown-boot" : id;
}

// SQLite result code -> leasehold code: busy/locked/IO are worth retrying,
// a file that is not (our) database is data loss, the rest internal.
StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_FULL:
    case SQLITE_PROTOCOL:
      return StatusCode::kUnavailable;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_SCHEMA:
      return StatusCode::kDataLoss;
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
      return StatusCode::kPermissionDenied;
    default:
      return StatusCode::kInternal;
  }
}

// A prepared statement, reset on destruction of each use.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) {
    rc_ = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  int prepare_rc() const { return rc_; }
  sqlite3_stmt* get() { return stmt_; }

  // Binds the arguments (text, int64) and resets the statement.
  template <typename... Args>
  Stmt& Bind(const Args&... args) {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    int i = 0;
    (BindOne(++i, args), ...);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step() { return sqlite3_step(stmt_); }
  void Reset() { sqlite3_reset(stmt_); }

  bool IsNull(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  bool IsInt(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_INTEGER; }
  bool IsText(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_TEXT; }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) {
    const auto* p = sqlite3_column_text(stmt_, col);
    return p ? std::string(reinterpret_cast<const char*>(p), sqlite3_column_bytes(stmt_, col))
             : std::string();
  }

 private:
  void BindOne(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  }
  void BindOne(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void BindOne(int i, uint64_t v) { sqlite3_bind_int64(stmt_, i, static_cast<int64_t>(v)); }

  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

// One lease row as read, with its validity judged.
struct Row {
  bool exists = false;
  std::string holder;  // empty when free
  uint64_t sequence = 0;
  int64_t expires_ns = 0;
  int64_t ttl_ns = 0;
  int64_t acquired_ms = 0;
  int64_t renewed_ms = 0;
  int64_t version = 0;
  bool live = false;
};

// The turns of this process's connections to the database file at `path`:
// one FIFO lock per file (by device and inode), shared by every store of the
// process that opened it. SQLite's own lock between connections is taken by
// polling -- the busy handler sleeps up to 100 ms between tries -- so many
// stores of one process writing one file (the conformance suite's 200
// clients, a service with a store per component) starve each other past
// their renewal deadlines. Taking turns here, they queue fairly and only
// other processes meet the busy handler.
std::shared_ptr<kit::FairMutex> TurnsFor(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return std::make_shared<kit::FairMutex>();
  struct Registry {
    std::mutex mu;
    std::map<std::pair<dev_t, ino_t>, std::weak_ptr<kit::FairMutex>> turns;
  };
  static Registry* registry = new Registry;  // never destroyed: stores may outlive statics
  std::lock_guard lock(registry->mu);
  std::erase_if(registry->turns, [](const auto& entry) { return entry.second.expired(); });
  std::weak_ptr<kit::FairMutex>& slot = registry->turns[{st.st_dev, st.st_ino}];
  std::shared_ptr<kit::FairMutex> turns = slot.lock();
  if (!turns) {
    turns = std::make_shared<kit::FairMutex>();
    slot = turns;
  }
  return turns;
}

// The database connection and the store's operations on it.
struct State final : kit::SyncOps {
  State(std::shared_ptr<Runtime> rt, SqliteOptions o)
      : runtime(std::move(rt)),
        clock(runtime->clock()),
        options(std::move(o)),
        description("sqlite://" + options.path),
        boot_id(ReadBootId()) {}
  ~State() {
    select.reset();
    upsert.reset();
    next_sequence.reset();
    renew.reset();
    release.reset();
    break_lease.reset();
    if (db) sqlite3_close_v2(db);
  }

  const std::shared_ptr<Runtime> runtime;
  const Clock& clock;
  const SqliteOptions options;
  const std::string description;
  const std::string boot_id;
  std::string db_id;

  // One statement at a time on the connection, and one connection of this
  // process at a time on the file (TurnsFor).
  std::shared_ptr<kit::FairMutex> mu = std::make_shared<kit::FairMutex>();
  sqlite3* db = nullptr;
  std::unique_ptr<Stmt> select, upsert, next_sequence, renew, release, break_lease;

  // Watches, polled while any wait. poll_mu makes "register, start polling
  // if nobody does" atomic with "fire, stop polling if none is left".
  kit::WatchRegistry watchers;
  std::mutex poll_mu;
  bool polling = false;

  Status Error(const std::string& what, int rc) const {
    return Status(CodeFor(rc), description + ": " + what + ": " +
                                   (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)) + " (SQLite " +
                                   std::to_string(rc) + ")");
  }

  FencingToken Token(const std::string& name, uint64_t sequence) const {
    return {"sqlite/" + db_id + "/" + std::to_string(sequence) + "/" + name, sequence};
  }

  Status Exec(const std::string& sql, const std::string& what) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    sqlite3_free(err);
    return rc == SQLITE_OK ? Status::Ok() : Error(what, rc);
  }

  const std::string& describe() const noexcept override { return description; }

  // Fits the busy timeout to what is left of the call's deadline (the wait
  // for `mu` may have used some). kDeadlineExceeded if nothing is left.
  Status FitDeadline(const kit::SyncCall& call) {
    const Result<Duration> left = call.Left(clock, description);
    if (!left.ok()) return left.status();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::min(*left, options.busy_timeout));
    sqlite3_busy_timeout(db, static_cast<int>(std::max<int64_t>(1, ms.count())));
    return Status::Ok();
  }

  // The row `s` stands on, judged at `now_ns`. Columns: holder, sequence,
  // boot_id, renewed_ns, ttl_ns, acquired_ms, renewed_ms, version. A record
  // written by someone else may be broken or hostile: anything malformed
  // counts as free, never as held.
  Row Judge(Stmt& s, int64_t now_ns) const {
    Row row;
    row.exists = true;
    row.sequence = s.IsInt(1) && s.Int(1) > 0 ? static_cast<uint64_t>(s.Int(1)) : 0;
    row.version = s.IsInt(7) ? s.Int(7) : 0;
    row.acquired_ms = s.IsInt(5) ? s.Int(5) : 0;
    row.renewed_ms = s.IsInt(6) ? s.Int(6) : 0;
    const bool well_formed = s.IsText(0) && s.IsText(2) && s.IsInt(3) && s.IsInt(4);
    if (well_formed) {
      const int64_t renewed = s.Int(3);
      const int64_t ttl = s.Int(4);
      row.ttl_ns = ttl;
      row.holder = s.Text(0);
      // Same boot, written in the past (the clock is shared: a future time is
      // not a real write), a TTL this store could have accepted.
      const bool sane = s.Text(2) == boot_id && renewed <= now_ns && ttl > 0 &&
                        ttl <= kMaxTtl.count() && !row.holder.empty();
      row.expires_ns = sane ? renewed + ttl : 0;
      row.live = sane && now_ns < row.expires_ns;
    }
    if (!row.live) row.holder.clear();
    return row;
  }

  LeaseRecord Record(const std::string& name, const Row& row, int64_t now_ns) const {
    LeaseRecord record;
    record.name = name;
    record.holder = row.holder;
    record.token = Token(name, row.sequence);
    if (row.live) record.remaining = Duration(row.expires_ns - now_ns);
    record.acquired_at = WallTime(std::chrono::milliseconds(row.acquired_ms));
    record.renewed_at = WallTime(std::chrono::milliseconds(row.renewed_ms));
    record.version = std::to_string(row.version);
    return record;
  }

  // Reads and judges the row of `name`. REQUIRES: mu held.
  Result<Row> Read(const std::string& name, int64_t now_ns) {
    Stmt& s = *select;
    s.Bind(name);
    int rc = s.Step();
    Row row;
    if (rc == SQLITE_DONE) {
      s.Reset();
      return row;
    }
    if (rc != SQLITE_ROW) {
      s.Reset();
      return Error("read " + kit::LeaseLabel(name), rc);
    }
    row = Judge(s, now_ns);
    s.Reset();
    return row;
  }

  // Durability: only an acquire's commit must survive power loss (it
  // allocates a sequence, which must never be issued twice). A renewal,
  // release or break lost to power loss does not matter: the reboot changes
  // the boot id and frees every lease anyway, and a process crash alone loses
  // nothing in WAL mode. So acquires commit with synchronous=FULL (fsync) and
  // the rest with NORMAL; the next FULL commit makes everything before it
  // durable too.
  Status Durable(bool full) {
    if (full == sync_full) return Status::Ok();
    Status s = Exec(full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", "configure");
    if (s.ok()) sync_full = full;
    return s;
  }
  bool sync_full = false;

  Status EnableWal() {
    const TimePoint give_up = clock.Now() + options.busy_timeout;
    for (;;) {
      bool wal;
      {
        Stmt mode(db, "PRAGMA journal_mode");  // finalized before switching
        wal = mode.prepare_rc() == SQLITE_OK && mode.Step() == SQLITE_ROW && mode.Text(0) == "wal";
      }
      if (wal) return Durable(true);
      const int rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
      if (rc == SQLITE_OK) continue;  // verify
      if ((rc & 0xff) != SQLITE_BUSY || clock.Now() >= give_up) return Error("enable WAL", rc);
      // The busy handler is not consulted here: pause the way it would, in
      // SQLite's own VFS, then try again.
      sqlite3_sleep(2);
    }
  }

  Status Begin(const std::string& what) { return Exec("BEGIN IMMEDIATE", what); }
  Status Commit(const std::string& what) {
    Status s = Exec("COMMIT", what);
    if (!s.ok()) Rollback();
    return s;
  }
  void Rollback() { sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr); }

  Result<AcquireOutcome> Acquire(const AcquireRequest& q, kit::SyncCall& call) override {
    const std::string& what = call.what;
    if (q.ttl > kMaxTtl) {
      return InvalidArgumentError(description + ": " + what + ": TTL " + FormatDuration(q.ttl) +
                                  " exceeds this store's maximum of " + FormatDuration(kMaxTtl));
    }
    std::lock_guard lock(*mu);
    if (Status s = FitDeadline(call); !s.ok()) return s;
    if (Status s = Durable(true); !s.ok()) return s;
    if (Status s = Begin(what); !s.ok()) return s;
    const int64_t now = Ns(clock.Now());
    const int64_t wall = UnixMs(clock.WallNow());
    auto row = Read(q.name, now);
    if (!row.ok()) {
      Rollback();
      return row.status();
    }
    if (row->live && row->holder != q.holder) {
      Rollback();
      return AcquireOutcome(
          Contended{row->holder, std::to_string(row->version), Duration(row->expires_ns - now)});
    }
    uint64_t sequence = row->sequence;
    const bool ours = row->live;  // same holder: idempotent, counts as a renewal
    if (!ours) {
      // The sequence row only grows; the lease row's own sequence covers a
      // sequence table someone emptied by hand.
      Stmt& n = *next_sequence;
      n.Bind(q.name, static_cast<int64_t>(row->sequence));
      int rc = n.Step();
      if (rc != SQLITE_ROW) {
        n.Reset();
        Rollback();
        return Error(what, rc);
      }
      sequence = static_cast<uint64_t>(n.Int(0));
      n.Reset();
    }
    Stmt& u = *upsert;
    u.Bind(q.name, q.holder, static_cast<int64_t>(sequence), boot_id, now,
           static_cast<int64_t>(q.ttl.count()), ours ? row->acquired_ms : wall, wall,
           static_cast<int64_t>(ours ? 0 : 1));
    int rc = u.Step();
    u.Reset();
    if (rc != SQLITE_DONE) {
      Rollback();
      return Error(what, rc);
    }
    if (Status s = Commit(what); !s.ok()) return s;
    return AcquireOutcome(Acquired{Token(q.name, sequence), q.ttl, std::nullopt});
  }

  std::vector<Result<RenewOutcome>> Renew(const std::vector<RenewRequest>& batch,
                                          kit::SyncCall& call) override {
    const std::string& what = call.what;
    auto all = [&](const Status& s) { return kit::AllFailed(batch.size(), s); };
    std::lock_guard lock(*mu);
    if (Status s = FitDeadline(call); !s.ok()) return all(s);
    if (Status s = Durable(false); !s.ok()) return all(s);
    if (Status s = Begin(what); !s.ok()) return all(s);
    const int64_t now = Ns(clock.Now());
    const int64_t wall = UnixMs(clock.WallNow());
    std::vector<Result<RenewOutcome>> results;
    results.reserve(batch.size());
    for (const auto& q : batch) {
      auto row = Read(q.name, now);
      if (!row.ok()) {
        Rollback();
        return all(row.status());
      }
      if (!row->exists) {
        results.emplace_back(RenewOutcome(Lost{LossReason::kDeleted, "the record is gone"}));
        continue;
      }
      const bool same_tenure =
          row->sequence == q.token.sequence && Token(q.name, row->sequence) == q.token;
      if (!same_tenure || (row->live && row->holder != q.holder)) {
        results.emplace_back(RenewOutcome(Lost{
            LossReason::kTakenOver, "now at sequence " + std::to_string(row->sequence) +
                                        (row->live ? " held by \"" + row->holder + "\"" : "")}));
        continue;
      }
      if (!row->live) {
        // Never resurrect: expired (or released, or broken) in the store.
        results.emplace_back(RenewOutcome(Lost{LossReason::kExpired, "expired in the store"}));
        continue;
      }
      Stmt& r = *renew;
      r.Bind(now, static_cast<int64_t>(q.ttl.count()), wall, q.name);
      int rc = r.Step();
      r.Reset();
      if (rc != SQLITE_DONE) {
        Rollback();
        return all(Error(what, rc));
      }
      results.emplace_back(RenewOutcome(Renewed{q.ttl, std::nullopt}));
    }
    if (Status s = Commit(what); !s.ok()) return all(s);
    return results;
  }

  Status Release(const ReleaseRequest& q, kit::SyncCall& call) override {
    std::lock_guard lock(*mu);
    if (Status s = FitDeadline(call); !s.ok()) return s;
    if (q.token.sequence == 0 || Token(q.name, q.token.sequence) != q.token) {
      return Status::Ok();  // not a tenure of this database: nothing of ours
    }
    if (Status s = Durable(false); !s.ok()) return s;
    // Conditional on our tenure: one statement, atomic on its own.
    Stmt& r = *release;
    r.Bind(q.name, q.holder, static_cast<int64_t>(q.token.sequence));
    int rc = r.Step();
    r.Reset();
    return rc == SQLITE_DONE ? Status::Ok() : Error(call.what, rc);
  }

  Status Break(const std::string& name, kit::SyncCall& call) override {
    std::lock_guard lock(*mu);
    if (Status s = FitDeadline(call); !s.ok()) return s;
    Stmt& b = *break_lease;
    b.Bind(name);
    const int rc = b.Step();
    b.Reset();
    return rc == SQLITE_DONE ? Status::Ok() : Error(call.what, rc);
  }

  Result<LeaseRecord> Inspect(const std::string& name, kit::SyncCall& call) override {
    std::lock_guard lock(*mu);
    if (Status s = FitDeadline(call); !s.ok()) return s;
    const int64_t now = Ns(clock.Now());
    auto row = Read(name, now);
    if (!row.ok()) return row.status();
    if (!row->exists)
      return NotFoundError(description + ": " + kit::LeaseLabel(name) + ": no record");
    return Record(name, *row, now);
  }

  // Rows from `prefix` on, in name order (the primary key's), until the
  // first that does not start with it.
  Result<std::vector<LeaseRecord>> List(const std::string& prefix, kit::SyncCall& call) override {
    std::lock_guard lock(*mu);
    if (Status s = FitDeadline(call); !s.ok()) return s;
    const int64_t now = Ns(clock.Now());
    // A range scan of the primary key from the prefix on, stopped at the
    // first name past it. The column's TEXT affinity turns numbers into text;
    // a blob (hand-written) sorts after all text and fails a listing that
    // reaches it rather than being skipped.
    Stmt list(db,
              "SELECT holder, sequence, boot_id, renewed_ns, ttl_ns, acquired_ms, renewed_ms,"
              " version, name FROM leasehold_leases WHERE name >= ?1 ORDER BY name");
    if (list.prepare_rc() != SQLITE_OK) return Error(call.what, list.prepare_rc());
    list.Bind(prefix);
    std::vector<LeaseRecord> records;
    int rc;
    while ((rc = list.Step()) == SQLITE_ROW) {
      // The type before Text(), which converts the value in place.
      const bool text = list.IsText(8);
      const std::string name = list.Text(8);
      if (!name.starts_with(prefix)) break;
      if (!text) {
        list.Reset();
        return DataLossError(description + ": " + call.what +
                             ": leasehold_leases has a row whose name is not text");
      }
      records.push_back(Record(name, Judge(list, now), now));
    }
    list.Reset();
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error(call.what, rc);
    return records;
  }

  // The versions of watched names that changed (or whose record is no longer
  // live) since the watcher's observation; fires and removes those watchers.
  void Poll() {
    const std::vector<kit::WatchRegistry::Watcher> snapshot = watchers.Snapshot();
    std::vector<WatchId> fire;
    {
      std::lock_guard lock(*mu);
      const int64_t now = Ns(clock.Now());
      for (const auto& w : snapshot) {
        auto row = Read(w.name, now);
        // A read error counts as a change: the waiter retries and hears it.
        if (!row.ok() || !row->live || std::to_string(row->version) != w.version) {
          fire.push_back(w.id);
        }
      }
    }
    kit::WatchRegistry::Firing firing;
    bool more;
    {
      std::lock_guard lock(poll_mu);
      firing = watchers.Take(fire);
      more = !watchers.empty();
      polling = more;
    }
    firing.Run();
    if (more) SchedulePoll();
  }

  void CancelWatch(WatchId id) noexcept { watchers.Cancel(id); }

  WatchId Watch(const std::string& name, const std::string& version, Task on_change) {
    WatchId id;
    bool start;
    {
      std::lock_guard lock(poll_mu);
      id = watchers.Add(name, version, std::move(on_change));
      start = !std::exchange(polling, true);
    }
    if (start) SchedulePoll();
    return id;
  }

  void SchedulePoll();
  std::weak_ptr<State> self;
};

void State::SchedulePoll() {
  runtime->RunAt(clock.Now() + options.poll_interval, [weak = self] {
    auto s = weak.lock();
    if (!s) return;
    s->runtime->PostBlocking([weak] {
      if (auto s = weak.lock()) s->Poll();
    });
  });
}

}  // namespace

Result<std::shared_ptr<SqliteStore>> SqliteStore::Open(SqliteOptions options,
                                                       std::shared_ptr<Runtime> runtime) {
  if (options.path.empty() || options.path.front() != '/') {
    return InvalidArgumentError("sqlite store: the database path must be absolute (got \"" +
                                options.path + "\")");
  }
  if (options.busy_timeout <= Duration::zero() || options.poll_interval <= Duration::zero()) {
    return InvalidArgumentError("sqlite store: busy_timeout and poll_interval must be > 0");
  }
  if (!runtime) runtime = Runtime::Default();
  auto state = std::make_shared<State>(runtime, options);
  state->self = state;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  int rc = sqlite3_open_v2(options.path.c_str(), &state->db, flags, nullptr);
  if (rc != SQLITE_OK) return state->Error("open", rc);
  state->mu = TurnsFor(options.path);
  sqlite3_extended_result_codes(state->db, 1);
  sqlite3_busy_timeout(
      state->db,
      static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(options.busy_timeout).count()));
  // WAL: readers never block the writer; FULL: a committed sequence survives
  // power loss, so a sequence is never issued twice.
  // WAL: readers never block the writer. Already WAL (every open but the
  // first): nothing to do -- switching needs an exclusive moment, and several
  // processes opening a fresh file at once can see BUSY here without the busy
  // handler being consulted, so retry within the busy timeout.
  if (Status s = state->EnableWal(); !s.ok()) return s;
  // An existing leasehold database needs no write lock to open: read its id
  // first, and create the schema only when it is missing.
  auto read_id = [&state]() -> std::optional<std::string> {
    Stmt get(state->db, "SELECT value FROM leasehold_meta WHERE key = 'id'");
    if (get.prepare_rc() != SQLITE_OK || get.Step() != SQLITE_ROW || !get.IsText(0)) {
      return std::nullopt;
    }
    return get.Text(0);
  };
  std::optional<std::string> id = read_id();
  if (!id) {
    if (Status s = state->Exec(
            "BEGIN IMMEDIATE;"
            "CREATE TABLE IF NOT EXISTS leasehold_meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "CREATE TABLE IF NOT EXISTS leasehold_sequences(name TEXT PRIMARY KEY, last INTEGER "
            "NOT NULL);"
            "CREATE TABLE IF NOT EXISTS leasehold_leases(name TEXT PRIMARY KEY, holder TEXT,"
            " sequence INTEGER NOT NULL, boot_id TEXT, renewed_ns INTEGER, ttl_ns INTEGER,"
            " acquired_ms INTEGER, renewed_ms INTEGER, version INTEGER NOT NULL DEFAULT 0);"
            "INSERT OR IGNORE INTO leasehold_meta(key, value) VALUES('id', '" +
                detail::RandomHexId() +
                "');"
                "COMMIT;",
            "create the schema");
        !s.ok()) {
      state->Rollback();
      return s;
    }
    id = read_id();
    if (!id) return DataLossError(state->description + ": leasehold_meta has no readable id");
  }
  state->db_id = *id;
  struct Prepared {
    std::unique_ptr<Stmt>& slot;
    const char* sql;
  };
  for (const Prepared& p : std::initializer_list<Prepared>{
           {state->select,
            "SELECT holder, sequence, boot_id, renewed_ns, ttl_ns, acquired_ms, renewed_ms, version"
            " FROM leasehold_leases WHERE name = ?1"},
           {state->next_sequence,
            "INSERT INTO leasehold_sequences(name, last) VALUES(?1, ?2 + 1)"
            " ON CONFLICT(name) DO UPDATE SET last = max(last, ?2) + 1 RETURNING last"},
           {state->upsert,
            "INSERT INTO leasehold_leases(name, holder, sequence, boot_id, renewed_ns, ttl_ns,"
            " acquired_ms, renewed_ms, version) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1)"
            " ON CONFLICT(name) DO UPDATE SET holder = ?2, sequence = ?3, boot_id = ?4,"
            " renewed_ns = ?5, ttl_ns = ?6, acquired_ms = ?7, renewed_ms = ?8,"
            " version = version + ?9"},
           {state->renew,
            "UPDATE leasehold_leases SET renewed_ns = ?1, ttl_ns = ?2, renewed_ms = ?3"
            " WHERE name = ?4"},
           {state->release,
            "UPDATE leasehold_leases SET holder = NULL, version = version + 1"
            " WHERE name = ?1 AND holder = ?2 AND sequence = ?3"},
           {state->break_lease,
            "UPDATE leasehold_leases SET holder = NULL, version = version + 1"
            " WHERE name = ?1 AND holder IS NOT NULL"},
       }) {
    p.slot = std::make_unique<Stmt>(state->db, p.sql);
    if (p.slot->prepare_rc() != SQLITE_OK) {
      return state->Error("prepare statements (not a leasehold database?)", p.slot->prepare_rc());
    }
  }
  return std::shared_ptr<SqliteStore>(
      new kit::WatchingSyncStore<SqliteStore, State>(std::move(runtime), std::move(state)));
}

}  // namespace leasehold
