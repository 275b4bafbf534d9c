// leasehold: an object shared so that one thread can wait for its last
// reference and destroy it there. Not part of the stable API (namespace
// detail).
//
// Why: a runtime's threads, or a gRPC channel, must not be destroyed from one
// of their own threads, yet the tasks that complete the last operations hold
// references a moment longer. Handover::Share hands out references whose
// shared deleter, when the last one goes, destroys the object -- or, while
// AwaitLast waits, passes it to AwaitLast, which destroys it on its own
// thread. A notification, not a reference count polled.
//
// Thread-safety: every function is safe from any thread.
#ifndef LEASEHOLD_DETAIL_HANDOVER_H_
#define LEASEHOLD_DETAIL_HANDOVER_H_

#include <condition_variable>
#include <memory>
#include <mutex>
#include <utility>

#include "leasehold/clock.h"

namespace leasehold::detail {

template <typename T>
class Handover {
 public:
  // Shares `object`: the last of the references destroys it, unless
  // AwaitLast is waiting for them to go.
  static std::shared_ptr<T> Share(std::unique_ptr<T> object) {
    auto owner = std::make_shared<Owner>();
    T* raw = object.get();
    owner->object = std::move(object);
    return std::shared_ptr<T>(raw, Deleter{std::move(owner)});
  }

  // True if `ref` is (a conversion of) a reference made by Share.
  template <typename U>
  static bool Shared(const std::shared_ptr<U>& ref) {
    return std::get_deleter<Deleter>(ref) != nullptr;
  }

  // Drops `ref` and waits at most `patience` for the other references to go;
  // then destroys the object on this thread and returns true. Returns false
  // if references remain (the last of them destroys it, wherever it goes).
  // REQUIRES: Shared(ref).
  template <typename U>
  static bool AwaitLast(std::shared_ptr<U> ref, Duration patience) {
    const std::shared_ptr<Owner> owner = std::get_deleter<Deleter>(ref)->owner;
    {
      std::lock_guard lock(owner->mu);
      owner->awaited = true;
    }
    ref.reset();
    std::unique_ptr<T> doomed;
    {
      std::unique_lock lock(owner->mu);
      const bool released = owner->cv.wait_for(lock, patience, [&] { return owner->released; });
      owner->awaited = false;
      if (!released) return false;
      doomed = std::move(owner->object);
    }
    return true;  // `doomed` is destroyed here, after the lock
  }

 private:
  struct Owner {
    std::mutex mu;
    std::condition_variable cv;
    bool released = false;  // the last reference is gone
    bool awaited = false;   // AwaitLast is waiting for that
    std::unique_ptr<T> object;
  };
  struct Deleter {
    std::shared_ptr<Owner> owner;
    void operator()(T*) const {
      std::unique_ptr<T> doomed;
      {
        std::lock_guard lock(owner->mu);
        owner->released = true;
        if (!owner->awaited) doomed = std::move(owner->object);
      }
      owner->cv.notify_all();
    }
  };
};

}  // namespace leasehold::detail

#endif  // LEASEHOLD_DETAIL_HANDOVER_H_
