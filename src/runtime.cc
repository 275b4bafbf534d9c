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
    bool operator>(const Entry& o) const {
      return when != o.when ? when > o.when : id > o.id;
    }
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

  void Push(Task task) {
    {
      std::lock_guard lock(mu);
      tasks.push_back(std::move(task));
    }
    cv.notify_one();
  }
  static void Serve(std::shared_ptr<Lane> lane, const char* name) {
    std::unique_lock lock(lane->mu);
    for (;;) {
      lane->cv.wait(lock, [&] { return lane->stop || !lane->tasks.empty(); });
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
// cannot join itself; it finishes the task it is in and returns. It must not
// still be running when the process exits: exit() then runs static destructors
// and library cleanups (OpenSSL's, reached through libcurl and gRPC) under its
// feet, and its thread-local state is never freed. The reaper keeps these
// threads joinable and joins them once they have returned, at the latest from
// an exit handler registered at each hand-off, that is after the handlers of
// every client library the thread has used, so it runs before them.
class Reaper {
 public:
  // Takes `thread` (the calling thread, about to return); joins every thread
  // handed over earlier that has already returned.
  static void Adopt(std::thread thread, std::shared_ptr<std::atomic<bool>> returned) {
    Reaper& r = Get();
    std::vector<Entry> done;
    {
      std::lock_guard lock(r.mu_);
      for (auto it = r.threads_.begin(); it != r.threads_.end();) {
        if (it->returned->load()) {
          done.push_back(std::move(*it));
          it = r.threads_.erase(it);
        } else {
          ++it;
        }
      }
      r.threads_.push_back({std::move(thread), std::move(returned)});
    }
    for (auto& e : done) e.thread.join();
    // Registered again at later hand-offs (to come after libraries initialised
    // since), a bounded number of times: JoinAll is idempotent.
    static std::atomic<int> registrations{0};
    if (registrations.fetch_add(1) < kMaxRegistrations) std::atexit(&JoinAll);
  }

 private:
  static constexpr int kMaxRegistrations = 32;
  struct Entry {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> returned;
  };

  static Reaper& Get() {
    static Reaper* reaper = new Reaper;  // never destroyed: JoinAll runs at exit
    return *reaper;
  }

  static void JoinAll() {
    Reaper& r = Get();
    std::vector<Entry> all;
    {
      std::lock_guard lock(r.mu_);
      all.swap(r.threads_);
    }
    for (auto& e : all) {
      if (e.thread.get_id() == std::this_thread::get_id()) {
        e.thread.detach();  // exit() called from a task on this very thread
      } else {
        e.thread.join();
      }
    }
  }

  std::mutex mu_;
  std::vector<Entry> threads_;
};

class ThreadedRuntime final : public Runtime {
 public:
  explicit ThreadedRuntime(RuntimeOptions options)
      : options_(options), loop_(std::make_shared<LoopState>()),
        callbacks_(std::make_shared<Lane>()), blocking_(std::make_shared<Lane>()) {
    Spawn([state = loop_] { RunLoop(state); });
    Spawn([lane = callbacks_] { Lane::Serve(lane, "callback"); });
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
    for (auto& t : threads_) {
      if (t.thread.get_id() == std::this_thread::get_id()) {
        // The last reference was dropped by a task on this very thread: it
        // cannot join itself. Its state is shared, and it returns as soon as
        // the current task does; the reaper joins it then.
        Reaper::Adopt(std::move(t.thread), std::move(t.returned));
      } else {
        t.thread.join();
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

  void PostBlocking(Task task) override {
    {
      std::lock_guard lock(blocking_mu_);
      if (!blocking_started_) {
        blocking_started_ = true;
        for (size_t i = 0; i < options_.blocking_threads; ++i) {
          Spawn([lane = blocking_] { Lane::Serve(lane, "blocking"); });
        }
      }
    }
    blocking_->Push(std::move(task));
  }

  bool OnLoopThread() const noexcept override { return current_loop == loop_.get(); }

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

  struct Thread {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> returned;  // set as its function returns
  };
  template <typename F>
  void Spawn(F body) {
    auto returned = std::make_shared<std::atomic<bool>>(false);
    std::thread t([body = std::move(body), returned]() mutable {
      body();
      returned->store(true);
    });
    threads_.push_back({std::move(t), std::move(returned)});
  }

  RuntimeOptions options_;
  std::shared_ptr<LoopState> loop_;
  std::shared_ptr<Lane> callbacks_;
  std::shared_ptr<Lane> blocking_;
  std::mutex blocking_mu_;
  bool blocking_started_ = false;
  std::vector<Thread> threads_;
};

}  // namespace

std::shared_ptr<Runtime> Runtime::Create(RuntimeOptions options) {
  if (options.blocking_threads == 0) options.blocking_threads = 1;
  return std::make_shared<ThreadedRuntime>(options);
}

std::shared_ptr<Runtime> Runtime::Default() {
  static const std::shared_ptr<Runtime> runtime = Create();
  return runtime;
}

bool ShutDown(std::shared_ptr<Runtime> runtime, Duration patience) {
  if (!runtime) return true;
  // No notification exists for "a shared_ptr lost a reference"; the tasks in
  // question finish within microseconds, so poll finely, then coarsely.
  const auto give_up = std::chrono::steady_clock::now() + patience;
  auto pause = std::chrono::microseconds(50);
  while (runtime.use_count() > 1) {
    if (std::chrono::steady_clock::now() >= give_up) return false;
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds(10));
  }
  runtime.reset();  // the last reference: ~ThreadedRuntime joins here
  return true;
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
