// The history of a partition test, and the checker that judges it.
//
// Every holder process (partition_holder.cc) appends to a log of its own:
//   acquired SEQ T      AcquireWithToken() returned the tenure SEQ at T
//   alive SEQ T         CheckAlive() was true just before T
//   ended SEQ T WHY     the tenure ended at T: lost | released | release-failed
// and every fenced write, admitted or not, is appended under the fence's lock
// to one shared log, in the order the fence decided them:
//   T SEQ admitted|rejected HOLDER
// T is CLOCK_BOOTTIME in nanoseconds: one clock for every process of the host,
// which neither NTP steps nor suspends move.
//
// A tenure's believed interval runs from its `acquired` line to its last
// `alive` line. The checker asserts what a lease promises:
//   * no two tenures' believed intervals overlap (at most one holder);
//   * no sequence is issued twice, and sequences grow with the tenures' starts;
//   * the fence never admitted a write with a sequence below one it admitted
//     before (a stale holder never got a write in);
// and measures how soon the lease is held again after a heal.
//
// Thread-safety: plain values and free functions.
#ifndef LEASEHOLD_TESTS_PARTITION_HISTORY_H_
#define LEASEHOLD_TESTS_PARTITION_HISTORY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "leasehold/status.h"

namespace leasehold::partition {

// CLOCK_BOOTTIME now, in nanoseconds, by the system call itself: libfaketime
// (a holder with a drifting clock) interposes on libc only, so every process
// logs the host's time.
int64_t BootNs();

struct Tenure {
  std::string holder{};
  uint64_t sequence = 0;
  int64_t start_ns = 0;       // AcquireWithToken() had returned
  int64_t last_alive_ns = 0;  // the last moment CheckAlive() was seen true (>= start_ns)
  std::string end{};          // lost | released | release-failed | "" (still open)
};

struct Write {
  int64_t at_ns = 0;
  uint64_t sequence = 0;
  bool admitted = false;
  std::string holder{};
};

struct History {
  std::vector<Tenure> tenures{};  // in no particular order
  std::vector<Write> writes{};    // in the fence's order
};

struct Verdict {
  int tenures = 0;
  int overlaps = 0;            // pairs of tenures believed at once: must be 0
  int repeated_sequences = 0;  // must be 0
  int backward_sequences = 0;  // a later tenure with a lower sequence: must be 0
  int writes_admitted = 0;
  int stale_writes_accepted = 0;        // must be 0
  int stale_writes_rejected = 0;        // the fence at work (writes that lagged their tenure)
  std::vector<std::string> problems{};  // one line per violation, with the evidence
  bool ok() const { return problems.empty(); }
};

Verdict Check(const History& history);

// How long after `heal_ns` the lease was held again: the first `alive` moment
// at or after heal_ns of any tenure, minus heal_ns; nullopt when none was.
std::optional<int64_t> HeldAgainAfterNs(const History& history, int64_t heal_ns);

// Reads every holder log (files named holder-*.log) and the write log
// (`writes`) in `dir`. A line that does not parse, a tenure whose lines
// disagree, is kDataLoss naming the file and line.
Result<History> ReadHistory(const std::string& dir);

// Parses one holder log's text into `out` (`source` names it in errors).
Status ParseHolderLog(const std::string& text, const std::string& holder, const std::string& source,
                      History* out);
// Parses the write log's text into `out`.
Status ParseWriteLog(const std::string& text, const std::string& source, History* out);

}  // namespace leasehold::partition

#endif  // LEASEHOLD_TESTS_PARTITION_HISTORY_H_
