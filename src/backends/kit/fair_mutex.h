// leasehold::kit::FairMutex: a mutex that admits waiters in the order they
// came (a ticket lock over std::mutex and a condition variable).
//
// Why: a store with one connection serialises its requests under a mutex,
// and std::mutex is not fair. A thread acquiring leases in a loop releases
// and re-takes it before a renewal blocked on it wakes, so under load the
// renewal batch can wait past its leases' deadlines -- every lease of the
// batch lost at once. In FIFO order a renewal waits for at most the requests
// queued before it.
//
// Thread-safety: a BasicLockable; use it with std::lock_guard or
// std::unique_lock. Not recursive.
#ifndef LEASEHOLD_SRC_BACKENDS_KIT_FAIR_MUTEX_H_
#define LEASEHOLD_SRC_BACKENDS_KIT_FAIR_MUTEX_H_

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace leasehold::kit {

class FairMutex {
 public:
  void lock() {
    std::unique_lock lock(mu_);
    const uint64_t ticket = next_++;
    turn_changed_.wait(lock, [&] { return serving_ == ticket; });
  }
  void unlock() {
    {
      std::lock_guard lock(mu_);
      ++serving_;
    }
    turn_changed_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable turn_changed_;
  uint64_t next_ = 0;     // the ticket the next caller takes
  uint64_t serving_ = 0;  // the ticket that holds the lock (or is next to)
};

}  // namespace leasehold::kit

#endif  // LEASEHOLD_SRC_BACKENDS_KIT_FAIR_MUTEX_H_
