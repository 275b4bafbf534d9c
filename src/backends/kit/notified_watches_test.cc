#include "kit/notified_watches.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "leasehold/runtime.h"

namespace leasehold::kit {
namespace {

class NotifiedWatchesTest : public ::testing::Test {
 protected:
  // Registers a watcher of `name` that counts its firings in fired[name].
  NotifiedWatches::Added Watch(const std::string& name, uint64_t heard_before) {
    return watches_.Watch(name, "v", heard_before, [this, name] { ++fired_[name]; });
  }
  int Fired(const std::string& name) {
    sim_->RunUntilIdle();
    return fired_[name];
  }

  std::shared_ptr<SimulatedRuntime> sim_ = SimulatedRuntime::Create();
  NotifiedWatches watches_{sim_};
  std::map<std::string, int> fired_;
};

TEST_F(NotifiedWatchesTest, WhileDeafTheFirstWatchAsksForPollingAndPollsReportChanges) {
  auto a = Watch("a", watches_.Heard());
  auto b = Watch("b", watches_.Heard());
  EXPECT_TRUE(a.start_polling);
  EXPECT_FALSE(b.start_polling) << "one poll loop is enough";
  EXPECT_EQ(watches_.Snapshot().size(), 2u);
  EXPECT_TRUE(watches_.Polled({a.id})) << "b still waits and nobody listens";
  EXPECT_EQ(Fired("a"), 1);
  EXPECT_EQ(Fired("b"), 0);
  EXPECT_FALSE(watches_.Polled({b.id})) << "nobody waits any more";
  EXPECT_EQ(Fired("b"), 1);
  EXPECT_TRUE(Watch("c", watches_.Heard()).start_polling) << "the loop ended: start it again";
}

TEST_F(NotifiedWatchesTest, SubscribingFiresEveryWatcherAndANotificationOnlyItsName) {
  Watch("a", watches_.Heard());
  watches_.OnUp();
  EXPECT_EQ(Fired("a"), 1) << "a read from before the subscription is stale";
  const uint64_t before = watches_.Heard();
  EXPECT_FALSE(Watch("a", before).start_polling);
  Watch("b", before);
  watches_.OnNotify("a");
  EXPECT_EQ(Fired("a"), 2);
  EXPECT_EQ(Fired("b"), 0);
  watches_.OnDown();
  EXPECT_EQ(Fired("b"), 1) << "deaf: every watcher reads again";
}

TEST_F(NotifiedWatchesTest, AChangeHeardBetweenTheReadAndTheWatchFiresAtOnce) {
  watches_.OnUp();
  const uint64_t read_at = watches_.Heard();
  watches_.OnNotify("a");  // after the read, before the watch
  watches_.OnNotify("b");
  Watch("a", read_at);
  EXPECT_EQ(Fired("a"), 1);
  // A read after the notification is current: that watcher waits.
  Watch("a", watches_.Heard());
  EXPECT_EQ(Fired("a"), 1);
}

TEST_F(NotifiedWatchesTest, ACancelledWatcherNeverFires) {
  watches_.OnUp();
  auto a = Watch("a", watches_.Heard());
  watches_.Cancel(a.id);
  watches_.OnNotify("a");
  EXPECT_EQ(Fired("a"), 0);
}

TEST(StampVersionTest, RoundTripsAndToleratesWhatItDidNotMake) {
  EXPECT_EQ(UnstampVersion(StampVersion("17", 4)), std::make_pair(std::string("17"), uint64_t{4}));
  EXPECT_EQ(UnstampVersion(StampVersion("a@b", 9)),
            std::make_pair(std::string("a@b"), uint64_t{9}));
  EXPECT_EQ(UnstampVersion("17"), std::make_pair(std::string("17"), uint64_t{0}));
  EXPECT_EQ(UnstampVersion("17@x"), std::make_pair(std::string("17@x"), uint64_t{0}));
}

}  // namespace
}  // namespace leasehold::kit
