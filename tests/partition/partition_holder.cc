// One contender of a partition test: a process of its own (the harness tells
// its packets apart by the user it runs as) that takes the lease, works under
// it with fenced writes while CheckAlive() says it holds, and logs what it
// believed and wrote (history.h) until a stop file appears.
//
//   partition_holder --store URL --name NAME --id ID --ttl-ms N --dir DIR
//   partition_holder --init 1 --store URL     (creates a store's schema)
//
// The harness may run a holder under libfaketime at a rate (its clocks and
// sleeps slowed or sped up, as a drifting clock); the times it logs are read
// from the kernel directly, so the checker judges every holder on the host's
// clock.
//
// DIR holds this holder's log (holder-ID.log), the fence (`fence`: the
// highest sequence admitted, under flock) and the shared write log (`writes`).
// A tenure lasts 2 to 6 TTLs unless lost. One write in twenty -- one in two
// while renewals are failing -- lags its check by half a TTL to one and a
// half, as a writer stalled between its check and its write would, so that
// the fence has stale writes to reject.
// Exit: 0 when stopped, 2 on bad arguments or a store that cannot be opened.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <thread>

#include "cli.h"
#include "history.h"
#include "leasehold/lease.h"
#include "leasehold/runtime.h"

namespace {

using namespace std::chrono_literals;
using leasehold::partition::BootNs;

void Append(const std::string& path, const std::string& line) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (fd < 0) {
    std::perror(path.c_str());
    std::_Exit(3);  // a history with holes cannot be judged
  }
  if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) std::_Exit(3);
  close(fd);
}

// The fenced resource: admits `seq` when no higher one was admitted before.
void FencedWrite(const std::string& dir, const std::string& id, uint64_t seq) {
  const std::string fence = dir + "/fence";
  const int fd = open(fence.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0 || flock(fd, LOCK_EX) != 0) std::_Exit(3);
  char buf[32] = {};
  if (pread(fd, buf, sizeof buf - 1, 0) < 0) std::_Exit(3);
  const uint64_t highest = std::strtoull(buf, nullptr, 10);
  const bool admitted = seq >= highest;
  if (admitted) {
    const std::string v = std::to_string(seq) + "\n";
    if (ftruncate(fd, 0) != 0 || pwrite(fd, v.data(), v.size(), 0) < 0) std::_Exit(3);
  }
  Append(dir + "/writes", std::to_string(BootNs()) + " " + std::to_string(seq) +
                              (admitted ? " admitted " : " rejected ") + id + "\n");
  close(fd);  // drops the lock after the log line: the log keeps the fence's order
}

bool Stopped(const std::string& dir) { return access((dir + "/stop").c_str(), F_OK) == 0; }

}  // namespace

int main(int argc, char** argv) {
  umask(0);  // the holders run as different users and share the fence and the write log
  std::string store_url, name = "partition", id, dir;
  long ttl_ms = 1000;
  bool init = false;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--store") {
      store_url = value;
    } else if (flag == "--name") {
      name = value;
    } else if (flag == "--id") {
      id = value;
    } else if (flag == "--dir") {
      dir = value;
    } else if (flag == "--ttl-ms") {
      ttl_ms = std::strtol(value.c_str(), nullptr, 10);
    } else if (flag == "--init") {
      init = value == "1";
    } else {
      std::cerr << "partition_holder: unknown option " << flag << "\n";
      return 2;
    }
  }
  if (init) {
    auto spec = leasehold::cli::ParseStoreUrl(store_url);
    leasehold::Status s = spec.ok() ? leasehold::cli::InitSchema(*spec, std::cout) : spec.status();
    if (!s.ok()) std::cerr << "partition_holder: " << s.ToString() << "\n";
    return s.ok() ? 0 : 2;
  }
  if (store_url.empty() || id.empty() || dir.empty() || ttl_ms <= 0) {
    std::cerr << "partition_holder: --store, --id, --dir and a positive --ttl-ms are required\n";
    return 2;
  }
  auto spec = leasehold::cli::ParseStoreUrl(store_url);
  if (!spec.ok()) {
    std::cerr << "partition_holder: " << spec.status().ToString() << "\n";
    return 2;
  }
  auto runtime = leasehold::Runtime::Create();
  // A store that is slow to accept a first connection (a cluster that just
  // started, a loaded machine) is tried again for half a minute.
  auto store = leasehold::cli::OpenStore(*spec, runtime);
  for (int tries = 1; !store.ok() && tries < 6 && !Stopped(dir); ++tries) {
    std::cerr << "partition_holder " << id << ": " << store.status().ToString() << "; again\n";
    store = leasehold::cli::OpenStore(*spec, runtime);
  }
  if (!store.ok()) {
    std::cerr << "partition_holder: " << store.status().ToString() << "\n";
    return 2;
  }
  const auto ttl = std::chrono::milliseconds(ttl_ms);
  auto lease = leasehold::Lease::Create(*store, {.name = name, .owner = id, .ttl = ttl});
  if (!lease.ok()) {
    std::cerr << "partition_holder: " << lease.status().ToString() << "\n";
    return 2;
  }
  const std::string log = dir + "/holder-" + id + ".log";
  std::mt19937 rng(static_cast<unsigned>(getpid()) ^ static_cast<unsigned>(BootNs()));
  while (!Stopped(dir)) {
    auto token = (*lease)->AcquireWithToken({.wait = true, .timeout = 300ms});
    if (!token.ok()) {
      if (token.status().code() != leasehold::StatusCode::kDeadlineExceeded) {
        std::cerr << "partition_holder " << id << ": " << token.status().ToString() << "\n";
        std::this_thread::sleep_for(50ms);
      }
      continue;
    }
    if (!token->has_value()) continue;
    const uint64_t seq = (*token)->sequence;
    Append(log, "acquired " + std::to_string(seq) + " " + std::to_string(BootNs()) + "\n");
    const int64_t until = BootNs() + ttl_ms * 1'000'000 * (2 + static_cast<int64_t>(rng() % 5));
    bool alive = true;
    while (BootNs() < until && !Stopped(dir)) {
      alive = (*lease)->CheckAlive();
      const int64_t seen = BootNs();
      if (!alive) break;
      Append(log, "alive " + std::to_string(seq) + " " + std::to_string(seen) + "\n");
      // A writer stalled between its check and its write: now and then at
      // any time, and often when renewals are failing (less than half a TTL
      // left, as behind a partition), where a stall outlasts the tenure.
      const auto deadline = (*lease)->safe_deadline();
      const bool failing = deadline && *deadline - runtime->clock().Now() < ttl / 2;
      if (rng() % (failing ? 2 : 20) == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(ttl_ms / 2 + rng() % ttl_ms));
      }
      FencedWrite(dir, id, seq);
      std::this_thread::sleep_for(std::chrono::milliseconds(std::max(1L, ttl_ms / 20)));
    }
    std::string why = "lost";
    if (alive) why = (*lease)->Release().ok() ? "released" : "release-failed";
    Append(log, "ended " + std::to_string(seq) + " " + std::to_string(BootNs()) + " " + why + "\n");
  }
  // The lease and the store first, then the runtime: ShutDown() joins its
  // threads here. Without it a retry in flight kept the runtime alive past
  // main(), and its thread ran on through exit(), inside libpq, while the
  // Kerberos library's finalizer destroyed a mutex under it (seen by TSan).
  lease->reset();
  store->reset();
  if (!leasehold::ShutDown(std::move(runtime))) {
    std::cerr << "partition_holder " << id << ": the runtime is still held after the shutdown\n";
    return 4;
  }
  return 0;
}
