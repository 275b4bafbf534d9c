#include "leasehold/fencing.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
#include <vector>

namespace leasehold {
namespace {

using ::testing::HasSubstr;

TEST(FencingTokenTest, TokensAreEqualOnlyWhenValueAndSequenceBothMatch) {
  EXPECT_EQ((FencingToken{"a", 1}), (FencingToken{"a", 1}));
  EXPECT_NE((FencingToken{"a", 1}), (FencingToken{"a", 2}));
  EXPECT_NE((FencingToken{"a", 1}), (FencingToken{"b", 1}));
}

TEST(FenceTest, AFreshFenceHasSeenNothingAndAdmitsAnySequence) {
  Fence fence;
  EXPECT_EQ(fence.highest(), 0u);
  EXPECT_TRUE(fence.Admit(0).ok());
  EXPECT_TRUE(fence.Admit(1).ok());
  EXPECT_EQ(fence.highest(), 1u);
}

TEST(FenceTest, AdmitsIncreasingSequencesAndRecordsTheHighest) {
  Fence fence;
  for (uint64_t s : {3u, 4u, 10u, 11u, 1000u}) {
    EXPECT_TRUE(fence.Admit(s).ok()) << s;
    EXPECT_EQ(fence.highest(), s);
  }
}

TEST(FenceTest, AdmitsTheSameSequenceRepeatedly) {
  Fence fence;
  ASSERT_TRUE(fence.Admit(7).ok());
  EXPECT_TRUE(fence.Admit(7).ok());
  EXPECT_TRUE(fence.Admit(7).ok());
  EXPECT_EQ(fence.highest(), 7u);
}

TEST(FenceTest, RejectsALowerSequenceWithFailedPreconditionNamingBothNumbers) {
  Fence fence;
  ASSERT_TRUE(fence.Admit(97).ok());
  Status s = fence.Admit(41);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("41"));
  EXPECT_THAT(s.message(), HasSubstr("97"));
  EXPECT_EQ(fence.highest(), 97u) << "a rejected sequence must not move the fence";
}

TEST(FenceTest, AStaleHolderStaysRejectedAfterANewerOneWrote) {
  Fence fence;
  ASSERT_TRUE(fence.Admit(1).ok());  // old tenure
  ASSERT_TRUE(fence.Admit(2).ok());  // new tenure
  EXPECT_FALSE(fence.Admit(1).ok());
  EXPECT_TRUE(fence.Admit(2).ok());
  EXPECT_FALSE(fence.Admit(1).ok());
}

TEST(FenceTest, AFenceRestoredFromStorageRejectsSequencesBelowIt) {
  Fence fence(50);
  EXPECT_EQ(fence.highest(), 50u);
  EXPECT_EQ(fence.Admit(49).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(fence.Admit(0).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(fence.Admit(50).ok());
  EXPECT_TRUE(fence.Admit(51).ok());
}

TEST(FenceTest, HandlesTheLargestSequence) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  Fence fence;
  EXPECT_TRUE(fence.Admit(kMax).ok());
  EXPECT_TRUE(fence.Admit(kMax).ok());
  Status s = fence.Admit(kMax - 1);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr(std::to_string(kMax)));
  EXPECT_THAT(s.message(), HasSubstr(std::to_string(kMax - 1)));
}

TEST(FenceTest, ConcurrentAdmitsNeverLowerTheHighestNorAdmitAStaleSequence) {
  constexpr int kThreads = 4;
  constexpr uint64_t kPerThread = 20000;
  Fence fence;
  // The highest sequence whose admission has completed: any Admit that starts
  // after reading it must reject anything lower.
  std::atomic<uint64_t> confirmed{0};
  std::atomic<bool> stale_admitted{false};
  std::atomic<bool> lowered{false};
  std::atomic<bool> wrongly_rejected{false};
  std::atomic<bool> stop_watching{false};

  std::thread watcher([&] {
    uint64_t last = 0;
    while (!stop_watching.load()) {
      uint64_t now = fence.highest();
      if (now < last) lowered = true;
      last = now;
    }
  });

  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      // Interleaved, mostly increasing sequences with regular stale retries:
      // thread t writes t+1, t+1+kThreads, ... and every few writes re-sends an
      // older one.
      for (uint64_t i = 0; i < kPerThread; ++i) {
        uint64_t seq = 1 + t + i * kThreads;
        if (i % 5 == 2) seq = seq > 3 * kThreads ? seq - 3 * kThreads : 0;
        const uint64_t floor = confirmed.load();
        Status s = fence.Admit(seq);
        if (s.ok()) {
          if (seq < floor) stale_admitted = true;
          if (fence.highest() < seq) lowered = true;
          uint64_t c = confirmed.load();
          while (c < seq && !confirmed.compare_exchange_weak(c, seq)) {
          }
        } else if (fence.highest() <= seq) {
          // Rejection means something higher had been admitted, and highest()
          // never goes down.
          wrongly_rejected = true;
        }
      }
    });
  }
  for (auto& w : writers) w.join();
  stop_watching = true;
  watcher.join();

  EXPECT_FALSE(lowered) << "highest() went down";
  EXPECT_FALSE(stale_admitted) << "a sequence lower than an admitted one was admitted";
  EXPECT_FALSE(wrongly_rejected) << "a sequence was rejected with nothing higher admitted";
  EXPECT_EQ(fence.highest(), kThreads * kPerThread) << "the largest sequence sent was lost";
}

}  // namespace
}  // namespace leasehold
