// Figures of the Kubernetes store against the in-tree fake API server over
// loopback TLS (no API server can run here): API calls per operation, the
// acquire + release cycle, graceful hand-off to a waiting contender, and crash
// failover (a holder process SIGKILLed while a contender waits).
//
//   kubernetes_bench [--cycles N] [--handoffs N] [--failovers N] [--ttl-ms MS]
//
// The holder of the failover measurement is this program re-executed as
// `kubernetes_bench hold URL CA_FILE NAME TTL_MS`.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "fake_api_server.h"
#include "leasehold/backends/kubernetes.h"
#include "leasehold/future.h"
#include "leasehold/lease.h"

namespace {

using namespace std::chrono_literals;
using leasehold::Duration;
using leasehold::Lease;
using leasehold::TimePoint;
using leasehold::kubernetes::Credentials;
using leasehold::kubernetes::KubernetesStore;
using leasehold::kubernetes::testing::FakeApiServer;
using leasehold::kubernetes::testing::Verb;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::shared_ptr<KubernetesStore> OpenStore(const std::string& url, const std::string& ca_pem,
                                           const std::shared_ptr<leasehold::Runtime>& rt) {
  leasehold::kubernetes::KubernetesOptions options;
  options.credentials.server = url;
  options.credentials.ca_pem = ca_pem;
  options.credentials.token = "test-token";
  // Each client counts from its own observations, as separate processes do.
  options.share_observations = false;
  auto store = KubernetesStore::Open(options, rt);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    std::exit(1);
  }
  return *store;
}

std::unique_ptr<Lease> MakeLease(std::shared_ptr<KubernetesStore> store, const std::string& name,
                                 const std::string& owner, Duration ttl) {
  auto lease = Lease::Create(std::move(store), {.name = name, .owner = owner, .ttl = ttl});
  if (!lease.ok()) {
    std::fprintf(stderr, "lease: %s\n", lease.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(*lease);
}

double Ms(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }
double Us(Duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

Duration Percentile(std::vector<Duration> v, double p) {
  if (v.empty()) return Duration::zero();
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

int Hold(const std::string& url, const std::string& ca_file, const std::string& name, int ttl_ms) {
  auto rt = leasehold::Runtime::Create();
  auto lease = MakeLease(OpenStore(url, ReadFile(ca_file), rt), name, "crashing-holder",
                         std::chrono::milliseconds(ttl_ms));
  auto got = lease->Acquire();
  if (!got.ok() || !*got) return 2;
  std::printf("held\n");
  std::fflush(stdout);
  for (;;) std::this_thread::sleep_for(1s);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 6 && std::strcmp(argv[1], "hold") == 0) {
    return Hold(argv[2], argv[3], argv[4], std::atoi(argv[5]));
  }
  int cycles = 300, handoffs = 20, failovers = 5, ttl_ms = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (flag == "--cycles")
      cycles = v;
    else if (flag == "--handoffs")
      handoffs = v;
    else if (flag == "--failovers")
      failovers = v;
    else if (flag == "--ttl-ms")
      ttl_ms = v;
    else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 1;
    }
  }
  const Duration ttl = std::chrono::milliseconds(ttl_ms);
  auto server_or = FakeApiServer::Start();
  if (!server_or.ok()) {
    std::fprintf(stderr, "fake API server: %s\n", server_or.status().ToString().c_str());
    return 1;
  }
  auto& server = **server_or;
  auto rt = leasehold::Runtime::Create();
  const std::string url = server.url();
  const std::string ca = server.pki().ca_pem;
  const leasehold::Clock& clock = rt->clock();

  // API calls per operation, through the Lease API.
  {
    auto lease = MakeLease(OpenStore(url, ca, rt), "calls", "a", 3s);
    server.ClearRequests();
    if (!lease->Acquire().ok()) return 1;
    const size_t acquire_calls = server.Requests().size();
    std::this_thread::sleep_for(1s + 300ms);  // one renewal (interval ttl/3 = 1 s)
    const size_t renew_calls = server.CountRequests(Verb::kUpdate);
    server.ClearRequests();
    if (!lease->Release().ok()) return 1;
    const size_t release_calls = server.Requests().size();
    std::printf("| API calls: acquire of a free lease (GET + POST) | %zu | <= 2 |\n",
                acquire_calls);
    std::printf("| API calls: one renewal (PUT), after 1.3 s at renew interval 1 s | %zu | 1 |\n",
                renew_calls);
    std::printf("| API calls: release (PUT) | %zu | 1 |\n", release_calls);
  }

  // Acquire + release cycles.
  {
    auto lease = MakeLease(OpenStore(url, ca, rt), "cycle", "a", ttl);
    std::vector<Duration> lat;
    for (int i = 0; i < cycles; ++i) {
      const TimePoint t0 = clock.Now();
      auto got = lease->Acquire();
      if (!got.ok() || !*got) return 1;
      if (!lease->Release().ok()) return 1;
      lat.push_back(clock.Now() - t0);
    }
    std::printf(
        "| acquire + release through Lease (existing object: GET+PUT, PUT), p50 | %.1f us | p99 "
        "%.1f us, n=%d |\n",
        Us(Percentile(lat, 0.5)), Us(Percentile(lat, 0.99)), cycles);
  }

  // Graceful hand-off: the holder releases, a waiting contender holds.
  {
    auto holder = MakeLease(OpenStore(url, ca, rt), "handoff", "holder", ttl);
    auto waiter = MakeLease(OpenStore(url, ca, rt), "handoff", "waiter", ttl);
    std::vector<Duration> lat;
    for (int i = 0; i < handoffs; ++i) {
      auto& a = (i % 2 == 0) ? holder : waiter;
      auto& b = (i % 2 == 0) ? waiter : holder;
      auto got = a->Acquire();
      if (!got.ok() || !*got) return 1;
      auto pending = b->StartAcquire({.wait = true, .timeout = 10s});
      while (server.active_watches() == 0) std::this_thread::sleep_for(1ms);
      std::this_thread::sleep_for(20ms);
      const TimePoint t0 = clock.Now();
      if (!a->Release().ok()) return 1;
      const auto& r = pending.Wait();
      if (!r.ok() || !r->has_value()) return 1;
      lat.push_back(clock.Now() - t0);
      if (!b->Release().ok()) return 1;
      while (server.active_watches() != 0) std::this_thread::sleep_for(1ms);
    }
    std::printf(
        "| graceful hand-off (holder releases -> waiter holds), p50 | %.2f ms | max %.2f ms, n=%d, "
        "target <= 50 ms |\n",
        Ms(Percentile(lat, 0.5)), Ms(Percentile(lat, 1.0)), handoffs);
  }

  // Crash failover: a holder process is SIGKILLed while a contender waits.
  {
    std::vector<Duration> lat;
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return 1;
    self[n] = '\0';
    for (int i = 0; i < failovers; ++i) {
      const std::string name = "failover-" + std::to_string(i);
      int fds[2];
      if (pipe(fds) != 0) return 1;
      const pid_t pid = fork();
      if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        const std::string ttl_arg = std::to_string(ttl_ms);
        execl(self, self, "hold", url.c_str(), server.pki().ca_file.c_str(), name.c_str(),
              ttl_arg.c_str(), static_cast<char*>(nullptr));
        _exit(127);
      }
      close(fds[1]);
      char buf[16] = {0};
      if (read(fds[0], buf, sizeof buf - 1) <= 0) {
        std::fprintf(stderr, "holder did not start\n");
        return 1;
      }
      close(fds[0]);
      auto waiter = MakeLease(OpenStore(url, ca, rt), name, "waiter", ttl);
      auto pending = waiter->StartAcquire({.wait = true, .timeout = 30s});
      // Let the waiter watch through a few of the holder's renewals.
      std::this_thread::sleep_for(ttl);
      const TimePoint t0 = clock.Now();
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      const auto& r = pending.Wait();
      if (!r.ok() || !r->has_value()) {
        std::fprintf(stderr, "failover: %s\n",
                     r.ok() ? "contended" : r.status().ToString().c_str());
        return 1;
      }
      lat.push_back(clock.Now() - t0);
      (void)waiter->Release();
    }
    std::printf(
        "| crash failover at TTL %d ms (holder process SIGKILLed -> waiter holds), p50 | %.2f s | "
        "min %.2f s, max %.2f s, n=%d, target <= lease duration + 1 s |\n",
        ttl_ms, Ms(Percentile(lat, 0.5)) / 1000, Ms(Percentile(lat, 0.0)) / 1000,
        Ms(Percentile(lat, 1.0)) / 1000, failovers);
  }
  std::printf("| TLS connections the server accepted over the whole run | %zu | |\n",
              server.connections_accepted());
  return 0;
}
