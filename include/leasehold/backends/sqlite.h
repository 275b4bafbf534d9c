// leasehold: the embedded SQLite store -- leases shared by every process of one
// host through one database file, with nothing to install or run.
//
// Expiry is server-judged on a clock every process of the host shares and that
// cannot jump: the runtime's monotonic clock (RealClock: CLOCK_BOOTTIME),
// qualified by the kernel's boot id. A record written during another boot is
// free, so a reboot expires everything.
//
// Fencing: each lease name has a sequence row that is only ever incremented, in
// the same transaction as the acquire, committed with synchronous=FULL:
// sequences are strictly increasing across process crashes, restarts, release,
// expiry, a `break`, and power loss. (Renewals and releases commit with
// synchronous=NORMAL: after a power loss the boot id changes and every lease
// is free anyway.) Deleting the database file restarts them; tokens
// carry a random id created with the file, so tokens from two files never
// compare equal.
//
// Concurrency: WAL mode, one connection per SqliteStore object, every write in
// a BEGIN IMMEDIATE transaction (a compare-and-swap under SQLite's write lock:
// no lost updates between processes), a busy timeout for waiting on other
// writers. Renewals falling due together are one transaction. SQLite calls
// block, so they run on the runtime's blocking lane when issued from a loop
// thread, and on the caller's thread otherwise.
//
// Waiting: a watched lease's row is polled every `poll_interval`, only while
// someone watches, so a waiter notices a release, a takeover or an expiry
// within about that interval.
//
// Thread-safety: every method is safe from any thread.
#ifndef LEASEHOLD_BACKENDS_SQLITE_H_
#define LEASEHOLD_BACKENDS_SQLITE_H_

#include <chrono>
#include <memory>
#include <string>

#include "leasehold/runtime.h"
#include "leasehold/status.h"
#include "leasehold/store.h"

namespace leasehold {

struct SqliteOptions {
  // Absolute path of the database file; created (with its directory's
  // permission) on first use.
  std::string path{};
  // How long one statement waits for another process's write lock before
  // failing with kUnavailable. Must be > 0.
  Duration busy_timeout = std::chrono::seconds(5);
  // How often watched leases are polled. Must be > 0.
  Duration poll_interval = std::chrono::milliseconds(5);
};

// The store's operations are Store's (store.h); the implementation
// (sqlite_store.cc) derives from this class.
class SqliteStore : public Store {
 public:
  // Opens (creating if needed) the database and its schema. Errors:
  // kInvalidArgument for bad options or a relative path; kUnavailable when the
  // file cannot be opened or is locked beyond the busy timeout; kDataLoss when
  // the file is not a leasehold database (or not SQLite at all).
  static Result<std::shared_ptr<SqliteStore>> Open(SqliteOptions options,
                                                   std::shared_ptr<Runtime> runtime = nullptr);

 protected:
  using Store::Store;
};

}  // namespace leasehold

#endif  // LEASEHOLD_BACKENDS_SQLITE_H_
