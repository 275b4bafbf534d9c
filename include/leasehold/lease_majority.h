// leasehold: LeaseMajority, a split-brain strategy that breaks ties with a lease.
//
// Every member of the cluster runs one LeaseMajority (one Lease each, all on
// the same lease name in the same store, each Lease's owner being the member's
// address). Given a member's view of a partition (partition.h):
//
//   * strict majority of the counted members reachable: down the unreachable
//     side; no lease call;
//   * strict minority: down our own side; no lease call;
//   * an equal split: the lease decides. One member per side -- the *decider*,
//     the lowest-addressed counted member of that side -- starts ONE acquire
//     without blocking and answers "no decision" while it is pending. A win
//     downs the other side; contention ("someone else holds it") downs our
//     own; an error leaves us undecided and a later call retries.
//     The other members of the side never race for the lease (racing is what
//     made the anchor down its own winning side): they read the lease record
//     and adopt the outcome once the record proves a decision -- the same
//     tenure still live more than its remaining time after they first saw it,
//     i.e. renewed since, which only a decider that won does (see
//     docs/lease-majority.md for why an abandoned attempt can never look like
//     that). The holder's side survives whole; the other side downs itself.
//
// Improvements over a plain race, each an option: the view must have been
// unchanged for `stable_after` before any decision; the side with fewer
// members in total waits `minority_delay` before its decider tries, so the
// larger side usually wins; a winner holds the lease until the other side is
// gone (no unreachable member in its view) and `release_after` has passed
// since the win, then releases it.
//
// Epochs: each view change starts a new epoch. A result of an attempt started
// in an earlier epoch, or abandoned by its timeout, never becomes a decision.
// Such an abandoned attempt is tracked: if it later wins, the tenure is
// released from the attempt's continuation, before the Lease could renew it;
// no new attempt starts until it has settled; if that release fails, no
// decision is made for the then-current view until it changes (fail-safe).
// No attempt starts while a tenure of ours that backs no decision may live
// in the store: after an attempt that ended in an error, a failed release or
// a lost tenure, for 2 x request_timeout + TTL + drift. Each attempt is one
// request (AcquireOptions::attempts = 1).
// A heal (nobody unreachable) resets everything except that tracking.
//
// All timing uses the clock of the lease's store runtime (Runtime::clock());
// timers are runtime timers; nothing sleeps. The fencing token of a won
// tenure is part of the decision when the store issues tokens
// (Lease::SupportsFencing(); StartAcquire() is AcquireWithToken() without
// blocking); without fencing the decision carries no token.
//
// Safety assumptions (docs/lease-majority.md has the argument):
//   * the lease store is reachable from both sides (or, if it is not, from
//     neither for longer than the lease's TTL while a decision stands);
//   * the monotonic clocks of the members and the store drift apart by at most
//     the lease's drift allowance per TTL;
//   * a request the store did not answer by its deadline lands, if at all,
//     within one request_timeout after it (lease.h's settling bound);
//   * members of one side see the same partition, and both sides see the split
//     within `release_after` minus their own worst-case time to decide;
//   * the lease name is used by LeaseMajority only.
//
// Thread-safety: Decide() and every other method are safe from any thread.
// Decide() never blocks and never runs user code.
#ifndef LEASEHOLD_LEASE_MAJORITY_H_
#define LEASEHOLD_LEASE_MAJORITY_H_

#include <cstdint>
#include <memory>
#include <string>

#include "leasehold/clock.h"
#include "leasehold/lease.h"
#include "leasehold/partition.h"
#include "leasehold/status.h"

namespace leasehold {

// Zero durations mean "the default" where one is documented.
struct LeaseMajorityOptions {
  // Only members with this role count and can decide (empty: all). Members
  // without it are downed with their side.
  std::string role{};
  // The view must be unchanged this long before any decision. >= 0.
  Duration stable_after{0};
  // Extra wait before the decider of the side with fewer members in total
  // (on an equal split of counted members) tries the lease. >= 0.
  Duration minority_delay{0};
  // An attempt still pending this long after it started is abandoned (and
  // tracked). Default: twice the lease's request_timeout. A decision needs the
  // store to answer one request within it.
  Duration acquire_timeout{0};
  // After an attempt failed with an error, the next starts no earlier than
  // this. Default: the lease's request_timeout. >= 0.
  Duration retry_interval{0};
  // How often a non-deciding member reads the lease record while undecided.
  // Default: the lease's renew_interval. Must be > 0.
  Duration poll_interval{0};
  // A winner keeps the lease at least this long after winning, and releases
  // it at the first moment after that when its view has nobody unreachable.
  // Default: stable_after + minority_delay + acquire_timeout + retry_interval
  // + 2 * request_timeout + 2 * poll_interval + 3 * ttl + 2 * drift + ttl/50 --
  // the other side's worst-case time to decide plus the adoption window of
  // either side's non-deciders (docs/lease-majority.md, Timings). Must be
  // >= 0; 0 takes the default.
  Duration release_after{0};
};

// Counters, for tests and operators.
struct LeaseMajorityStats {
  uint64_t attempts{0};         // acquires started
  uint64_t abandoned{0};        // attempts abandoned (timeout or view change)
  uint64_t released{0};         // releases started (late wins, after a decision)
  uint64_t failed_releases{0};  // releases the store could not confirm
  uint64_t record_reads{0};     // Inspect() calls of non-deciders
};

class LeaseMajority final : public DowningStrategy {
 public:
  // `lease`: owner must equal the address this member uses as PartitionView::self
  // (checked by Decide()). Validates `options` (kInvalidArgument naming the
  // field and the value). No IO. Retains the lease.
  static Result<std::unique_ptr<LeaseMajority>> Create(std::shared_ptr<Lease> lease,
                                                       LeaseMajorityOptions options = {});

  // Abandons a pending attempt (released by the Lease itself if it lands); a
  // held lease is released when the last reference to the Lease goes.
  ~LeaseMajority() override;
  LeaseMajority(const LeaseMajority&) = delete;
  LeaseMajority& operator=(const LeaseMajority&) = delete;

  // See the header comment. Retains the decision for the view until the view
  // changes (any difference in members, statuses, roles or reachability).
  Decision Decide(const PartitionView& view) override;

  // The options as validated, with defaults filled in.
  const LeaseMajorityOptions& options() const noexcept;
  LeaseMajorityStats stats() const;

 private:
  struct Impl;
  explicit LeaseMajority(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_{};
};

}  // namespace leasehold

#endif  // LEASEHOLD_LEASE_MAJORITY_H_
