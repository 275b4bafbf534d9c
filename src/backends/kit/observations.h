// leasehold::kit::ObservationBook: client-judged expiry (store.h) for stores
// whose records carry no clock this host can trust.
//
// A contender may take a foreign record over only after observing it
// unchanged (same version) for a window on its own monotonic clock, starting
// when the read that first showed that version was answered -- never earlier
// than the holder's write landed. The book remembers, per record, the version
// last seen and since when; ObservationWindow bounds how long a record may
// make contenders wait.
//
// Observations are facts about the server that any client of the process may
// use: by default the stores of one process on the real clock share one book
// (For), so a contender knows when a holder in the same process last wrote,
// as a long-running contender that watched would. Times on another clock
// (a simulated runtime's) mean something only on that clock: the stores of
// one such runtime share a book of the runtime's own.
//
// Thread-safety: ObservationBook is safe from any thread.
#ifndef LEASEHOLD_SRC_BACKENDS_KIT_OBSERVATIONS_H_
#define LEASEHOLD_SRC_BACKENDS_KIT_OBSERVATIONS_H_

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "leasehold/clock.h"
#include "leasehold/runtime.h"

namespace leasehold::kit {

class ObservationBook {
 public:
  // When `share`: the book of every store on the real clock, or of every
  // store of `runtime` when its clock is another. Otherwise a new book of the
  // caller's own.
  static std::shared_ptr<ObservationBook> For(bool share, const std::shared_ptr<Runtime>& runtime);

  // Records that `key` (a record of a store: the store's prefix + the name)
  // showed `version` in a read answered at `now`; returns for how long that
  // version has been seen.
  Duration Observe(const std::string& key, const std::string& version, TimePoint now);

 private:
  struct Seen {
    std::string version;
    TimePoint since;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Seen> seen_;
};

// How long a foreign record must be seen unchanged before it is free:
// min(the TTL the record states, max_factor x our TTL). A record stating no
// TTL, or a non-positive one, waits the cap.
Duration ObservationWindow(std::optional<Duration> record_ttl, Duration our_ttl, double max_factor);

}  // namespace leasehold::kit

#endif  // LEASEHOLD_SRC_BACKENDS_KIT_OBSERVATIONS_H_
