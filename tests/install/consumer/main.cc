// Acquires, checks and releases a lease through an installed leasehold.
#include <cstdio>

#include "leasehold/backends/memory.h"
#include "leasehold/lease.h"

int main() {
  using namespace std::chrono_literals;
  auto lease = leasehold::Lease::Create(leasehold::MemoryStore::Shared(),
                                        {.name = "consumer", .owner = "me", .ttl = 5s});
  if (!lease.ok()) return 1;
  auto token = (*lease)->AcquireWithToken();
  if (!token.ok() || !*token || !(*lease)->CheckAlive()) return 2;
  if (!(*lease)->Release().ok() || (*lease)->CheckAlive()) return 3;
  std::printf("consumer: acquired sequence %llu and released\n",
              static_cast<unsigned long long>((*token)->sequence));
  return 0;
}
