// leasehold: the in-memory store.
//
// The reference backend: records live in this process, so it coordinates the
// threads and components of one process (and tests). It is server-judged: a
// record expires TTL after the store processed the write, on the store runtime's
// clock, and the store notifies watchers at that moment.
//
// Fencing: each lease name has a counter that only grows -- also across release,
// expiry and Delete() -- so a sequence is never issued twice by one store object.
// The sequence domain is the store object's lifetime: a new MemoryStore (e.g. a
// restarted process) starts again at 1; tokens also carry a random store id, so
// tokens of two store objects never compare equal.
//
// Fault injection (for tests of consumers): added latency, unavailability, ops
// that never answer, lost compare-and-swaps, failing releases, and the writes
// of a foreign holder (TakeOver, Delete, ExpireNow).
//
// Thread-safety: every method is safe from any thread.
#ifndef LEASEHOLD_BACKENDS_MEMORY_H_
#define LEASEHOLD_BACKENDS_MEMORY_H_

#include <memory>
#include <optional>
#include <string>

#include "leasehold/runtime.h"
#include "leasehold/store.h"

namespace leasehold {

// Faults for one kind of operation.
struct OpFaults {
  // Delay before the operation takes effect and answers. A caller whose
  // deadline passes meanwhile gets kDeadlineExceeded, but the operation still
  // takes effect when the latency is over -- like a real network, where a
  // timed-out request may have landed.
  Duration latency{0};
  // With latency: answer when the operation lands even if the caller's
  // deadline has passed (a store that ignores deadlines), so the caller sees a
  // success it has stopped waiting for.
  bool answer_late = false;
  // Every operation fails with kUnavailable, without effect.
  bool unavailable = false;
  // Operations never answer and never take effect (a black-holed network).
  bool hang = false;
  // The next N operations fail with kUnavailable, without effect.
  int fail_next = 0;
};

struct MemoryFaults {
  OpFaults acquire{};
  OpFaults renew{};
  OpFaults release{};
  // The next N acquires that would have succeeded lose their compare-and-swap
  // (kAborted), as if another writer moved the record in between.
  int conflict_next_acquires = 0;
};

// Counters for tests and benchmarks.
struct MemoryStoreStats {
  uint64_t acquire_calls = 0;
  uint64_t renew_calls = 0;     // Renew() calls (batches)
  uint64_t renewed_leases = 0;  // leases in those batches
  uint64_t release_calls = 0;
  uint64_t inspect_calls = 0;
};

class MemoryStore final : public Store {
 public:
  // The store shared by every lease of the process, on Runtime::Default().
  static std::shared_ptr<MemoryStore> Shared();
  // An isolated store (tests), on `runtime` (Runtime::Default() if null).
  static std::shared_ptr<MemoryStore> Create(std::shared_ptr<Runtime> runtime = nullptr);

  ~MemoryStore() override;

  // Replaces the fault configuration (MemoryFaults{} clears it).
  void SetFaults(const MemoryFaults& faults);
  MemoryFaults faults() const;
  MemoryStoreStats stats() const;

  // A foreign writer takes the record: `holder` holds it for `ttl` with a new
  // sequence. Returns that sequence.
  uint64_t TakeOver(const std::string& name, const std::string& holder, Duration ttl);
  // Deletes the record (the counter survives). True if there was one.
  bool Delete(const std::string& name);
  // Makes the current tenure expire now. True if one was live.
  bool ExpireNow(const std::string& name);

  std::string Describe() const override;
  StoreCapabilities capabilities() const override;
  void Acquire(AcquireRequest request, AcquireCallback done) override;
  void Renew(std::vector<RenewRequest> batch, RenewCallback done) override;
  void Release(ReleaseRequest request, StatusCallback done) override;
  void Inspect(std::string name, TimePoint deadline, InspectCallback done) override;
  // Delete(): the record goes, the counter stays.
  void Break(std::string name, TimePoint deadline, StatusCallback done) override;
  void List(std::string prefix, TimePoint deadline, ListCallback done) override;
  WatchId Watch(const std::string& name, const std::string& version, Task on_change) override;
  void CancelWatch(WatchId id) noexcept override;

 private:
  struct State;
  explicit MemoryStore(std::shared_ptr<Runtime> runtime);
  std::shared_ptr<State> state_{};
};

}  // namespace leasehold

#endif  // LEASEHOLD_BACKENDS_MEMORY_H_
