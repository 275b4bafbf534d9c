// The Redis store (leasehold/backends/redis.h): the kit's synchronous
// adapter over one connection to the primary, scripts for every write,
// client-judged expiry, and a subscriber that wakes waiters.
#include <algorithm>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "kit/fair_mutex.h"
#include "kit/lease_label.h"
#include "kit/notified_watches.h"
#include "kit/observations.h"
#include "kit/renew_batch.h"
#include "kit/sync_store.h"
#include "leasehold/backends/redis.h"
#include "leasehold/detail/io.h"
#include "redis_connection.h"
#include "redis_primary.h"
#include "redis_reply.h"
#include "redis_scripts.h"
#include "redis_subscriber.h"

namespace leasehold {
namespace {

using redis::Command;
using redis::Reply;
using redis::ReplyError;

constexpr Duration kMaxTtl = std::chrono::hours(24);

std::string Str(int64_t v) { return std::to_string(v); }

int64_t CeilMs(Duration d) { return std::chrono::ceil<std::chrono::milliseconds>(d).count(); }

// A candidate store id: used by the acquire script only when the counter
// has none yet (a new name, or a counter lost with the data).
std::string RandomId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id;
  for (uint64_t v = rng(), i = 0; i < 16; ++i, v >>= 4) id += hex[v & 15];
  return id;
}

struct Contender {
  std::string holder, sequence, version, ttl_ms, store_id;
};

struct State final : kit::SyncOps {
  State(std::shared_ptr<Runtime> rt, RedisOptions o, std::string describe,
        std::shared_ptr<redis::TlsContext> tls_context)
      : runtime(std::move(rt)),
        clock(runtime->clock()),
        options(std::move(o)),
        description(std::move(describe)),
        tls(std::move(tls_context)),
        book(kit::ObservationBook::For(options.share_observations, runtime)),
        book_prefix(description + "|" + options.key_prefix + "|"),
        channel(options.key_prefix + "changed"),
        primary(clock, options, description, tls),
        conn(clock, description),
        watches(runtime) {}

  ~State() {
    std::unique_ptr<redis::Subscriber> s;
    {
      std::lock_guard lock(subscriber_mu);
      s = std::move(subscriber);
    }
    s.reset();  // joins its thread
  }

  const std::shared_ptr<Runtime> runtime;
  const Clock& clock;
  const RedisOptions options;
  const std::string description;
  const std::shared_ptr<redis::TlsContext> tls;
  const std::shared_ptr<kit::ObservationBook> book;
  const std::string book_prefix;
  const std::string channel;

  const redis::Primary primary;
  // One connection, one pipeline at a time, in the order asked (fair:
  // renewals never starve behind a stream of acquires).
  kit::FairMutex mu;
  redis::Connection conn;

  kit::NotifiedWatches watches;
  std::mutex subscriber_mu;
  std::unique_ptr<redis::Subscriber> subscriber;
  std::weak_ptr<State> self;

  const std::string& describe() const noexcept override { return description; }
  std::string What(const std::string& name) const {
    return description + ": " + kit::LeaseLabel(name);
  }
  std::string RecordKey(const std::string& name) const {
    return options.key_prefix + "lease:{" + name + "}";
  }
  std::string FenceKey(const std::string& name) const {
    return options.key_prefix + "fence:{" + name + "}";
  }

  static FencingToken Token(const std::string& name, const std::string& store_id,
                            int64_t sequence) {
    return {"redis/" + store_id + "/" + Str(sequence) + "/" + name,
            static_cast<uint64_t>(sequence)};
  }
  // The store id a token of `name` carries, if it is one of ours.
  static std::optional<std::string> TokenStoreId(const std::string& name,
                                                 const FencingToken& token) {
    const std::string& v = token.value;
    const std::string suffix = "/" + std::to_string(token.sequence) + "/" + name;
    if (v.rfind("redis/", 0) != 0 || v.size() <= 6 + suffix.size() ||
        v.compare(v.size() - suffix.size(), suffix.size(), suffix) != 0 || token.sequence == 0 ||
        token.sequence > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return std::nullopt;
    }
    std::string id = v.substr(6, v.size() - 6 - suffix.size());
    if (id.empty() || id.find('/') != std::string::npos) return std::nullopt;
    return id;
  }

  Duration Observe(const std::string& name, const std::string& version) {
    return book->Observe(book_prefix + name, version, clock.Now());
  }

  // The statement connection: kept while it looks alive, else opened and
  // checked afresh.
  Status Connect(TimePoint deadline) {
    if (conn.is_open() && conn.Idle()) return Status::Ok();
    return primary.OpenChecked(conn, deadline);
  }

  // Runs `commands` in one round trip within the call's deadline.
  Result<std::vector<Reply>> Run(const std::vector<Command>& commands, kit::SyncCall& call) {
    if (Result<Duration> left = call.Left(clock, description); !left.ok()) return left.status();
    if (Status s = Connect(call.deadline); !s.ok()) return s.WithContext(call.what);
    Result<std::vector<Reply>> out =
        conn.Run(commands, call.deadline, description + ": " + call.what);
    if (out.ok()) {
      for (const Reply& r : *out) {
        // A replica now (a failover demoted our server): find the primary
        // again on the next request.
        if (r.is_error() && r.ErrorCode() == "READONLY") conn.Close();
      }
    }
    return out;
  }

  struct ScriptCall {
    const redis::Script* script;
    std::vector<std::string> keys, args;
  };
  // Runs scripts by EVALSHA; those the server has not cached (NOSCRIPT: a
  // restart, a failover, SCRIPT FLUSH) again by EVAL, which caches them.
  // Each script is safe to repeat: its writes are conditional on what it
  // reads.
  Result<std::vector<Reply>> RunScripts(const std::vector<ScriptCall>& calls, kit::SyncCall& call) {
    std::vector<Command> cmds;
    cmds.reserve(calls.size());
    for (const ScriptCall& c : calls) {
      cmds.push_back(redis::ScriptCommand(*c.script, false, c.keys, c.args));
    }
    Result<std::vector<Reply>> out = Run(cmds, call);
    if (!out.ok()) return out;
    std::vector<size_t> again;
    std::vector<Command> by_source;
    for (size_t i = 0; i < out->size(); ++i) {
      if ((*out)[i].is_error() && (*out)[i].ErrorCode() == "NOSCRIPT") {
        again.push_back(i);
        by_source.push_back(
            redis::ScriptCommand(*calls[i].script, true, calls[i].keys, calls[i].args));
      }
    }
    if (again.empty()) return out;
    Result<std::vector<Reply>> retried = Run(by_source, call);
    if (!retried.ok()) return retried.status();
    for (size_t k = 0; k < again.size(); ++k) (*out)[again[k]] = std::move((*retried)[k]);
    return out;
  }

  // --- operations ---

  Result<AcquireOutcome> Acquire(const AcquireRequest& q, kit::SyncCall& call) override {
    if (q.ttl > kMaxTtl) {
      return InvalidArgumentError(What(q.name) + ": TTL " + FormatDuration(q.ttl) +
                                  " exceeds this store's maximum of " + FormatDuration(kMaxTtl));
    }
    std::lock_guard lock(mu);
    std::string expected;  // a version observed unchanged for its window, to take over
    for (int attempt = 0; attempt < 3; ++attempt) {
      const uint64_t heard_before = watches.Heard();
      Result<std::vector<Reply>> out =
          RunScripts({{&redis::AcquireScript(),
                       {RecordKey(q.name), FenceKey(q.name)},
                       {q.holder, Str(CeilMs(q.ttl)), expected, RandomId(), channel, q.name}}},
                     call);
      if (!out.ok()) return out.status().WithContext(kit::LeaseLabel(q.name));
      const Reply& r = out->front();
      if (r.is_error()) return ReplyError(r, What(q.name));
      if (r.type != Reply::Type::kArray || r.elements.empty() || !r.elements[0].Int()) {
        return DataLossError(What(q.name) + ": the acquire script answered oddly");
      }
      if (*r.elements[0].Int() == 1) return Granted(q, r, call);
      Result<Contender> c = ParseContender(q.name, r);
      if (!c.ok()) return c.status();
      if (c->holder.empty() || c->holder == q.holder) continue;  // changed meanwhile
      std::optional<Duration> record_ttl;
      if (std::optional<int64_t> ms = redis::ParseInt64(c->ttl_ms); ms && *ms > 0) {
        record_ttl = std::chrono::milliseconds(std::min<int64_t>(*ms, CeilMs(kMaxTtl) + 1));
        if (*record_ttl > kMaxTtl) record_ttl.reset();  // absurd: wait the cap
      }
      const Duration window = kit::ObservationWindow(record_ttl, q.ttl, options.max_observe_factor);
      const Duration seen = Observe(q.name, c->version);
      if (seen >= window && expected != c->version) {
        expected = c->version;  // unchanged for its window: take it over if it still is
        continue;
      }
      return AcquireOutcome(Contended{.holder = c->holder,
                                      .version = kit::StampVersion(c->version, heard_before),
                                      .retry_after = std::max(Duration::zero(), window - seen)});
    }
    return AbortedError(What(q.name) + ": the record kept changing under us; try again");
  }

  Result<Contender> ParseContender(const std::string& name, const Reply& r) {
    if (r.elements.size() != 6) {
      return DataLossError(What(name) + ": the acquire script answered oddly");
    }
    Contender c;
    std::string* fields[] = {&c.holder, &c.sequence, &c.version, &c.ttl_ms, &c.store_id};
    for (size_t i = 0; i < 5; ++i) {
      std::optional<std::string> t = r.elements[i + 1].Text();
      if (!t) return DataLossError(What(name) + ": the acquire script answered oddly");
      *fields[i] = std::move(*t);
    }
    return c;
  }

  Result<AcquireOutcome> Granted(const AcquireRequest& q, const Reply& r, kit::SyncCall& call) {
    if (r.elements.size() != 4 || !r.elements[1].Int() || !r.elements[2].Text() ||
        !r.elements[3].Text() || *r.elements[1].Int() <= 0 || r.elements[3].Text()->empty()) {
      return DataLossError(What(q.name) + ": the server returned no valid sequence");
    }
    const int64_t sequence = *r.elements[1].Int();
    const std::string store_id = *r.elements[3].Text();
    Observe(q.name, *r.elements[2].Text());
    const FencingToken token = Token(q.name, store_id, sequence);
    if (options.wait_replicas > 0) {
      if (Status s = WaitForReplicas(q.name, call); !s.ok()) {
        // Not durable as asked: give it back (best effort) rather than hold
        // a tenure a failover could lose.
        Result<std::vector<Reply>> undo =
            RunScripts({{&redis::ReleaseScript(),
                         {RecordKey(q.name)},
                         {q.holder, Str(sequence), store_id, channel, q.name}}},
                       call);
        (void)undo;
        return s;
      }
    }
    return AcquireOutcome(Acquired{token, q.ttl, std::nullopt});
  }

  Status WaitForReplicas(const std::string& name, kit::SyncCall& call) {
    Result<std::vector<Reply>> out =
        Run({{"WAIT", Str(options.wait_replicas), Str(CeilMs(options.wait_timeout))}}, call);
    if (!out.ok()) return out.status().WithContext(kit::LeaseLabel(name));
    const Reply& r = out->front();
    if (r.is_error()) return ReplyError(r, What(name) + ": WAIT");
    const std::optional<int64_t> acked = r.Int();
    if (!acked || *acked < options.wait_replicas) {
      return UnavailableError(What(name) + ": only " + Str(acked.value_or(0)) + " of " +
                              Str(options.wait_replicas) + " replicas acknowledged the acquire");
    }
    return Status::Ok();
  }

  std::vector<Result<RenewOutcome>> Renew(const std::vector<RenewRequest>& batch,
                                          kit::SyncCall& call) override {
    std::vector<Result<RenewOutcome>> results(batch.size(), InternalError("not renewed"));
    std::vector<size_t> sent;
    std::vector<ScriptCall> calls;
    for (size_t i = 0; i < batch.size(); ++i) {
      const RenewRequest& q = batch[i];
      std::optional<std::string> id = TokenStoreId(q.name, q.token);
      if (!id) {
        results[i] = RenewOutcome(
            Lost{LossReason::kBackendError, What(q.name) + ": not a token of this store"});
        continue;
      }
      sent.push_back(i);
      calls.push_back({&redis::RenewScript(),
                       {RecordKey(q.name)},
                       {q.holder, Str(static_cast<int64_t>(q.token.sequence)), *id,
                        Str(CeilMs(q.ttl)), channel, q.name}});
    }
    if (sent.empty()) return results;
    std::lock_guard lock(mu);
    Result<std::vector<Reply>> out = RunScripts(calls, call);
    for (size_t k = 0; k < sent.size(); ++k) {
      const RenewRequest& q = batch[sent[k]];
      if (!out.ok()) {
        results[sent[k]] = out.status();
        continue;
      }
      results[sent[k]] = RenewAnswer(q, (*out)[k]);
    }
    return results;
  }

  Result<RenewOutcome> RenewAnswer(const RenewRequest& q, const Reply& r) {
    if (r.is_error()) {
      Status s = ReplyError(r, What(q.name));
      if (s.code() == StatusCode::kDataLoss) {
        return RenewOutcome(Lost{LossReason::kBackendError, s.message()});
      }
      return s;
    }
    if (r.type != Reply::Type::kArray || r.elements.empty() || !r.elements[0].Int()) {
      return DataLossError(What(q.name) + ": the renew script answered oddly");
    }
    if (*r.elements[0].Int() == 1 && r.elements.size() == 2 && r.elements[1].Text()) {
      Observe(q.name, *r.elements[1].Text());
      return RenewOutcome(Renewed{q.ttl, std::nullopt});
    }
    if (r.elements.size() != 5)
      return DataLossError(What(q.name) + ": the renew script answered oddly");
    const bool exists = r.elements[1].Int().value_or(1) != 0;
    const std::string holder = r.elements[2].Text().value_or("");
    const std::string sequence = r.elements[3].Text().value_or("");
    if (!exists)
      return RenewOutcome(Lost{LossReason::kDeleted, What(q.name) + ": the record was deleted"});
    if (holder.empty() && sequence == Str(static_cast<int64_t>(q.token.sequence))) {
      return RenewOutcome(
          Lost{LossReason::kExpired, What(q.name) + ": released or broken in the store"});
    }
    return RenewOutcome(
        Lost{LossReason::kTakenOver,
             What(q.name) + ": now at sequence " + sequence.substr(0, 20) +
                 (holder.empty() ? "" : " held by \"" + holder.substr(0, 253) + "\"")});
  }

  Status Release(const ReleaseRequest& q, kit::SyncCall& call) override {
    std::optional<std::string> id = TokenStoreId(q.name, q.token);
    if (!id) return Status::Ok();  // nothing of ours here
    std::lock_guard lock(mu);
    Result<std::vector<Reply>> out = RunScripts(
        {{&redis::ReleaseScript(),
          {RecordKey(q.name)},
          {q.holder, Str(static_cast<int64_t>(q.token.sequence)), *id, channel, q.name}}},
        call);
    if (!out.ok()) return out.status().WithContext(kit::LeaseLabel(q.name));
    if (out->front().is_error()) return ReplyError(out->front(), What(q.name));
    return Status::Ok();
  }

  Status Break(const std::string& name, kit::SyncCall& call) override {
    std::lock_guard lock(mu);
    Result<std::vector<Reply>> out =
        RunScripts({{&redis::BreakScript(), {RecordKey(name)}, {channel, name}}}, call);
    if (!out.ok()) return out.status().WithContext(kit::LeaseLabel(name));
    if (out->front().is_error()) return ReplyError(out->front(), What(name));
    return Status::Ok();
  }

  Command ReadRecord(const std::string& name) const {
    return {"HMGET",  RecordKey(name), "holder",      "sequence",  "store_id",
            "ttl_ms", "version",       "acquired_ms", "renewed_ms"};
  }

  Result<LeaseRecord> Inspect(const std::string& name, kit::SyncCall& call) override {
    const uint64_t heard_before = watches.Heard();
    Result<std::vector<Reply>> out = [&] {
      std::lock_guard lock(mu);
      return Run({ReadRecord(name)}, call);
    }();
    if (!out.ok()) return out.status().WithContext(kit::LeaseLabel(name));
    Result<std::optional<LeaseRecord>> record = ParseRecord(name, out->front(), heard_before);
    if (!record.ok()) return record.status();
    if (!*record) return NotFoundError(What(name) + ": no record");
    return std::move(**record);
  }

  // SCAN for the records' keys (a cursor walk: keys may come twice, and a
  // record deleted meanwhile is left out), then one HMGET each, pipelined.
  Result<std::vector<LeaseRecord>> List(const std::string& prefix, kit::SyncCall& call) override {
    const uint64_t heard_before = watches.Heard();
    const std::string key_start = options.key_prefix + "lease:{";
    const std::string pattern = redis::GlobEscape(key_start + prefix) + "*}";
    std::set<std::string> found;
    std::string cursor = "0";
    std::lock_guard lock(mu);
    do {
      Result<std::vector<Reply>> out =
          Run({{"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"}}, call);
      if (!out.ok()) return out.status().WithContext(call.what);
      const Reply& r = out->front();
      if (r.is_error()) return ReplyError(r, description + ": " + call.what);
      if (r.type != Reply::Type::kArray || r.elements.size() != 2 || !r.elements[0].Text() ||
          r.elements[1].type != Reply::Type::kArray) {
        return DataLossError(description + ": " + call.what + ": SCAN answered oddly");
      }
      cursor = *r.elements[0].Text();
      for (const Reply& key : r.elements[1].elements) {
        const std::optional<std::string> k = key.Text();
        if (!k || !k->starts_with(key_start) || !k->ends_with("}")) continue;
        std::string name = k->substr(key_start.size(), k->size() - key_start.size() - 1);
        if (!name.empty() && name.starts_with(prefix)) found.insert(std::move(name));
      }
    } while (cursor != "0");
    std::vector<LeaseRecord> records;
    if (found.empty()) return records;
    const std::vector<std::string> names(found.begin(), found.end());
    std::vector<Command> reads;
    reads.reserve(names.size());
    for (const std::string& name : names) reads.push_back(ReadRecord(name));
    Result<std::vector<Reply>> out = Run(reads, call);
    if (!out.ok()) return out.status().WithContext(call.what);
    if (out->size() != names.size()) {
      return DataLossError(description + ": " + call.what + ": answers do not match the reads");
    }
    for (size_t i = 0; i < names.size(); ++i) {
      Result<std::optional<LeaseRecord>> record = ParseRecord(names[i], (*out)[i], heard_before);
      if (!record.ok()) return record.status();
      if (*record) records.push_back(std::move(**record));
    }
    return records;
  }

  // A record's HMGET (ReadRecord) as Inspect reports it; nullopt when there
  // is none. The time left counts from when this client first saw its
  // version (the expiry rule).
  Result<std::optional<LeaseRecord>> ParseRecord(const std::string& name, const Reply& r,
                                                 uint64_t heard_before) {
    if (r.is_error()) return ReplyError(r, What(name));
    if (r.type != Reply::Type::kArray || r.elements.size() != 7) {
      return DataLossError(What(name) + ": HMGET answered oddly");
    }
    auto field = [&](size_t i) { return r.elements[i].Text(); };
    if (!field(4) && !field(0) && !field(1)) return std::optional<LeaseRecord>();
    LeaseRecord record;
    record.name = name;
    record.holder = field(0).value_or("");
    const int64_t sequence = redis::ParseInt64(field(1).value_or("0")).value_or(0);
    record.token = Token(name, field(2).value_or(""), std::max<int64_t>(0, sequence));
    const std::string version = field(4).value_or("0");
    record.version = kit::StampVersion(version, heard_before);
    auto wall = [&](size_t i) {
      const int64_t ms = redis::ParseInt64(field(i).value_or("0")).value_or(0);
      return WallTime(std::chrono::milliseconds(std::max<int64_t>(0, ms)));
    };
    record.acquired_at = wall(5);
    record.renewed_at = wall(6);
    if (!record.holder.empty()) {
      const std::optional<int64_t> ttl = redis::ParseInt64(field(3).value_or(""));
      if (ttl && *ttl > 0 && *ttl <= CeilMs(kMaxTtl)) {
        const Duration seen = Observe(name, version);
        record.remaining =
            std::max(Duration::zero(), Duration(std::chrono::milliseconds(*ttl)) - seen);
      }
    }
    return std::optional<LeaseRecord>(std::move(record));
  }

  // --- waiting ---

  void CancelWatch(WatchId id) noexcept { watches.Cancel(id); }

  WatchId Watch(const std::string& name, const std::string& version, Task on_change) {
    StartSubscriber();
    const kit::NotifiedWatches::Added added =
        watches.Watch(name, version, kit::UnstampVersion(version).second, std::move(on_change));
    if (added.start_polling) SchedulePoll();
    return added.id;
  }

  // Reads the watched records (while nobody listens): fires watchers whose
  // record changed, or could not be read.
  bool Poll() {
    const std::vector<kit::WatchRegistry::Watcher> snapshot = watches.Snapshot();
    std::vector<WatchId> fire;
    if (!snapshot.empty()) {
      std::vector<Command> reads;
      for (const auto& w : snapshot)
        reads.push_back({"HMGET", RecordKey(w.name), "holder", "version"});
      kit::SyncCall call{.what = "poll watched leases",
                         .deadline = clock.Now() + options.connect_timeout};
      Result<std::vector<Reply>> out = [&] {
        std::lock_guard lock(mu);
        return Run(reads, call);
      }();
      for (size_t i = 0; i < snapshot.size(); ++i) {
        const std::string watched = kit::UnstampVersion(snapshot[i].version).first;
        bool changed = true;
        if (out.ok()) {
          const Reply& r = (*out)[i];
          if (r.type == Reply::Type::kArray && r.elements.size() == 2) {
            const std::string holder = r.elements[0].Text().value_or("");
            changed = holder.empty() || r.elements[1].Text().value_or("0") != watched;
          }
        }
        if (changed) fire.push_back(snapshot[i].id);
      }
    }
    return watches.Polled(fire);
  }

  void SchedulePoll() { kit::PollEvery(runtime, options.poll_interval, self, &State::Poll); }

  // The subscriber, on the first wait (holders that never wait need no
  // second connection).
  void StartSubscriber() {
    std::lock_guard lock(subscriber_mu);
    if (!options.subscribe || subscriber) return;
    subscriber = std::make_unique<redis::Subscriber>(
        clock, description, channel,
        [this](redis::Connection& c, TimePoint deadline) { return primary.Open(c, deadline); },
        options.connect_timeout,
        redis::SubscriberCallbacks{
            .on_up = [this] { watches.OnUp(); },
            .on_notify = [this](const std::string& n) { watches.OnNotify(n); },
            .on_down = [this] { watches.OnDown(); }});
  }
};

Status CheckOptions(const RedisOptions& o) {
  auto bad = [](const std::string& why) { return InvalidArgumentError("redis store: " + why); };
  if (o.endpoints.empty()) return bad("no server (or sentinel) given");
  if (o.sentinel_master.empty() && o.endpoints.size() > 1) {
    return bad("several endpoints are sentinels: set sentinel_master");
  }
  for (const RedisEndpoint& e : o.endpoints) {
    if (e.host.empty()) return bad("an endpoint has no host");
    if (e.port < 1 || e.port > 65535)
      return bad("port " + std::to_string(e.port) + " is not in 1..65535");
  }
  if (o.database < 0 || o.database > 65535) return bad("database must be in 0..65535");
  if (o.key_prefix.size() > 100) return bad("key_prefix is longer than 100 bytes");
  if (o.key_prefix.find_first_of("{}") != std::string::npos) {
    return bad("key_prefix may not contain '{' or '}' (the lease's name is the hash tag)");
  }
  if (o.wait_replicas < 0 || o.wait_replicas > 100) return bad("wait_replicas must be in 0..100");
  if (o.wait_timeout <= Duration::zero()) return bad("wait_timeout must be > 0");
  if (o.poll_interval <= Duration::zero() || o.connect_timeout <= Duration::zero()) {
    return bad("poll_interval and connect_timeout must be > 0");
  }
  if (!(o.max_observe_factor >= 1.0) || !(o.max_observe_factor <= 1000.0)) {
    return bad("max_observe_factor must be in [1, 1000]");
  }
  if (!o.tls && (!o.tls_ca_file.empty() || !o.tls_cert_file.empty())) {
    return bad("TLS files given without TLS (use rediss://)");
  }
  return Status::Ok();
}

std::string DescribeOptions(const RedisOptions& o) {
  std::string hosts;
  for (const RedisEndpoint& e : o.endpoints) {
    if (!hosts.empty()) hosts += ',';
    hosts += redis::Endpoint{e.host, e.port}.ToString();
  }
  std::string out =
      o.sentinel_master.empty()
          ? (o.tls ? "rediss://" : "redis://") + hosts
          : (o.tls ? "rediss-sentinel://" : "redis-sentinel://") + hosts + "/" + o.sentinel_master;
  out += "/" + std::to_string(o.database);
  if (!o.username.empty()) out.insert(out.find("//") + 2, o.username + "@");
  return out;
}

}  // namespace

Result<std::shared_ptr<RedisStore>> RedisStore::Open(RedisOptions options,
                                                     std::shared_ptr<Runtime> runtime) {
  if (Status s = CheckOptions(options); !s.ok()) return s;
  const std::string describe = DescribeOptions(options);
  std::shared_ptr<redis::TlsContext> tls;
  if (options.tls) {
    Result<std::shared_ptr<redis::TlsContext>> t = redis::MakeTlsContext(
        {options.tls_ca_file, options.tls_cert_file, options.tls_key_file, options.tls_server_name},
        describe);
    if (!t.ok()) return t.status();
    tls = *t;
  }
  if (!runtime) runtime = Runtime::Default();
  auto state = std::make_shared<State>(runtime, std::move(options), describe, tls);
  state->self = state;
  {
    std::lock_guard lock(state->mu);
    if (Status s = state->Connect(runtime->clock().Now() + state->options.connect_timeout);
        !s.ok()) {
      return s;
    }
  }
  return std::shared_ptr<RedisStore>(
      new kit::WatchingSyncStore<RedisStore, State>(std::move(runtime), std::move(state)));
}

}  // namespace leasehold
