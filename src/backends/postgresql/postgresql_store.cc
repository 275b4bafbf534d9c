#include <algorithm>
#include <limits>
#include <mutex>
#include <optional>
#include <vector>

#include "kit/fair_mutex.h"
#include "kit/lease_label.h"
#include "kit/notified_watches.h"
#include "kit/observations.h"
#include "kit/renew_batch.h"
#include "kit/sync_store.h"
#include "kit/watch_registry.h"
#include "leasehold/backends/postgresql.h"
#include "leasehold/detail/io.h"
#include "pg_connection.h"
#include "pg_listener.h"
#include "pg_rows.h"
#include "pg_schema.h"

namespace leasehold {
namespace {

using postgres::CeilMs;
using postgres::Int;
using postgres::kMaxTtl;
using postgres::ParseRow;
using postgres::ParseWatchVersion;
using postgres::Row;
using postgres::Rows;
using postgres::Statement;
using postgres::WatchVersion;

std::string Str(int64_t v) { return std::to_string(v); }

struct State final : kit::SyncOps {
  State(std::shared_ptr<Runtime> rt, PostgresOptions o, std::string describe,
        postgres::SchemaNames n)
      : runtime(std::move(rt)),
        clock(runtime->clock()),
        options(std::move(o)),
        description(std::move(describe)),
        names(std::move(n)),
        book(kit::ObservationBook::For(options.share_observations, runtime)),
        book_prefix(description + "|" + names.table + "|"),
        conn(options.conninfo, description, clock, options.connect_timeout) {}

  ~State() {
    std::unique_ptr<postgres::Listener> l;
    {
      std::lock_guard lock(listener_mu);
      l = std::move(listener);
    }
    l.reset();  // joins its thread
  }

  const std::shared_ptr<Runtime> runtime;
  const Clock& clock;
  const PostgresOptions options;
  const std::string description;
  const postgres::SchemaNames names;
  const std::shared_ptr<kit::ObservationBook> book;
  const std::string book_prefix;
  std::string store_id;  // the schema's random id: in every token

  // One statement connection, one pipeline at a time, in the order asked
  // (fair: renewals never starve behind a stream of acquires).
  kit::FairMutex mu;
  postgres::Connection conn;

  // Waiting: woken by the listener's notifications, polled while deaf.
  kit::NotifiedWatches watches{runtime};
  std::mutex listener_mu;
  std::unique_ptr<postgres::Listener> listener;
  std::weak_ptr<State> self;

  const std::string& describe() const noexcept override { return description; }

  std::string What(const std::string& name) const {
    return description + ": " + kit::LeaseLabel(name);
  }

  FencingToken Token(const std::string& name, int64_t sequence) const {
    return {"postgresql/" + store_id + "/" + Str(sequence) + "/" + name,
            static_cast<uint64_t>(sequence)};
  }
  bool OurToken(const std::string& name, const FencingToken& token) const {
    return token.sequence > 0 &&
           token.sequence <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
           Token(name, static_cast<int64_t>(token.sequence)) == token;
  }

  uint64_t Heard() { return watches.Heard(); }

  Duration Observe(const std::string& name, int64_t version) {
    return book->Observe(book_prefix + name, Str(version), clock.Now());
  }

  // Runs one pipeline (one transaction) on the statement connection within
  // the call's deadline. The transaction first tells the server that
  // deadline: a request the client gave up on (and closed the connection
  // under) is cancelled there too, rather than waiting on a row lock and
  // landing later, where a late renewal would move the row's version and
  // delay contenders by a window. Transaction-local, so pooler-safe.
  Result<std::vector<Rows>> Run(const std::vector<Statement>& statements, kit::SyncCall& call) {
    Result<Duration> left = call.Left(clock, description);
    if (!left.ok()) return left.status();
    std::vector<Statement> all;
    all.reserve(statements.size() + 1);
    all.push_back({names.set_timeout, {Str(std::max<int64_t>(1, CeilMs(*left)))}});
    all.insert(all.end(), statements.begin(), statements.end());
    Result<std::vector<Rows>> out = conn.Run(all, call.deadline, description + ": " + call.what);
    if (out.ok()) out->erase(out->begin());
    return out;
  }

  Statement ReadRow(const std::string& name) const { return {names.select_row, {name}}; }

  Result<AcquireOutcome> Granted(const AcquireRequest& q, const Rows& rows) {
    const auto& r = rows.rows.front();
    const std::optional<int64_t> sequence = Int(r[0]);
    const std::optional<int64_t> version = Int(r[1]);
    if (!sequence || *sequence <= 0 || !version) {
      return DataLossError(What(q.name) + ": the server returned no valid sequence");
    }
    Observe(q.name, *version);
    return AcquireOutcome(Acquired{Token(q.name, *sequence), q.ttl, std::nullopt});
  }

  Result<AcquireOutcome> Acquire(const AcquireRequest& q, kit::SyncCall& call) override {
    if (q.ttl > kMaxTtl) {
      return InvalidArgumentError(What(q.name) + ": TTL " + FormatDuration(q.ttl) +
                                  " exceeds this store's maximum of " + FormatDuration(kMaxTtl));
    }
    std::lock_guard lock(mu);
    // The version we may take over: one observed unchanged for its window.
    std::optional<int64_t> expected;
    for (int attempt = 0; attempt < 3; ++attempt) {
      const uint64_t heard_before = Heard();
      const std::optional<std::string> expect =
          expected ? std::optional<std::string>(Str(*expected)) : std::nullopt;
      // The compare-and-swap, the row as it is now (for a contender: who
      // holds it and what to watch), and a contender's wish to hear of the
      // holder's renewals: one round trip.
      Result<std::vector<Rows>> out =
          Run({{names.acquire, {q.name, q.holder, Str(CeilMs(q.ttl)), expect, names.channel}},
               ReadRow(q.name),
               {names.want, {q.name, q.holder}}},
              call);
      if (!out.ok()) return out.status().WithContext(kit::LeaseLabel(q.name));
      if (!(*out)[0].rows.empty()) return Granted(q, (*out)[0]);
      Result<std::optional<Row>> row = ParseRow((*out)[1], What(q.name));
      if (!row.ok()) return row.status();
      if (!*row) {
        // No row yet: create it (a concurrent creator wins the race).
        Result<std::vector<Rows>> created =
            Run({{names.insert, {q.name, q.holder, Str(CeilMs(q.ttl)), names.channel}}}, call);
        if (!created.ok()) return created.status().WithContext(kit::LeaseLabel(q.name));
        if (!(*created)[0].rows.empty()) return Granted(q, (*created)[0]);
        continue;
      }
      const Row& r = **row;
      if (!r.holder || *r.holder == q.holder) continue;  // changed between the two statements
      const Duration window = kit::ObservationWindow(r.ttl, q.ttl, options.max_observe_factor);
      const Duration seen = Observe(q.name, r.version);
      if (seen >= window && expected != r.version) {
        expected = r.version;  // unchanged for its window: take it over if it still is
        continue;
      }
      return AcquireOutcome(Contended{.holder = *r.holder,
                                      .version = WatchVersion(r.version, heard_before),
                                      .retry_after = std::max(Duration::zero(), window - seen)});
    }
    return AbortedError(What(q.name) + ": the row kept changing under us; try again");
  }

  std::vector<Result<RenewOutcome>> Renew(const std::vector<RenewRequest>& batch,
                                          kit::SyncCall& call) override {
    std::vector<Result<RenewOutcome>> results(batch.size(), InternalError("not renewed"));
    // One UPDATE for the batch, its rows as arrays; the server answers with
    // the (1-based) positions it renewed.
    std::vector<size_t> sent;
    std::string names_array, holders_array, sequences_array, ttls_array;
    for (size_t i = 0; i < batch.size(); ++i) {
      const RenewRequest& q = batch[i];
      if (!OurToken(q.name, q.token)) {
        results[i] = RenewOutcome(
            Lost{LossReason::kTakenOver, What(q.name) + ": not a tenure of this database"});
        continue;
      }
      sent.push_back(i);
      postgres::AppendArrayElement(names_array, q.name);
      postgres::AppendArrayElement(holders_array, q.holder);
      postgres::AppendArrayElement(sequences_array, Str(static_cast<int64_t>(q.token.sequence)));
      postgres::AppendArrayElement(ttls_array, Str(CeilMs(q.ttl)));
    }
    if (sent.empty()) return results;
    auto close = [](std::string& a) { return "{" + a + "}"; };
    std::lock_guard lock(mu);
    Result<std::vector<Rows>> out =
        Run({{names.renew,
              {close(names_array), close(holders_array), close(sequences_array), close(ttls_array),
               names.channel}}},
            call);
    if (!out.ok()) {
      for (size_t i : sent) results[i] = out.status();
      return results;
    }
    std::vector<bool> renewed(sent.size(), false);
    for (const auto& row : (*out)[0].rows) {
      const std::optional<int64_t> k = row.size() < 2 ? std::nullopt : Int(row[0]);
      if (!k || *k < 1 || *k > static_cast<int64_t>(sent.size())) continue;
      const size_t i = sent[static_cast<size_t>(*k - 1)];
      if (const std::optional<int64_t> v = Int(row[1])) Observe(batch[i].name, *v);
      results[i] = RenewOutcome(Renewed{batch[i].ttl, std::nullopt});
      renewed[static_cast<size_t>(*k - 1)] = true;
    }
    std::vector<size_t> missed;
    std::vector<Statement> reads;
    for (size_t k = 0; k < sent.size(); ++k) {
      if (renewed[k]) continue;
      missed.push_back(sent[k]);
      reads.push_back(ReadRow(batch[sent[k]].name));
    }
    if (missed.empty()) return results;
    // Not ours any more: one more round trip says why.
    Result<std::vector<Rows>> now = Run(reads, call);
    for (size_t k = 0; k < missed.size(); ++k) {
      const RenewRequest& q = batch[missed[k]];
      if (!now.ok()) {
        results[missed[k]] = RenewOutcome(
            Lost{LossReason::kTakenOver, What(q.name) + ": the row no longer names this tenure"});
        continue;
      }
      Result<std::optional<Row>> row = ParseRow((*now)[k], What(q.name));
      if (!row.ok()) {
        results[missed[k]] = RenewOutcome(Lost{LossReason::kBackendError, row.status().message()});
      } else if (!*row) {
        results[missed[k]] =
            RenewOutcome(Lost{LossReason::kDeleted, What(q.name) + ": the row was deleted"});
      } else if ((*row)->sequence == static_cast<int64_t>(q.token.sequence) && !(*row)->holder) {
        results[missed[k]] = RenewOutcome(
            Lost{LossReason::kExpired, What(q.name) + ": released or broken in the store"});
      } else {
        const Row& r = **row;
        results[missed[k]] = RenewOutcome(
            Lost{LossReason::kTakenOver,
                 What(q.name) + ": now at sequence " + Str(r.sequence) +
                     (r.holder ? " held by \"" + r.holder->substr(0, 253) + "\"" : "")});
      }
    }
    return results;
  }

  Status Release(const ReleaseRequest& q, kit::SyncCall& call) override {
    if (!OurToken(q.name, q.token)) return Status::Ok();  // nothing of ours here
    std::lock_guard lock(mu);
    return Run({{names.release,
                 {q.name, q.holder, Str(static_cast<int64_t>(q.token.sequence)), names.channel}}},
               call)
        .status()
        .WithContext(kit::LeaseLabel(q.name));
  }

  Status Break(const std::string& name, kit::SyncCall& call) override {
    std::lock_guard lock(mu);
    return Run({{names.break_lease, {name, names.channel}}}, call)
        .status()
        .WithContext(kit::LeaseLabel(name));
  }

  Result<LeaseRecord> Inspect(const std::string& name, kit::SyncCall& call) override {
    const uint64_t heard_before = Heard();
    Result<std::vector<Rows>> out = [&] {
      std::lock_guard lock(mu);
      return Run({ReadRow(name)}, call);
    }();
    if (!out.ok()) return out.status().WithContext(kit::LeaseLabel(name));
    Result<std::optional<Row>> row = ParseRow((*out)[0], What(name));
    if (!row.ok()) return row.status();
    if (!*row) return NotFoundError(What(name) + ": no row");
    return Record(name, **row, heard_before);
  }

  Result<std::vector<LeaseRecord>> List(const std::string& prefix, kit::SyncCall& call) override {
    const uint64_t heard_before = Heard();
    Result<std::vector<Rows>> out = [&] {
      std::lock_guard lock(mu);
      return Run({{names.list_rows, {prefix}}}, call);
    }();
    if (!out.ok()) return out.status().WithContext(call.what);
    auto rows = postgres::ParseListing((*out)[0], description + ": " + call.what);
    if (!rows.ok()) return rows.status();
    std::vector<LeaseRecord> records;
    records.reserve(rows->size());
    for (const auto& [name, row] : *rows) records.push_back(Record(name, row, heard_before));
    return records;
  }

  // A row as Inspect reports it: the time left counts from when this client
  // first saw its version (the expiry rule), not from any wall clock.
  LeaseRecord Record(const std::string& name, const Row& r, uint64_t heard_before) {
    LeaseRecord record;
    record.name = name;
    record.holder = r.holder.value_or("");
    record.token = Token(name, r.sequence);
    record.version = WatchVersion(r.version, heard_before);
    record.acquired_at = WallTime(std::chrono::milliseconds(r.acquired_ms));
    record.renewed_at = WallTime(std::chrono::milliseconds(r.renewed_ms));
    if (r.holder && r.ttl) {
      const Duration seen = Observe(name, r.version);
      record.remaining = std::max(Duration::zero(), *r.ttl - seen);
    }
    return record;
  }

  // --- waiting ---

  void CancelWatch(WatchId id) noexcept { watches.Cancel(id); }

  WatchId Watch(const std::string& name, const std::string& version, Task on_change) {
    StartListening();
    const kit::NotifiedWatches::Added added =
        watches.Watch(name, version, ParseWatchVersion(version).second, std::move(on_change));
    if (added.start_polling) SchedulePoll();
    return added.id;
  }

  // Polls the watched rows (when nobody listens): fires watchers whose row
  // changed, or could not be read.
  bool Poll() {
    const std::vector<kit::WatchRegistry::Watcher> snapshot = watches.Snapshot();
    std::vector<WatchId> fire;
    if (!snapshot.empty()) {
      std::vector<Statement> reads;
      for (const auto& w : snapshot) reads.push_back(ReadRow(w.name));
      kit::SyncCall call{.what = "poll watched leases",
                         .deadline = clock.Now() + options.connect_timeout};
      Result<std::vector<Rows>> out = [&] {
        std::lock_guard lock(mu);
        return Run(reads, call);
      }();
      for (size_t i = 0; i < snapshot.size(); ++i) {
        const auto [watched, heard_before] = ParseWatchVersion(snapshot[i].version);
        Result<std::optional<Row>> row =
            out.ok() ? ParseRow((*out)[i], description) : Result<std::optional<Row>>(out.status());
        if (!row.ok() || !*row || !(*row)->holder || (*row)->version != watched) {
          fire.push_back(snapshot[i].id);
        }
      }
    }
    return watches.Polled(fire);
  }

  void SchedulePoll() { kit::PollEvery(runtime, options.poll_interval, self, &State::Poll); }

  // Opens the listening connection, on the first wait (holders that never
  // wait need no second connection).
  void StartListening() {
    std::lock_guard lock(listener_mu);
    if (!options.listen || listener) return;
    listener = std::make_unique<postgres::Listener>(
        options.listen_conninfo.empty() ? options.conninfo : options.listen_conninfo, description,
        names.channel, options.connect_timeout, std::chrono::seconds(1),
        postgres::ListenerCallbacks{
            .on_up = [this] { watches.OnUp(); },
            .on_notify = [this](const std::string& n) { watches.OnNotify(n); },
            .on_down = [this] { watches.OnDown(); }});
  }
};

Status CheckOptions(const PostgresOptions& o) {
  if (o.conninfo.empty()) {
    return InvalidArgumentError("postgresql store: a connection string is required");
  }
  if (o.poll_interval <= Duration::zero() || o.connect_timeout <= Duration::zero()) {
    return InvalidArgumentError("postgresql store: poll_interval and connect_timeout must be > 0");
  }
  if (!(o.max_observe_factor >= 1.0) || !(o.max_observe_factor <= 1000.0)) {
    return InvalidArgumentError("postgresql store: max_observe_factor must be in [1, 1000], got " +
                                std::to_string(o.max_observe_factor));
  }
  return Status::Ok();
}

}  // namespace

Result<int> PostgresStore::InitSchema(const PostgresOptions& options) {
  if (Status s = CheckOptions(options); !s.ok()) return s;
  Result<postgres::SchemaNames> names = postgres::SchemaNames::For(options.schema, options.table);
  if (!names.ok()) return names.status();
  Result<std::string> describe = postgres::DescribeConninfo(options.conninfo);
  if (!describe.ok()) return describe.status();
  postgres::Connection conn(options.conninfo, *describe, RealClock(), options.connect_timeout);
  Result<postgres::SchemaInfo> info = postgres::EnsureSchema(
      conn, *names, /*create=*/true, RealClock().Now() + options.connect_timeout * 2, *describe);
  if (!info.ok()) return info.status();
  return info->version;
}

Result<std::shared_ptr<PostgresStore>> PostgresStore::Open(PostgresOptions options,
                                                           std::shared_ptr<Runtime> runtime) {
  if (Status s = CheckOptions(options); !s.ok()) return s;
  Result<postgres::SchemaNames> names = postgres::SchemaNames::For(options.schema, options.table);
  if (!names.ok()) return names.status();
  Result<std::string> describe = postgres::DescribeConninfo(options.conninfo);
  if (!describe.ok()) return describe.status();
  if (!options.listen_conninfo.empty()) {
    if (Result<std::string> d = postgres::DescribeConninfo(options.listen_conninfo); !d.ok()) {
      return d.status().WithContext("listen_conninfo");
    }
  }
  if (!runtime) runtime = Runtime::Default();
  auto state = std::make_shared<State>(runtime, options, *describe, *names);
  state->self = state;
  {
    std::lock_guard lock(state->mu);
    Result<postgres::SchemaInfo> info =
        postgres::EnsureSchema(state->conn, *names, options.create_schema,
                               runtime->clock().Now() + options.connect_timeout * 2, *describe);
    if (!info.ok()) return info.status();
    state->store_id = info->id;
  }
  return std::shared_ptr<PostgresStore>(
      new kit::WatchingSyncStore<PostgresStore, State>(std::move(runtime), std::move(state)));
}

}  // namespace leasehold
