#include "leasehold/partition.h"

#include <map>

namespace leasehold {

std::string_view DecisionKindName(DecisionKind kind) noexcept {
  switch (kind) {
    case DecisionKind::kNoDecision:
      return "no decision";
    case DecisionKind::kNothingToDecide:
      return "nothing to decide";
    case DecisionKind::kInvalidView:
      return "invalid view";
    case DecisionKind::kDownUnreachable:
      return "down the unreachable side";
    case DecisionKind::kDownOwnSide:
      return "down our own side";
    case DecisionKind::kDownAll:
      return "down both sides";
  }
  return "unknown";
}

SidesResult SplitView(const PartitionView& view, const std::string& role) {
  SidesResult out;
  std::map<std::string, const Member*> by_address;
  for (const Member& m : view.members) {
    if (m.address.empty()) {
      out.error = "a member has an empty address";
      return out;
    }
    if (!by_address.emplace(m.address, &m).second) {
      out.error = "member \"" + m.address + "\" appears twice";
      return out;
    }
  }
  auto self = by_address.find(view.self);
  if (view.self.empty() || self == by_address.end()) {
    out.error = "self \"" + view.self + "\" is not a member";
    return out;
  }
  auto gone = [](const Member& m) {
    return m.status == MemberStatus::kDown || m.status == MemberStatus::kRemoved;
  };
  if (gone(*self->second)) {
    out.error = "self \"" + view.self + "\" is down or removed";
    return out;
  }
  if (view.unreachable.count(view.self) != 0) {
    out.error = "self \"" + view.self + "\" is in the unreachable set";
    return out;
  }
  for (const std::string& u : view.unreachable) {
    if (by_address.count(u) == 0) {
      out.error = "unreachable \"" + u + "\" is not a member";
      return out;
    }
  }
  Sides s;
  for (const auto& [address, m] : by_address) {  // ascending addresses
    if (gone(*m)) continue;
    const bool counts = (m->status == MemberStatus::kUp || m->status == MemberStatus::kLeaving) &&
                        (role.empty() || m->roles.count(role) != 0);
    if (view.unreachable.count(address) != 0) {
      s.other.insert(address);
      if (counts) {
        if (s.other_counted++ == 0) s.other_lowest = address;
      }
    } else {
      s.own.insert(address);
      if (counts) {
        if (s.own_counted++ == 0) s.own_lowest = address;
      }
    }
  }
  out.sides = std::move(s);
  return out;
}

Decision KeepMajority::Decide(const PartitionView& view) {
  Decision d;
  SidesResult split = SplitView(view, options_.role);
  if (!split.sides) {
    d.kind = DecisionKind::kInvalidView;
    d.explanation = "invalid view: " + split.error;
    return d;
  }
  const Sides& s = *split.sides;
  if (s.other.empty()) {
    d.kind = DecisionKind::kNothingToDecide;
    d.explanation = "nobody is unreachable";
    return d;
  }
  const std::string counts = std::to_string(s.own_counted) + " counted members here, " +
                             std::to_string(s.other_counted) + " unreachable";
  if (s.own_counted > s.other_counted) {
    d.kind = DecisionKind::kDownUnreachable;
    d.down = s.other;
    d.explanation = "strict majority: " + counts;
  } else if (s.own_counted < s.other_counted) {
    d.kind = DecisionKind::kDownOwnSide;
    d.down = s.own;
    d.explanation = "strict minority: " + counts;
  } else if (s.own_counted == 0) {
    d.kind = DecisionKind::kNoDecision;
    d.explanation = "no member counts on either side (role \"" + options_.role + "\")";
  } else {
    d.kind = DecisionKind::kDownAll;
    d.down = s.own;
    d.down.insert(s.other.begin(), s.other.end());
    d.explanation = "exact tie, neither side can know it is alone: " + counts;
  }
  return d;
}

}  // namespace leasehold
