#include "leasehold/runtime.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <queue>
#include <thread>
#include <unordered_map>
#include <vector>

#include "leasehold/detail/handover.h"

namespace leasehold {
namespace {

// Runs a task; nothing may escape into a runtime thread.
void RunContained(Task& task, const char* lane) noexcept {
  try {
    task();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "leasehold: exception escaped a %s task: %s\n", lane, e.what());
  } catch (...) {
    std::fprintf(stderr, "leasehold: unknown exception escaped a %s task\n", lane);
  }
}

// Timers: a min-heap of (when, id) plus the tasks by id. Cancelling erases the
// task; its heap entry is discarded when it reaches the top. Ids grow, so ties
// on `when` fire in the order the timers were set.
class TimerHeap {
 public:
  TimerId Add(TimePoint when, Task task) {
    TimerId id = ++last_id_;
    heap_.push({when, id});
    tasks_.emplace(id, std::move(task));
    return id;
  }
  // Returns the cancelled task so the caller can destroy it outside its lock
  // (its captures may own objects whose destructors call back in).
  Task Cancel(TimerId id) {
    auto it = tasks_.find(id);
    if (it == tasks_.end()) return nullptr;
    Task task = std::move(it->second);
    tasks_.erase(it);
    return task;
  }
  // The earliest live timer, dropping cancelled entries on the way.
  std::optional<TimePoint> Next() {
    while (!heap_.empty() && !tasks_.contains(heap_.top().id)) heap_.pop();
    if (heap_.empty()) return std::nullopt;
    return heap_.top().when;
  }
  // Pops the earliest timer if it is due at `now`.
  std::optional<Task> PopDue(TimePoint now) {
    auto next = Next();
    if (!next || *next > now) return std::nullopt;
    TimerId id = heap_.top().id;
    heap_.pop();
    auto it = tasks_.find(id);
    Task task = std::move(it->second);
    tasks_.erase(it);
    return task;
  }
  size_t size() const { return tasks_.size(); }

 private:
  struct Entry {
    TimePoint when;
    TimerId id;
    bool operator>(const Entry& o) const { return when != o.when ? when > o.when : id > o.id; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<>> heap_;
  std::unordered_map<TimerId, Task> tasks_;
  TimerId last_id_ = 0;
};

// A FIFO of tasks served by one or more threads. Its state is shared with the
// threads, so that a lane destroyed from one of its own threads (the last
// reference to a runtime dropped inside a task) stays valid until that thread
// has returned.
struct Lane {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Task> tasks;
  bool stop = false;
  size_t idle = 0;  // threads waiting for a task

  void Push(Task task) {
    {
      std::lock_guard lock(mu);
      tasks.push_back(std::move(task));
    }
    cv.notify_one();
  }
  // Push, and whether the task would wait: more tasks queued than threads
  // idle to take them.
  bool PushWouldWait(Task task) {
    bool wait;
    {
      std::lock_guard lock(mu);
      tasks.push_back(std::move(task));
      wait = tasks.size() > idle;
    }
    cv.notify_one();
    return wait;
  }
  static void Serve(std::shared_ptr<Lane> lane, const char* name) {
    std::unique_lock lock(lane->mu);
    for (;;) {
      ++lane->idle;
      lane->cv.wait(lock, [&] { return lane->stop || !lane->tasks.empty(); });
      --lane->idle;
      if (lane->stop) return;
      Task task = std::move(lane->tasks.front());
      lane->tasks.pop_front();
      lock.unlock();
      RunContained(task, name);
      task = nullptr;  // destroy captures outside the lock
      lock.lock();
    }
  }
};

thread_local const void* current_loop = nullptr;

// Threads of runtimes destroyed from one of their own threads. Such a thread
// cannot join itself; it finishes the task it is in and returns. It must be
// joined all the same -- its thread-local state (OpenSSL's, for one) is freed
// as it ends, and a thread still running through exit() has static
// destructors and library cleanups run under its feet. The reaper's own
// (detached) thread joins each adopted thread as soon as it returns, and an
// exit handler, registered at the hand-off (so after the handlers of every
// client library the thread has used, and run before them), waits until every
// adopted thread has been joined.
class Reaper {
 public:
  // Takes `thread`, the calling thread, which returns right after.
  static void Adopt(std::thread thread) {
    Reaper& r = Get();
    {
      std::lock_guard lock(r.mu_);
      r.pending_.push_back(std::move(thread));
      if (!r.started_) {
        r.started_ = true;
        std::thread([&r] { r.Serve(); }).detach();
      }
    }
    r.cv_.notify_all();
    // Registered again at later hand-offs (to come after libraries initialised
    // since), a bounded number of times: WaitForAll is idempotent.
    static std::atomic<int> registrations{0};
    if (registrations.fetch_add(1) < kMaxRegistrations) std::atexit(&WaitForAll);
  }

 private:
  static constexpr int kMaxRegistrations = 32;

  static Reaper& Get() {
    static Reaper* reaper = new Reaper;  // never destroyed: its thread outlives statics
    return *reaper;
  }

  void Serve() {
    std::unique_lock lock(mu_);
    for (;;) {
      cv_.wait(lock, [&] { return !pending_.empty(); });
      std::thread t = std::move(pending_.front());
      pending_.pop_front();
      ++joining_;
      lock.unlock();
      t.join();
      lock.lock();
      --joining_;
      cv_.notify_all();
    }
  }

  // At exit: until every adopted thread has been joined. A thread that calls
  // exit() from a task of a runtime it had just destroyed cannot wait for
  // itself: it is let go.
  static void WaitForAll() {
    Reaper& r = Get();
    std::unique_lock lock(r.mu_);
    for (auto it = r.pending_.begin(); it != r.pending_.end(); ++it) {
      if (it->get_id() == std::this_thread::get_id()) {
        it->detach();
        r.pending_.erase(it);
        break;
      }
    }
    r.cv_.wait(lock, [&] { return r.pending_.empty() && r.joining_ == 0; });
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::thread> pending_;
  int joining_ = 0;
  bool started_ = false;
};

class ThreadedRuntime final : public Runtime {
 public:
  explicit ThreadedRuntime(RuntimeOptions options)
      : options_(options),
        loop_(std::make_shared<LoopState>()),
        callbacks_(std::make_shared<Lane>()),
        blocking_(std::make_shared<Lane>()) {
    threads_.emplace_back([state = loop_] { RunLoop(state); });
    threads_.emplace_back([lane = callbacks_] { Lane::Serve(lane, "callback"); });
  }

  ~ThreadedRuntime() override {
    {
      std::lock_guard lock(loop_->mu);
      loop_->stop = true;
    }
    loop_->cv.notify_all();
    for (auto* lane : {callbacks_.get(), blocking_.get()}) {
      {
        std::lock_guard lock(lane->mu);
        lane->stop = true;
      }
      lane->cv.notify_all();
    }
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(threads_mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) {
      if (t.get_id() == std::this_thread::get_id()) {
        // The last reference was dropped by a task on this very thread: it
        // cannot join itself. Its state is shared, and it returns as soon as
        // the current task does; the reaper joins it then.
        Reaper::Adopt(std::move(t));
      } else {
        t.join();
      }
    }
  }

  const Clock& clock() const noexcept override { return RealClock(); }

  void Post(Task task) override {
    {
      std::lock_guard lock(loop_->mu);
      loop_->posted.push_back(std::move(task));
    }
    loop_->cv.notify_one();
  }

  TimerId RunAt(TimePoint when, Task task) override {
    TimerId id;
    bool earliest;
    {
      std::lock_guard lock(loop_->mu);
      auto next = loop_->timers.Next();
      id = loop_->timers.Add(when, std::move(task));
      earliest = !next || when < *next;
    }
    if (earliest) loop_->cv.notify_one();
    return id;
  }

  void CancelTimer(TimerId id) noexcept override {
    Task dropped;
    std::lock_guard lock(loop_->mu);
    dropped = loop_->timers.Cancel(id);
  }

  void PostCallback(Task task) override { callbacks_->Push(std::move(task)); }

  // The blocking lane grows on demand: a thread is started whenever a task
  // would wait and none is idle, up to options_.blocking_threads. Each
  // connection with a request out holds a thread for a round trip; a fixed
  // small pool shared by many stores queues their renewals behind each other
  // until they miss their deadlines.
  void PostBlocking(Task task) override {
    if (!blocking_->PushWouldWait(std::move(task))) return;
    std::lock_guard lock(threads_mu_);
    const size_t reserved = reserved_ > 0 ? static_cast<size_t>(reserved_) : 0;
    if (blocking_threads_ < std::max(options_.blocking_threads, reserved)) {
      ++blocking_threads_;
      threads_.emplace_back([lane = blocking_] { Lane::Serve(lane, "blocking"); });
    }
  }

  void ReserveBlocking(std::ptrdiff_t delta) noexcept override {
    std::lock_guard lock(threads_mu_);
    reserved_ += delta;
  }

  bool OnLoopThread() const noexcept override { return current_loop == loop_.get(); }
  bool MayBlock() const noexcept override { return !OnLoopThread(); }

  bool DriveUntil(const std::function<bool()>&) override { return false; }

 private:
  struct LoopState {
    std::mutex mu;
    std::condition_variable cv;
    TimerHeap timers;
    std::deque<Task> posted;
    bool stop = false;
  };

  // Fires every due timer, then every posted task, then sleeps until the next
  // timer or a Post. Timers due together fire before the tasks they post run,
  // which is what lets the renewal queue batch them.
  static void RunLoop(std::shared_ptr<LoopState> s) {
    current_loop = s.get();
    std::vector<Task> batch;
    std::unique_lock lock(s->mu);
    while (!s->stop) {
      const TimePoint now = RealClock().Now();
      while (auto task = s->timers.PopDue(now)) batch.push_back(std::move(*task));
      while (!s->posted.empty()) {
        batch.push_back(std::move(s->posted.front()));
        s->posted.pop_front();
      }
      if (!batch.empty()) {
        lock.unlock();
        for (auto& task : batch) RunContained(task, "loop");
        batch.clear();  // destroy captures outside the lock
        lock.lock();
        continue;
      }
      if (auto next = s->timers.Next()) {
        // Relative: RealClock is CLOCK_BOOTTIME, the condition variable's
        // clock is steady_clock; they differ by the time spent suspended.
        s->cv.wait_for(lock, *next - RealClock().Now());
      } else {
        s->cv.wait(lock);
      }
    }
  }

  RuntimeOptions options_;
  std::shared_ptr<LoopState> loop_;
  std::shared_ptr<Lane> callbacks_;
  std::shared_ptr<Lane> blocking_;
  std::mutex threads_mu_;  // guards threads_, blocking_threads_ and reserved_
  size_t blocking_threads_ = 0;
  std::ptrdiff_t reserved_ = 0;  // by open stores (ReserveBlocking)
  std::vector<std::thread> threads_;
};

}  // namespace

std::shared_ptr<Runtime> Runtime::Create(RuntimeOptions options) {
  if (options.blocking_threads == 0) options.blocking_threads = 1;
  // Shared so that ShutDown can take the last reference over (handover.h).
  return detail::Handover<ThreadedRuntime>::Share(std::make_unique<ThreadedRuntime>(options));
}

std::shared_ptr<Runtime> Runtime::Default() {
  static const std::shared_ptr<Runtime> runtime = Create();
  return runtime;
}

bool ShutDown(std::shared_ptr<Runtime> runtime, Duration patience) {
  if (!runtime) return true;
  if (!detail::Handover<ThreadedRuntime>::Shared(runtime)) {
    runtime.reset();  // not a threaded runtime of ours: no threads to join
    return true;
  }
  // The tasks still holding references finish within microseconds; then
  // ~ThreadedRuntime joins its threads on this thread.
  return detail::Handover<ThreadedRuntime>::AwaitLast(std::move(runtime), patience);
}

// --- SimulatedRuntime --------------------------------------------------------

struct SimulatedRuntime::Impl {
  FakeClock clock;
  mutable std::mutex mu;
  TimerHeap timers;
  std::deque<Task> posted;

  // Runs one due timer, else one posted task. False when neither exists.
  // Due timers first, like the threaded loop: timers due together all fire
  // before the tasks they post (which is what batches renewals).
  bool RunOne() {
    Task task;
    {
      std::lock_guard lock(mu);
      if (auto due = timers.PopDue(clock.Now())) {
        task = std::move(*due);
      } else if (!posted.empty()) {
        task = std::move(posted.front());
        posted.pop_front();
      } else {
        return false;
      }
    }
    RunContained(task, "simulated");
    return true;
  }

  std::optional<TimePoint> NextTimer() {
    std::lock_guard lock(mu);
    return timers.Next();
  }
};

SimulatedRuntime::SimulatedRuntime() : impl_(std::make_unique<Impl>()) {}
SimulatedRuntime::~SimulatedRuntime() = default;

std::shared_ptr<SimulatedRuntime> SimulatedRuntime::Create() {
  return std::shared_ptr<SimulatedRuntime>(new SimulatedRuntime());
}

FakeClock& SimulatedRuntime::fake_clock() noexcept { return impl_->clock; }
const Clock& SimulatedRuntime::clock() const noexcept { return impl_->clock; }

void SimulatedRuntime::RunUntilIdle() {
  while (impl_->RunOne()) {
  }
}

void SimulatedRuntime::RunFor(Duration d) {
  const TimePoint end = impl_->clock.Now() + d;
  for (;;) {
    RunUntilIdle();
    auto next = impl_->NextTimer();
    if (!next || *next > end) break;
    impl_->clock.AdvanceTo(*next);
  }
  impl_->clock.AdvanceTo(end);
  RunUntilIdle();
}

size_t SimulatedRuntime::pending_timers() const {
  std::lock_guard lock(impl_->mu);
  return impl_->timers.size();
}

void SimulatedRuntime::Post(Task task) {
  std::lock_guard lock(impl_->mu);
  impl_->posted.push_back(std::move(task));
}

TimerId SimulatedRuntime::RunAt(TimePoint when, Task task) {
  std::lock_guard lock(impl_->mu);
  return impl_->timers.Add(when, std::move(task));
}

void SimulatedRuntime::CancelTimer(TimerId id) noexcept {
  Task dropped;
  std::lock_guard lock(impl_->mu);
  dropped = impl_->timers.Cancel(id);
}

void SimulatedRuntime::PostCallback(Task task) { Post(std::move(task)); }
void SimulatedRuntime::PostBlocking(Task task) { Post(std::move(task)); }
bool SimulatedRuntime::OnLoopThread() const noexcept { return true; }
bool SimulatedRuntime::MayBlock() const noexcept { return true; }

bool SimulatedRuntime::DriveUntil(const std::function<bool()>& done) {
  while (!done()) {
    if (impl_->RunOne()) continue;
    auto next = impl_->NextTimer();
    if (!next) break;  // ran dry: the caller reports it
    impl_->clock.AdvanceTo(*next);
  }
  return true;
}

}  // namespace leasehold
