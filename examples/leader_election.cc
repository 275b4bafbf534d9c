// leader_election: three candidates elect a leader on one lease, on the real
// threaded runtime and the in-memory store (TTL 1 s). About one second.
//
//   1. alpha, bravo and charlie campaign; one leads. Its on_started_leading
//      gets the fencing token and a stop token, and starts a worker thread
//      that "works" until the stop token fires. Everyone's on_new_leader
//      names the leader.
//   2. The leader shuts down: its stop token fires, its worker stops, the
//      lease is released after the leading callback returned, and a waiting
//      candidate -- woken by the store, not by polling -- takes over with a
//      higher fencing sequence.
//
// Exits non-zero if an invariant fails: two leaders at once, no hand-off, or a
// sequence that did not increase.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "leasehold/backends/memory.h"
#include "leasehold/leader_elector.h"
#include "leasehold/lease.h"

namespace {

using namespace std::chrono_literals;

struct Candidate {
  std::string name;
  std::unique_ptr<leasehold::LeaderElector> elector;
  std::atomic<uint64_t> sequence{0};
  std::jthread worker;
  std::mutex mu;
};

int Fail(const char* what) {
  std::fprintf(stderr, "leader_election: FAILED: %s\n", what);
  return 1;
}

}  // namespace

int main() {
  auto runtime = leasehold::Runtime::Create();
  auto store = leasehold::MemoryStore::Create(runtime);
  std::vector<std::unique_ptr<Candidate>> candidates;
  for (const char* name : {"alpha", "bravo", "charlie"}) {
    auto c = std::make_unique<Candidate>();
    c->name = name;
    auto lease = leasehold::Lease::Create(store, {.name = "scheduler", .owner = name, .ttl = 1s});
    if (!lease.ok()) return Fail(lease.status().ToString().c_str());
    Candidate* self = c.get();
    auto elector = leasehold::LeaderElector::Create(
        std::shared_ptr<leasehold::Lease>(std::move(*lease)),
        {.retry_period = 200ms,
         .recampaign = true,
         .health_tolerance = 0s,
         .callbacks = {
             .on_started_leading =
                 [self](const leasehold::FencingToken& token, std::stop_token stop) {
                   std::printf("%-8s starts leading (fencing sequence %llu)\n", self->name.c_str(),
                               static_cast<unsigned long long>(token.sequence));
                   self->sequence = token.sequence;
                   // Return promptly: the work runs on a thread of its own and
                   // ends when leadership does.
                   std::lock_guard lock(self->mu);
                   self->worker = std::jthread([stop, name = self->name] {
                     while (!stop.stop_requested()) std::this_thread::sleep_for(5ms);
                     std::printf("%-8s worker stopped\n", name.c_str());
                   });
                 },
             .on_stopped_leading =
                 [self] { std::printf("%-8s stops leading\n", self->name.c_str()); },
             .on_new_leader =
                 [self](const std::string& id) {
                   std::printf("%-8s sees leader %s\n", self->name.c_str(),
                               id.substr(0, id.find('#')).c_str());
                 },
         }});
    if (!elector.ok()) return Fail(elector.status().ToString().c_str());
    c->elector = std::move(*elector);
    candidates.push_back(std::move(c));
  }
  for (auto& c : candidates) c->elector->Start();

  // Waits until exactly one candidate other than `except` leads.
  auto wait_for_leader = [&](Candidate* except) -> Candidate* {
    for (int i = 0; i < 300; ++i) {
      Candidate* leader = nullptr;
      int leaders = 0;
      for (auto& c : candidates) {
        if (c->elector->IsLeader()) {
          ++leaders;
          leader = c.get();
        }
      }
      if (leaders > 1) return nullptr;
      if (leader && leader != except) return leader;
      std::this_thread::sleep_for(10ms);
    }
    return nullptr;
  };

  Candidate* first = wait_for_leader(nullptr);
  if (!first) return Fail("no single leader was elected");
  std::this_thread::sleep_for(300ms);
  if (!first->elector->CheckHealth().ok()) return Fail("the leader's renewal is not progressing");
  std::printf("-- %s shuts down\n", first->name.c_str());
  const leasehold::TimePoint handoff = leasehold::RealClock().Now();
  first->elector->Shutdown();
  Candidate* second = wait_for_leader(first);
  if (!second) return Fail("leadership was not handed over");
  std::printf("-- hand-off took %lld ms\n",
              static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                         leasehold::RealClock().Now() - handoff)
                                         .count()));
  // on_started_leading runs on the callback lane just after the win.
  for (int i = 0; i < 100 && second->sequence == 0; ++i) std::this_thread::sleep_for(10ms);
  if (second->sequence <= first->sequence) return Fail("the fencing sequence did not increase");
  for (auto& c : candidates) c->elector->Shutdown();
  for (auto& c : candidates) {
    std::lock_guard lock(c->mu);
    c->worker = {};  // joins: every worker saw its stop token
  }
  // Leases and stores first, then the runtime: ShutDown joins its threads here
  // once the tasks that completed the last operations have let go of it.
  candidates.clear();
  store.reset();
  if (!leasehold::ShutDown(std::move(runtime))) return Fail("something still holds the runtime");
  std::printf("leader_election: ok\n");
  return 0;
}
