// KeepMajority, the lease-free baseline, and the view rules every strategy shares.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "leasehold/partition.h"
#include "test_util.h"

namespace leasehold {
namespace {

using ::testing::HasSubstr;
using testing::Set;
using testing::Split;

TEST(KeepMajorityTest, AStrictMajorityDownsTheUnreachableSide) {
  KeepMajority s;
  Decision d = s.Decide(Split("a", {"a", "b", "c"}, {"d", "e"}));
  EXPECT_EQ(d.kind, DecisionKind::kDownUnreachable);
  EXPECT_EQ(d.down, Set({"d", "e"}));
}

TEST(KeepMajorityTest, AStrictMinorityDownsItsOwnSide) {
  KeepMajority s;
  Decision d = s.Decide(Split("d", {"d", "e"}, {"a", "b", "c"}));
  EXPECT_EQ(d.kind, DecisionKind::kDownOwnSide);
  EXPECT_EQ(d.down, Set({"d", "e"}));
}

TEST(KeepMajorityTest, AnExactTieDownsBothSides) {
  KeepMajority s;
  Decision d = s.Decide(Split("a", {"a", "b"}, {"c", "d"}));
  EXPECT_EQ(d.kind, DecisionKind::kDownAll);
  EXPECT_EQ(d.down, Set({"a", "b", "c", "d"}));
}

TEST(KeepMajorityTest, NobodyUnreachableIsNothingToDecide) {
  KeepMajority s;
  Decision d = s.Decide(Split("a", {"a", "b"}, {}));
  EXPECT_EQ(d.kind, DecisionKind::kNothingToDecide);
  EXPECT_FALSE(d.decided());
}

TEST(KeepMajorityTest, ARoleFilterCountsOnlyMembersWithTheRoleButDownsWholeSides) {
  KeepMajority s({.role = "db"});
  Decision d = s.Decide(Split("a", {"a", "b", "c"}, {"d", "e"}, {"a", "d", "e"}, "db"));
  EXPECT_EQ(d.kind, DecisionKind::kDownOwnSide);
  EXPECT_EQ(d.down, Set({"a", "b", "c"}));
}

TEST(KeepMajorityTest, JoiningAndExitingMembersDoNotCountAndDownMembersAreOnNoSide) {
  KeepMajority s;
  auto v = Split("a", {"a", "b", "c"}, {"d", "e"});
  v.members[1].status = MemberStatus::kJoining;  // b
  v.members[2].status = MemberStatus::kDown;     // c
  Decision d = s.Decide(v);                      // 1 counted here against 2
  EXPECT_EQ(d.kind, DecisionKind::kDownOwnSide);
  EXPECT_EQ(d.down, Set({"a", "b"}));
}

TEST(KeepMajorityTest, InvalidViewsAreRejectedNamingTheRule) {
  KeepMajority s;
  EXPECT_THAT(s.Decide(Split("x", {"a"}, {"b"})).explanation, HasSubstr("not a member"));
  auto self_unreachable = Split("a", {"a"}, {"b"});
  self_unreachable.unreachable.insert("a");
  EXPECT_EQ(s.Decide(self_unreachable).kind, DecisionKind::kInvalidView);
  auto unknown = Split("a", {"a"}, {"b"});
  unknown.unreachable.insert("zz");
  EXPECT_THAT(s.Decide(unknown).explanation, HasSubstr("\"zz\" is not a member"));
  auto twice = Split("a", {"a", "a"}, {"b"});
  EXPECT_THAT(s.Decide(twice).explanation, HasSubstr("twice"));
}

}  // namespace
}  // namespace leasehold
