// leasehold: partition views and split-brain strategies.
//
// When a cluster's membership layer (gossip, a failure detector) sees some
// members as unreachable it cannot tell a crash from a network partition: the
// unreachable members may be alive on the other side of a split, and deciding
// for the cluster there too. A split-brain strategy turns one member's view of
// the partition into a decision: the set of members to down. Each member asks
// its own strategy; the membership layer downs what the answer names.
//
//   leasehold::PartitionView view{.self = "10.0.0.1:7000",
//                                 .members = {...},
//                                 .unreachable = {"10.0.0.3:7000"}};
//   leasehold::Decision d = strategy.Decide(view);
//   if (d.decided()) membership.Down(d.down);   // otherwise ask again later
//
// A view has two sides: our side (self and every member not in `unreachable`)
// and the other side (the members in `unreachable`). Members whose status is
// kDown or kRemoved are gone and belong to neither. A decision downs a whole
// side (or, for KeepMajority on an exact tie, both).
//
// Strategies are called repeatedly -- on every view change and periodically --
// and never block. An empty decision means "no decision yet, ask again".
//
// Safety assumption shared by every strategy: the members of one side see the
// same partition (their views agree once the failure detector has converged).
// A strategy cannot protect against asymmetric views in which two members on
// different sides of a real split each believe the other is on their side.
//
// Thread-safety: the view types are values. Strategies document their own.
#ifndef LEASEHOLD_PARTITION_H_
#define LEASEHOLD_PARTITION_H_

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "leasehold/fencing.h"

namespace leasehold {

// Lifecycle of a member, as the membership layer reports it.
enum class MemberStatus {
  kJoining,  // on a side, not counted
  kUp,       // counted
  kLeaving,  // counted (still serving)
  kExiting,  // on a side, not counted
  kDown,     // gone: on no side
  kRemoved,  // gone: on no side
};

struct Member {
  // Unique within a view; ordered as strings (the lowest address is a side's
  // decider, see lease_majority.h).
  std::string address{};
  MemberStatus status{MemberStatus::kUp};
  std::set<std::string> roles{};
};

// One member's view of the cluster.
struct PartitionView {
  // The member asking; must be one of `members`, with a status other than
  // kDown/kRemoved, and not unreachable.
  std::string self{};
  std::vector<Member> members{};
  // Addresses of members this member cannot reach; each must be in `members`.
  std::set<std::string> unreachable{};
};

enum class DecisionKind {
  kNoDecision,       // not yet: ask again (down is empty)
  kNothingToDecide,  // nobody is unreachable (down is empty)
  kInvalidView,      // the view breaks a rule above (down is empty)
  kDownUnreachable,  // our side survives
  kDownOwnSide,      // the other side survives
  kDownAll,          // neither survives
};

// "no decision", "nothing to decide", ...
std::string_view DecisionKindName(DecisionKind kind) noexcept;

struct Decision {
  DecisionKind kind{DecisionKind::kNoDecision};
  // The members to down; empty means no decision.
  std::set<std::string> down{};
  // For a decision won through a lease that issues fencing tokens: the
  // tenure's token, so downing writes can be fenced.
  std::optional<FencingToken> token{};
  // Why, for logs and operators.
  std::string explanation{};

  bool decided() const noexcept { return !down.empty(); }
};

// The interface every split-brain strategy implements.
class DowningStrategy {
 public:
  virtual ~DowningStrategy() = default;
  // Returns the members to down given `view`, or an empty decision. Never
  // blocks. See each implementation for what it retains between calls.
  virtual Decision Decide(const PartitionView& view) = 0;
};

// The two sides of a view, after the role filter. Exposed for strategies and
// tests; Decide() computes it itself.
struct Sides {
  std::set<std::string> own{};    // self's side: every live member not unreachable
  std::set<std::string> other{};  // every live unreachable member
  int own_counted{0};             // members of `own` that count (status, role)
  int other_counted{0};
  // The lowest-addressed counted member of each side; empty if none counts.
  std::string own_lowest{};
  std::string other_lowest{};
};

// Validates `view` and splits it. kInvalidArgument names the broken rule.
// A member counts when its status is kUp or kLeaving and, if `role` is not
// empty, it has that role.
struct SidesResult {
  std::optional<Sides> sides{};
  std::string error{};  // set when the view is invalid
};
SidesResult SplitView(const PartitionView& view, const std::string& role);

struct KeepMajorityOptions {
  // Only members with this role count (empty: all do). Members without it are
  // still downed with their side.
  std::string role{};
};

// The lease-free baseline: a strict majority downs the unreachable side, a
// strict minority downs its own, an exact tie downs both (neither side can
// know it is the only survivor). Decides at once; keeps no state.
// Thread-safety: safe from any thread.
class KeepMajority final : public DowningStrategy {
 public:
  explicit KeepMajority(KeepMajorityOptions options = {}) : options_(std::move(options)) {}
  Decision Decide(const PartitionView& view) override;

 private:
  KeepMajorityOptions options_{};
};

}  // namespace leasehold

#endif  // LEASEHOLD_PARTITION_H_
