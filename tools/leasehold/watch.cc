// `leasehold watch`: a line per change of holder until interrupted.
//
// A store's Watch() reports when a *held* record may have changed (released,
// expired, taken over); it has nothing to say about a free lease becoming held.
// So while the lease is held we sleep on the store's watch, and while it is free
// we poll every kPollInterval. Either way every wake re-reads the record, and a
// line is printed only when the holder or the sequence differs from the last
// line (a spurious wake or a renewal prints nothing).
//
// INT and TERM end the watch with exit 0: they are read from a signalfd, with
// the signals blocked before the runtime's threads exist so none of them takes
// the signal; the watch callback wakes the same poll() through an eventfd.
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>

#include "cli.h"

namespace leasehold::cli {
namespace {

using namespace internal;

// How often a free lease (or a store without Watch) is re-read.
constexpr int kPollIntervalMs = 100;

// A file descriptor closed on scope exit.
struct Fd {
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// Restores the signal mask on scope exit (WatchCommand may run inside a test
// process, not only as the whole of `leasehold watch`).
struct MaskGuard {
  sigset_t original;
  ~MaskGuard() { pthread_sigmask(SIG_SETMASK, &original, nullptr); }
};

// The part of a record a watcher reports a change of.
struct Observed {
  bool held = false;
  std::string holder;
  uint64_t sequence = 0;
  bool operator==(const Observed&) const = default;
};

Observed Observe(const std::optional<LeaseRecord>& record) {
  if (!record) return {};
  return {IsHeld(record), record->holder, record->token.sequence};
}

}  // namespace

int WatchCommand(const WatchArgs& args, std::ostream& out, std::ostream& err) {
  if (args.max_events < 0) {
    err << "leasehold watch: --max-events must be >= 0\n";
    return kExitUsage;
  }
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  MaskGuard mask;
  pthread_sigmask(SIG_BLOCK, &signals, &mask.original);
  Fd sigfd(signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK));
  // Shared with the watch callback, which may run after this function returns
  // if a wake races CancelWatch (the callback keeps the eventfd open).
  auto wake = std::make_shared<Fd>();
  wake->fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (sigfd.fd < 0 || wake->fd < 0) {
    err << "leasehold watch: signalfd/eventfd: " << std::strerror(errno) << "\n";
    return kExitUnavailable;
  }

  int code = kExitOk;
  CommandRuntime runtime;
  std::shared_ptr<Store> store = OpenOrReport(args.store_url, args.name, runtime.get(), err, &code);
  if (!store) return code;
  const Clock& clock = store->runtime()->clock();

  int printed = 0;
  std::optional<Observed> last;
  while (true) {
    auto record = InspectNow(*store, args.name);
    if (!record.ok()) {
      err << "leasehold: watch \"" << args.name << "\": " << record.status().message() << "\n";
      return ExitCodeFor(record.status());
    }
    const Observed now = Observe(*record);
    if (!last || *last != now) {
      out << (args.json ? RecordJson(args.name, *record)
                        : RecordLine(args.name, *record, clock.WallNow()))
          << std::endl;  // one line per change, visible at once through a pipe
      last = now;
      if (args.max_events > 0 && ++printed >= args.max_events) return kExitOk;
    }

    WatchId id = 0;
    if (now.held) {
      id = store->Watch(args.name, (*record)->version, [wake] {
        const uint64_t one = 1;
        [[maybe_unused]] ssize_t n = write(wake->fd, &one, sizeof one);
      });
    }
    pollfd fds[2] = {{sigfd.fd, POLLIN, 0}, {wake->fd, POLLIN, 0}};
    const int r = poll(fds, 2, id == 0 ? kPollIntervalMs : -1);
    if (id != 0) store->CancelWatch(id);
    if (r < 0 && errno != EINTR) {
      err << "leasehold watch: poll: " << std::strerror(errno) << "\n";
      return kExitUnavailable;
    }
    if (fds[0].revents & POLLIN) {
      // INT or TERM: a normal end. Consumed here, or restoring the mask would
      // deliver it.
      signalfd_siginfo info;
      while (read(sigfd.fd, &info, sizeof info) == sizeof info) {
      }
      return kExitOk;
    }
    if (fds[1].revents & POLLIN) {
      uint64_t value;
      [[maybe_unused]] ssize_t n = read(wake->fd, &value, sizeof value);
    }
  }
}

}  // namespace leasehold::cli
