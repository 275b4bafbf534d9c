// Helpers of the Redis backend's tests: the process's shared server, fresh
// key prefixes, and a foreign writer.
#ifndef LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_TEST_UTIL_H_
#define LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "redis_server.h"

namespace leasehold::redis_test {

// The process's server; fails the test (nullptr) when it cannot start.
inline RedisServer* SharedServer() {
  static std::unique_ptr<RedisServer> server = [] {
    auto s = RedisServer::Start();
    EXPECT_TRUE(s.ok()) << "cannot start redis-server: " << s.status().ToString();
    return s.ok() ? std::move(*s) : nullptr;
  }();
  return server.get();
}

// Waits (up to 10 s) until `replica` is in sync with its primary.
inline bool WaitForSync(RedisServer& replica) {
  for (int i = 0; i < 1000; ++i) {
    auto info = replica.Command({"INFO", "replication"});
    if (info.ok() && info->find("master_link_status:up") != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

// A key prefix no other test of this process uses.
inline std::string FreshPrefix() {
  static std::atomic<int> next{0};
  return "lh" + std::to_string(next++) + ":";
}

// Writes as a foreign program: `holder` takes `name` over with the next
// sequence of the counter (as a well-behaved other client would).
inline bool ForeignTakeOver(RedisServer& server, const std::string& prefix, const std::string& name,
                            const std::string& holder) {
  auto seq = server.Command({"HINCRBY", prefix + "fence:{" + name + "}", "last", "1"});
  auto id = server.Command({"HGET", prefix + "fence:{" + name + "}", "store_id"});
  if (!seq.ok() || !id.ok()) return false;
  if (id->empty()) {
    id = std::string("foreign");
    if (!server.Command({"HSET", prefix + "fence:{" + name + "}", "store_id", *id}).ok()) {
      return false;
    }
  }
  auto v = server.Command({"HINCRBY", prefix + "lease:{" + name + "}", "version", "1"});
  auto set = server.Command({"HSET", prefix + "lease:{" + name + "}", "holder", holder, "sequence",
                             *seq, "store_id", *id, "ttl_ms", "60000"});
  EXPECT_TRUE(v.ok() && set.ok());
  return v.ok() && set.ok();
}

inline bool ForeignDelete(RedisServer& server, const std::string& prefix, const std::string& name) {
  auto r = server.Command({"DEL", prefix + "lease:{" + name + "}"});
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok();
}

}  // namespace leasehold::redis_test

#endif  // LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_TEST_UTIL_H_
