// leasehold: leader election on a Lease.
//
// A LeaderElector campaigns for a Lease and tells the application, through
// callbacks modelled on client-go's leaderelection, when it starts and stops
// leading and who leads:
//
//   auto elector = leasehold::LeaderElector::Create(lease, {
//       .retry_period = 2s,
//       .callbacks = {
//           .on_started_leading = [](const FencingToken& t, std::stop_token stop) {
//             StartWorker(t.sequence, stop);     // return promptly; stop when `stop` fires
//           },
//           .on_stopped_leading = [] { Log("not leading"); },
//           .on_new_leader = [](const std::string& id) { Log("leader: " + id); },
//       }});
//   (*elector)->Start();
//   ...
//   (*elector)->Shutdown();                      // releases after the leader's callback returned
//
// Behaviour:
//   * Campaigning is a waiting acquire (AcquireOptions::wait): the store's
//     watch wakes it when the lease frees up. Errors inside the campaign are
//     retried by the Lease (after LeaseOptions::retry_delay, backing off);
//     a campaign that ends without a win starts again after `retry_period`.
//   * on_started_leading(token, stop) runs once per tenure; `stop` is
//     triggered when that tenure ends for any reason (lost, Shutdown()).
//     on_stopped_leading() runs after it, once per tenure. After a loss the
//     elector campaigns again unless `recampaign` is false.
//   * on_new_leader(identity) runs whenever the observed holder changes to
//     someone (including us). The holder is read from the store every
//     `retry_period`; our own wins and losses count as observations too.
//     Observations are ordered by when they were made (a read by its send
//     time): a read sent before our win never reports the previous holder
//     after it, and never runs on_new_leader twice for one term.
//   * Shutdown() stops campaigning; if leading it triggers `stop`, waits until
//     on_started_leading has returned, releases the lease, then runs
//     on_stopped_leading.
//   * CheckHealth() tells whether renewal is progressing while leading.
// Works on every Store (no fencing: the token is empty with sequence 0).
//
// Callbacks run on the runtime's callback lane (Runtime::PostCallback), one at
// a time, in order, never under an internal lock. They must return promptly:
// a callback that blocks holds up the Lease's OnLost handlers too. An
// exception escaping one is contained.
//
// Safety: the same as the Lease's (lease.h): leadership as seen by
// CheckAlive() ends no later than the safe deadline; a leader whose writes
// must never land after its tenure fences them with the token's sequence.
//
// Thread-safety: every method is safe from any thread. Shutdown() (and the
// destructor) block until the release is done, except when called from a
// callback, where they return at once and finish after it returns; do not
// call them from a runtime loop thread.
#ifndef LEASEHOLD_LEADER_ELECTOR_H_
#define LEASEHOLD_LEADER_ELECTOR_H_

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <stop_token>
#include <string>

#include "leasehold/clock.h"
#include "leasehold/fencing.h"
#include "leasehold/lease.h"
#include "leasehold/status.h"

namespace leasehold {

struct LeaderCallbacks {
  std::function<void(const FencingToken& token, std::stop_token stop)> on_started_leading{};
  std::function<void()> on_stopped_leading{};
  std::function<void(const std::string& identity)> on_new_leader{};
};

struct LeaderElectorOptions {
  // How often to read who leads, and the delay before a campaign that ended
  // without a win starts again. Must be > 0 and below the lease's TTL.
  Duration retry_period{std::chrono::seconds(2)};
  // Campaign again after losing leadership.
  bool recampaign{true};
  // CheckHealth() fails when the last successful renewal is older than
  // renew_interval + request_timeout + this. Must be >= 0.
  Duration health_tolerance{0};
  LeaderCallbacks callbacks{};
};

class LeaderElector {
 public:
  // Validates `options` (kInvalidArgument naming the field and the value).
  // No IO until Start(). Retains the lease.
  static Result<std::unique_ptr<LeaderElector>> Create(std::shared_ptr<Lease> lease,
                                                       LeaderElectorOptions options);

  // Shutdown().
  ~LeaderElector();
  LeaderElector(const LeaderElector&) = delete;
  LeaderElector& operator=(const LeaderElector&) = delete;

  // Starts campaigning and observing. Idempotent; no effect after Shutdown().
  void Start();
  // See the header comment. Idempotent.
  void Shutdown();

  // True while we lead (the lease's CheckAlive(), local, no IO).
  bool IsLeader() const noexcept;
  // Ours while leading. Otherwise the holder identity last observed, as of
  // no more than retry_period + the lease's request_timeout ago; nullopt if
  // none was seen, the lease was last seen free, or no read has succeeded
  // within that bound (a standby never reports an older holder).
  std::optional<std::string> CurrentLeader() const;
  // OK when not leading, or leading and renewal keeps up; kUnavailable naming
  // how long ago the last successful renewal was otherwise.
  Status CheckHealth() const;

 private:
  struct Impl;
  explicit LeaderElector(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_{};
};

}  // namespace leasehold

#endif  // LEASEHOLD_LEADER_ELECTOR_H_
