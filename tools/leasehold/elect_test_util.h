// The sidecar tests' tools: `leasehold elect` processes started by PID, their
// HTTP face read with cpp-httplib, and the failover check every store's
// sidecar test makes.
#ifndef LEASEHOLD_TOOLS_LEASEHOLD_ELECT_TEST_UTIL_H_
#define LEASEHOLD_TOOLS_LEASEHOLD_ELECT_TEST_UTIL_H_

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli.h"
#include "testing/child_process.h"
#include "testing/free_port.h"
#include "testing/sanitizers.h"
#include "testing/temp_dir.h"
#include "testing/tenure_probe.h"

namespace leasehold::cli {

// One `leasehold --store URL elect job --listen 127.0.0.1:PORT ...` process.
class Sidecar {
 public:
  Sidecar(const std::string& store_url, const std::string& owner, Duration ttl,
          std::vector<std::string> extra = {})
      : port_(testing::FreePort()), log_(dir_.File("elect.log")) {
    std::vector<std::string> argv = {
        LEASEHOLD_BINARY,
        "--store",
        store_url,
        "elect",
        "job",
        "--listen",
        "127.0.0.1:" + std::to_string(port_),
        "--ttl",
        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(ttl).count()) + "ms",
        "--owner",
        owner};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto pid = testing::SpawnChild(
        {.argv = argv, .env = testing::EnvironmentWithout({}), .output = log_}, "sidecar");
    EXPECT_TRUE(pid.ok()) << pid.status().ToString();
    if (pid.ok()) pid_ = *pid;
  }
  ~Sidecar() { Kill(); }
  Sidecar(const Sidecar&) = delete;
  Sidecar& operator=(const Sidecar&) = delete;

  // GET path: status and body; status 0 when nothing answered.
  std::pair<int, std::string> Get(const std::string& path) const {
    httplib::Client client("127.0.0.1", port_);
    client.set_connection_timeout(1, 0);
    client.set_read_timeout(5, 0);
    auto res = client.Get(path.c_str());
    if (!res) return {0, ""};
    return {res->status, res->body};
  }
  // GET /leader parsed; nullopt unless it answered 200 with JSON.
  std::optional<nlohmann::json> Leader() const {
    auto [status, body] = Get("/leader");
    if (status != 200) return std::nullopt;
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    return j;
  }
  std::string Port() const { return std::to_string(port_); }
  bool IsLeader() const {
    auto j = Leader();
    return j && j->value("is_leader", false);
  }

  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    testing::WaitChild(pid_, std::chrono::seconds(10));
    pid_ = -1;
  }
  // SIGTERM; the exit status (nullopt if it did not exit within `limit`).
  std::optional<int> Terminate(std::chrono::milliseconds limit) {
    if (pid_ <= 0) return std::nullopt;
    kill(pid_, SIGTERM);
    auto status = testing::WaitChild(pid_, limit);
    if (status) pid_ = -1;
    return status;
  }
  std::string Log() const {
    std::ifstream f(log_);
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }

 private:
  testing::TempDir dir_{"sidecar"};
  int port_;
  std::string log_;
  pid_t pid_ = -1;
};

// Two sidecars for lease "job" on `store_url` (free): one leads, the other
// reports it; the leader is SIGKILLed and the standby's /leader says it leads
// within TTL + 1 s (+1 s more sanitized). Sampled every 20 ms meanwhile, the
// standby never reports itself as the holder while it does not lead, never
// reports a holder with a lower sequence than one it reported before, and
// after it leads never reports anyone else. Then its /metrics and /healthz,
// and SIGTERM: exit 0, and the lease is free at once.
inline void ExpectSidecarsFailOver(const std::string& store_url, Duration ttl) {
  using ::testing::HasSubstr;
  using namespace std::chrono_literals;
  auto a = std::make_unique<Sidecar>(store_url, "a", ttl);
  auto b = std::make_unique<Sidecar>(store_url, "b", ttl);
  ASSERT_TRUE(testing::Eventually([&] { return a->IsLeader() || b->IsLeader(); }, 20s))
      << "nobody leads\n--- a:\n"
      << a->Log() << "--- b:\n"
      << b->Log();
  Sidecar* leader = a->IsLeader() ? a.get() : b.get();
  Sidecar* standby = leader == a.get() ? b.get() : a.get();
  const auto led = leader->Leader();
  ASSERT_TRUE(led);
  const std::string leader_id = (*led)["holder"];
  const uint64_t leader_seq = (*led)["sequence"];
  ASSERT_TRUE(testing::Eventually(
      [&] {
        auto s = standby->Leader();
        return s && !(*s)["holder"].is_null() && (*s)["holder"] == leader_id;
      },
      10s))
      << "the standby does not report the leader\n"
      << standby->Log();
  EXPECT_FALSE(standby->IsLeader());

  struct Sample {
    std::chrono::steady_clock::time_point at;
    nlohmann::json body;
  };
  std::mutex mu;
  std::vector<Sample> samples;
  std::atomic<bool> stop{false};
  std::thread sampler([&] {
    while (!stop) {
      if (auto s = standby->Leader()) {
        std::lock_guard lock(mu);
        samples.push_back({std::chrono::steady_clock::now(), *s});
      }
      std::this_thread::sleep_for(20ms);
    }
  });
  std::this_thread::sleep_for(ttl / 2);
  const auto killed = std::chrono::steady_clock::now();
  leader->Kill();
  const Duration bound = ttl + 1s + (testing::kSanitized ? Duration(1s) : Duration::zero());
  const bool flipped = testing::Eventually([&] { return standby->IsLeader(); }, bound + 5s);
  const auto flipped_at = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(200ms);
  stop = true;
  sampler.join();
  ASSERT_TRUE(flipped) << "the standby never led\n" << standby->Log();
  EXPECT_LE(flipped_at - killed, bound + 100ms) << "the flip took too long";

  const auto mine = standby->Leader();
  ASSERT_TRUE(mine);
  const std::string standby_id = (*mine)["holder"];
  EXPECT_NE(standby_id, leader_id);
  EXPECT_GT((*mine)["sequence"].get<uint64_t>(), leader_seq);
  uint64_t last_seq = 0;
  bool leading = false;
  {
    std::lock_guard lock(mu);
    ASSERT_GT(samples.size(), 5u);
    for (const Sample& s : samples) {
      const bool is_leader = s.body["is_leader"];
      // Null when nobody holds; a holder's never goes back.
      if (!s.body["sequence"].is_null()) {
        const uint64_t seq = s.body["sequence"];
        EXPECT_GE(seq, last_seq) << s.body.dump();
        last_seq = seq;
      } else {
        EXPECT_TRUE(s.body["holder"].is_null()) << s.body.dump();
      }
      if (!is_leader) {
        EXPECT_NE(s.body["holder"], standby_id) << "a standby reported itself: " << s.body.dump();
        EXPECT_FALSE(leading) << "reported a leader after leading: " << s.body.dump();
      } else {
        leading = true;
        EXPECT_EQ(s.body["holder"], standby_id);
      }
    }
  }
  EXPECT_TRUE(leading);

  auto [mstatus, metrics] = standby->Get("/metrics");
  EXPECT_EQ(mstatus, 200);
  EXPECT_THAT(metrics, HasSubstr("leader_election_master_status{name=\"job\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("leasehold_held{lease=\"job\"} 1"));
  auto [hstatus, health] = standby->Get("/healthz");
  EXPECT_EQ(hstatus, 200) << health;

  // SIGTERM releases at once: the record is free when the process is gone,
  // not a TTL later.
  auto status = standby->Terminate(10s);
  ASSERT_TRUE(status.has_value()) << "SIGTERM did not end the sidecar";
  EXPECT_EQ(*status, 0) << testing::DescribeExit(*status) << "\n" << standby->Log();
  EXPECT_THAT(standby->Log(), HasSubstr("releasing"));
  auto store = OpenStore(ParseStoreUrl(store_url).value(), Runtime::Create());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto record = internal::InspectNow(**store, "job");
  ASSERT_TRUE(record.ok()) << record.status().ToString();
  EXPECT_FALSE(internal::IsHeld(*record)) << "still held by " << (*record)->holder;
}

}  // namespace leasehold::cli

#endif  // LEASEHOLD_TOOLS_LEASEHOLD_ELECT_TEST_UTIL_H_
