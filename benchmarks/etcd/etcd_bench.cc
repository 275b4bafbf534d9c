// etcd_bench: the measurements of benchmarks/etcd/run against one etcd.
//
//   etcd_bench cycle ENDPOINT OPS     leasehold acquire+release cycles interleaved
//                                     with the raw floor (a bare create-if-absent
//                                     Txn + a delete Txn over synchronous gRPC);
//                                     prints both p50/p99 in microseconds
//   etcd_bench handoff ENDPOINT ROUNDS  holder releases -> waiting contender holds
//   etcd_bench hold ENDPOINT NAME TTL_S   acquires, prints "held", sleeps until killed
//   etcd_bench wait ENDPOINT NAME TTL_S   waits for the lease; prints the wall-clock
//                                     time (ns since the epoch) when it holds it
//   etcd_bench many ENDPOINT COUNT TTL_S WINDOW_S   holds COUNT leases through one
//                                     store; prints CPU % of one core over WINDOW_S
//                                     at steady state
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../store_bench.h"
#include "leasehold/backends/etcd.h"
#include "leasehold/lease.h"
#include "rpc.grpc.pb.h"

namespace {

using namespace std::chrono_literals;
using leasehold::Duration;
using SteadyClock = std::chrono::steady_clock;
using leasehold::bench::Check;
using leasehold::bench::CpuSeconds;
using leasehold::bench::NewLease;
using leasehold::bench::Percentile;

std::shared_ptr<leasehold::EtcdStore> OpenStore(const std::string& endpoint,
                                                const std::shared_ptr<leasehold::Runtime>& rt) {
  auto s = leasehold::EtcdStore::Open({.endpoints = {endpoint}, .key_prefix = "bench/"}, rt);
  if (!s.ok()) leasehold::bench::Die(s.status().ToString());
  return *s;
}

// The floor: the two transactions a cycle needs, bare, synchronous, on a
// channel of its own.
class RawFloor {
 public:
  explicit RawFloor(const std::string& endpoint)
      : kv_(etcdserverpb::KV::NewStub(
            grpc::CreateChannel(endpoint, grpc::InsecureChannelCredentials()))) {}

  bool Cycle() {
    const std::string key = "bench/raw";
    etcdserverpb::TxnRequest create;
    auto* cmp = create.add_compare();
    cmp->set_key(key);
    cmp->set_target(etcdserverpb::Compare::CREATE);
    cmp->set_result(etcdserverpb::Compare::EQUAL);
    cmp->set_create_revision(0);
    auto* put = create.add_success()->mutable_request_put();
    put->set_key(key);
    put->set_value("raw");
    create.add_failure()->mutable_request_range()->set_key(key);
    etcdserverpb::TxnResponse r1;
    grpc::ClientContext c1;
    if (!kv_->Txn(&c1, create, &r1).ok() || !r1.succeeded()) return false;
    etcdserverpb::TxnRequest del;
    auto* cmp2 = del.add_compare();
    cmp2->set_key(key);
    cmp2->set_target(etcdserverpb::Compare::CREATE);
    cmp2->set_result(etcdserverpb::Compare::EQUAL);
    cmp2->set_create_revision(r1.header().revision());
    del.add_success()->mutable_request_delete_range()->set_key(key);
    etcdserverpb::TxnResponse r2;
    grpc::ClientContext c2;
    return kv_->Txn(&c2, del, &r2).ok() && r2.succeeded();
  }

 private:
  std::unique_ptr<etcdserverpb::KV::Stub> kv_;
};

int Cycle(const std::string& endpoint, int ops) {
  auto rt = leasehold::Runtime::Create();
  auto lease = NewLease(OpenStore(endpoint, rt), "cycle", "bench", 10s);
  RawFloor raw(endpoint);
  return leasehold::bench::CycleAgainstFloor(
      *lease, [&raw] { return raw.Cycle(); }, ops);
}

int Handoff(const std::string& endpoint, int rounds) {
  auto rt = leasehold::Runtime::Create();
  auto holder = NewLease(OpenStore(endpoint, rt), "handoff", "holder", 10s);
  auto waiter = NewLease(OpenStore(endpoint, rt), "handoff", "waiter", 10s);
  std::vector<Duration> d;
  for (int i = -5; i < rounds; ++i) {
    auto got = holder->Acquire();
    Check(got.ok() && *got, "holder acquire");
    auto f = waiter->StartAcquire({.wait = true, .timeout = 10s});
    std::this_thread::sleep_for(20ms);  // the waiter is watching by now
    auto t0 = SteadyClock::now();
    Check(holder->Release().ok(), "release");
    const auto& r = f.Wait();
    auto t1 = SteadyClock::now();
    Check(r.ok() && r->has_value(), "waiter acquire");
    if (i >= 0) d.push_back(t1 - t0);
    Check(waiter->Release().ok(), "waiter release");
  }
  std::printf("handoff_p50_us %.1f\nhandoff_p99_us %.1f\n", Percentile(d, 0.5),
              Percentile(d, 0.99));
  return 0;
}

int Many(const std::string& endpoint, int count, int ttl_s, int window_s) {
  auto rt = leasehold::Runtime::Create();
  auto store = OpenStore(endpoint, rt);
  std::vector<std::unique_ptr<leasehold::Lease>> leases;
  std::vector<leasehold::Future<leasehold::AcquireResult>> futures;
  for (int i = 0; i < count; ++i) {
    leases.push_back(
        NewLease(store, "many/" + std::to_string(i), "bench", std::chrono::seconds(ttl_s)));
    futures.push_back(leases.back()->StartAcquire());
    if (futures.size() % 500 == 0) futures.back().Wait();  // keep the pipeline bounded
  }
  for (auto& f : futures) {
    const auto& r = f.Wait();
    Check(r.ok() && r->has_value(), "acquire of one of many");
  }
  // Every lease renews at least once before the window starts.
  std::this_thread::sleep_for(std::chrono::seconds(ttl_s) / 2);
  const double c0 = CpuSeconds();
  const auto t0 = SteadyClock::now();
  std::printf("steady\n");
  std::fflush(stdout);
  std::this_thread::sleep_for(std::chrono::seconds(window_s));
  const double cpu = CpuSeconds() - c0;
  const double wall = std::chrono::duration<double>(SteadyClock::now() - t0).count();
  int alive = 0;
  for (auto& l : leases) alive += l->CheckAlive() ? 1 : 0;
  std::printf("alive %d\ncpu_percent %.2f\n", alive, 100.0 * cpu / wall);
  std::fflush(stdout);
  return alive == count ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  using Args = std::vector<std::string>;
  return leasehold::bench::Main(
      argc, argv, "etcd_bench", "ENDPOINT",
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
