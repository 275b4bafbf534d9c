// Acquires, checks and releases a lease through an installed leasehold.
#include <cstdio>

#include "leasehold/backends/memory.h"
#if LEASEHOLD_CONSUMER_ETCD
#include "leasehold/backends/etcd.h"
#endif
#if LEASEHOLD_CONSUMER_KUBERNETES
#include "leasehold/backends/kubernetes_credentials.h"
#endif
#if LEASEHOLD_CONSUMER_SQLITE
#include "leasehold/backends/sqlite.h"
#endif
#if LEASEHOLD_CONSUMER_POSTGRESQL
#include "leasehold/backends/postgresql.h"
#endif
#if LEASEHOLD_CONSUMER_REDIS
#include "leasehold/backends/redis.h"
#endif
#include "leasehold/lease.h"

int main() {
  using namespace std::chrono_literals;
  auto lease = leasehold::Lease::Create(leasehold::MemoryStore::Shared(),
                                        {.name = "consumer", .owner = "me", .ttl = 5s});
  if (!lease.ok()) return 1;
  auto token = (*lease)->AcquireWithToken();
  if (!token.ok() || !*token || !(*lease)->CheckAlive()) return 2;
  if (!(*lease)->Release().ok() || (*lease)->CheckAlive()) return 3;
#if LEASEHOLD_CONSUMER_ETCD
  // No endpoint: rejected before any IO, but the whole store is linked in.
  if (leasehold::EtcdStore::Open({}).status().code() != leasehold::StatusCode::kInvalidArgument) {
    return 4;
  }
#endif
#if LEASEHOLD_CONSUMER_KUBERNETES
  if (leasehold::kubernetes::ParseKubeconfig("current-context: x\n", "", "", false).ok()) return 5;
#endif
    // The other stores, rejected before any IO: linked with their libraries.
#if LEASEHOLD_CONSUMER_SQLITE
  if (leasehold::SqliteStore::Open({.path = "relative.db"}).ok()) return 6;
#endif
#if LEASEHOLD_CONSUMER_POSTGRESQL
  if (leasehold::PostgresStore::Open({.conninfo = "", .schema = "Not An Identifier"}).ok())
    return 7;
#endif
#if LEASEHOLD_CONSUMER_REDIS
  if (leasehold::ParseRedisUrl("http://127.0.0.1").ok()) return 8;
#endif
  std::printf("consumer: acquired sequence %llu and released\n",
              static_cast<unsigned long long>((*token)->sequence));
  return 0;
}
