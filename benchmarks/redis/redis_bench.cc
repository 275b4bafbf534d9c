// redis_bench: the measurements of benchmarks/redis/run against one
// redis-server. URL is a redis:// store URL.
//
//   redis_bench cycle URL OPS      leasehold acquire+release cycles
//                                  (AcquireWithToken + Release) interleaved
//                                  with the raw floor: the store's own
//                                  scripts (redis_scripts.h) sent bare by
//                                  EVALSHA through hiredis' blocking client,
//                                  one round trip per operation as the store
//                                  sends them; prints both p50/p99 in us
//   redis_bench handoff URL ROUNDS holder releases -> waiting contender
//                                  (woken by the release's PUBLISH) holds
//   redis_bench hold URL NAME TTL_S / wait URL NAME TTL_S   crash failover
//   redis_bench many URL COUNT TTL_S WINDOW_S   holds COUNT leases through
//                                  one store; prints CPU % of one core over
//                                  WINDOW_S at steady state, the renew
//                                  batches and renewals (client count) and
//                                  the server's commands processed
#include <hiredis/hiredis.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../store_bench.h"
#include "leasehold/backends/redis.h"
#include "redis_scripts.h"  // the store's exact scripts, for the floor

namespace {

using namespace std::chrono_literals;
using leasehold::Duration;
using leasehold::bench::Check;
using leasehold::bench::CpuSeconds;
using leasehold::bench::Die;
using leasehold::bench::NewLease;
using leasehold::bench::Percentile;
using SteadyClock = std::chrono::steady_clock;

constexpr const char* kPrefix = "bench:";

std::shared_ptr<leasehold::RedisStore> OpenStore(const std::string& url,
                                                 const std::shared_ptr<leasehold::Runtime>& rt,
                                                 bool share_observations = true) {
  auto o = leasehold::ParseRedisUrl(url);
  if (!o.ok()) Die(o.status().ToString());
  o->key_prefix = kPrefix;
  o->share_observations = share_observations;
  auto s = leasehold::RedisStore::Open(*o, rt);
  if (!s.ok()) Die(s.status().ToString());
  return *s;
}

// A blocking hiredis connection of the benchmark's own.
class RawConnection {
 public:
  explicit RawConnection(const std::string& url) {
    auto o = leasehold::ParseRedisUrl(url);
    if (!o.ok() || o->endpoints.empty()) Die("bad URL " + url);
    c_ = redisConnect(o->endpoints[0].host.c_str(), o->endpoints[0].port);
    if (!c_ || c_->err) Die("connect: " + std::string(c_ ? c_->errstr : "?"));
  }
  ~RawConnection() { redisFree(c_); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  // One command, one round trip; the reply (caller frees).
  redisReply* Command(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const std::string& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), lens.data()));
    if (!r) Die(std::string("command: ") + c_->errstr);
    if (r->type == REDIS_REPLY_ERROR) Die("command: " + std::string(r->str, r->len));
    return r;
  }
  long long Number(const std::vector<std::string>& args) {
    redisReply* r = Command(args);
    const long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    return v;
  }

 private:
  redisContext* c_ = nullptr;
};

// The floor: what the store sends for one acquire of a free record (one
// EVALSHA of the acquire script) and one release (one EVALSHA), bare.
class RawFloor {
 public:
  explicit RawFloor(const std::string& url) : conn_(url) {
    // Loaded once, as the store's EVALSHA finds them after its first EVAL.
    for (const auto* s : {&leasehold::redis::AcquireScript(), &leasehold::redis::ReleaseScript()}) {
      freeReplyObject(conn_.Command({"SCRIPT", "LOAD", s->source}));
    }
  }

  bool Cycle() {
    const std::string rec = std::string(kPrefix) + "lease:{raw-floor}";
    const std::string fence = std::string(kPrefix) + "fence:{raw-floor}";
    const std::string channel = std::string(kPrefix) + "changed";
    redisReply* a = conn_.Command(leasehold::redis::ScriptCommand(
        leasehold::redis::AcquireScript(), false, {rec, fence},
        {"raw#floor", "10000", "", "0123456789abcdef", channel, "raw-floor"}));
    const bool granted = a->type == REDIS_REPLY_ARRAY && a->elements == 4 &&
                         a->element[0]->type == REDIS_REPLY_INTEGER && a->element[0]->integer == 1;
    std::string seq, id;
    if (granted) {
      seq.assign(a->element[1]->str, a->element[1]->len);
      id.assign(a->element[3]->str, a->element[3]->len);
    }
    freeReplyObject(a);
    if (!granted) return false;
    redisReply* r = conn_.Command(
        leasehold::redis::ScriptCommand(leasehold::redis::ReleaseScript(), false, {rec},
                                        {"raw#floor", seq, id, channel, "raw-floor"}));
    const bool released = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return released;
  }

 private:
  RawConnection conn_;
};

int Cycle(const std::string& url, int ops) {
  auto rt = leasehold::Runtime::Create();
  auto lease = NewLease(OpenStore(url, rt), "cycle", "bench", 10s);
  RawFloor raw(url);
  return leasehold::bench::CycleAgainstFloor(
      *lease, [&raw] { return raw.Cycle(); }, ops);
}

int Handoff(const std::string& url, int rounds) {
  auto rt = leasehold::Runtime::Create();
  // Two stores that share nothing, as two processes would.
  return leasehold::bench::Handoff(OpenStore(url, rt, false), OpenStore(url, rt, false), rounds);
}

long long CommandsProcessed(RawConnection& conn) {
  redisReply* r = conn.Command({"INFO", "stats"});
  const std::string info(r->str, r->len);
  freeReplyObject(r);
  const size_t at = info.find("total_commands_processed:");
  return at == std::string::npos ? 0 : std::atoll(info.c_str() + at + 25);
}

int Many(const std::string& url, int count, int ttl_s, int window_s) {
  auto rt = leasehold::Runtime::Create();
  auto store = std::make_shared<leasehold::bench::CountingStore>(OpenStore(url, rt));
  auto leases = leasehold::bench::AcquireMany(store, count, std::chrono::seconds(ttl_s));
  // Every lease renews at least once before the window starts.
  std::this_thread::sleep_for(std::chrono::seconds(ttl_s) / 2);
  RawConnection stats(url);
  const long long commands0 = CommandsProcessed(stats);
  const uint64_t batches0 = store->batches, renewals0 = store->renewals;
  const double c0 = CpuSeconds();
  const auto t0 = SteadyClock::now();
  std::printf("steady\n");
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(window_s));
  const double cpu = CpuSeconds() - c0;
  const double wall = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  const uint64_t batches = store->batches - batches0, renewals = store->renewals - renewals0;
  const long long commands = CommandsProcessed(stats) - commands0;
  int alive = 0;
  for (auto& l : leases) alive += l->CheckAlive() ? 1 : 0;
  std::printf(
      "alive %d\ncpu_percent %.2f\nwindow_s %.2f\nrenew_batches %llu\nrenewals %llu\n"
      "server_commands %lld\n",
      alive, 100.0 * cpu / wall, wall, static_cast<unsigned long long>(batches),
      static_cast<unsigned long long>(renewals), commands);
  std::fflush(stdout);
  return alive == count ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  using Args = std::vector<std::string>;
  return leasehold::bench::Main(
      argc, argv, "redis_bench", "URL",
      {{"cycle", 1, [](const std::string& t, const Args& a) { return Cycle(t, std::stoi(a[0])); }},
       {"handoff", 1,
        [](const std::string& t, const Args& a) { return Handoff(t, std::stoi(a[0])); }},
       {"many", 3,
        [](const std::string& t, const Args& a) {
          return Many(t, std::stoi(a[0]), std::stoi(a[1]), std::stoi(a[2]));
        }}},
      [](const std::string& t, std::shared_ptr<leasehold::Runtime> rt)
          -> std::shared_ptr<leasehold::Store> { return OpenStore(t, rt); });
}
