// leasehold: fencing tokens, and how a resource rejects stale holders.
//
// A lease alone cannot protect a resource: a holder can pause (GC, SIGSTOP, a
// slow disk) past its deadline, and when it resumes its in-flight write reaches
// the resource after someone else has taken over. The protection is fencing:
// every tenure gets a sequence strictly greater than every earlier tenure of the
// same lease, the holder sends it with each write, and the resource refuses any
// write whose sequence is lower than the highest it has seen. Fence below is that
// check for resources that live in the same process; a remote resource keeps the
// highest sequence itself (a column, a file, etcd's compare on create revision).
//
// Thread-safety: FencingToken is a value. Fence is safe from any thread.
#ifndef LEASEHOLD_FENCING_H_
#define LEASEHOLD_FENCING_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "leasehold/status.h"

namespace leasehold {

// Issued by the store on each successful acquire.
struct FencingToken {
  // Opaque, unique per tenure; compare for equality only. Stores put their own
  // identity into it (e.g. a Kubernetes object's uid), so tokens from different
  // stores or from a recreated record never compare equal.
  std::string value{};
  // Orders tenures of one lease name: strictly greater than the sequence of
  // every earlier tenure (across owners, after release, expiry or re-acquire by
  // the same owner). How long that holds depends on the store's durability
  // (documented per backend).
  uint64_t sequence = 0;

  friend bool operator==(const FencingToken&, const FencingToken&) = default;
};

// The resource-side check: admits sequence s only if s >= every sequence admitted
// before. Equal sequences are admitted (one tenure writes many times).
class Fence {
 public:
  Fence() noexcept = default;
  // Starts with a highest-seen sequence restored from the resource's storage.
  explicit Fence(uint64_t highest) noexcept : highest_(highest) {}

  // OK and records `sequence` as highest if sequence >= highest(); otherwise
  // kFailedPrecondition naming both sequences. The write the caller guards must
  // happen only on OK, and atomically with this check if the resource is shared
  // by several fences (a single Fence object serialises its own admissions).
  Status Admit(uint64_t sequence);

  uint64_t highest() const noexcept { return highest_.load(std::memory_order_acquire); }

 private:
  std::atomic<uint64_t> highest_{0};
};

}  // namespace leasehold

#endif  // LEASEHOLD_FENCING_H_
