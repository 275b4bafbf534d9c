#include "kit/observations.h"

#include <gtest/gtest.h>

namespace leasehold::kit {
namespace {

using namespace std::chrono_literals;

TEST(ObservationBookTest, CountsFromTheFirstReadOfAVersion) {
  ObservationBook book;
  const TimePoint t0{};
  EXPECT_EQ(book.Observe("s|x", "1", t0), Duration::zero());
  EXPECT_EQ(book.Observe("s|x", "1", t0 + 3s), 3s);
  EXPECT_EQ(book.Observe("s|x", "2", t0 + 4s), Duration::zero());  // changed: start again
  EXPECT_EQ(book.Observe("s|x", "2", t0 + 5s), 1s);
  EXPECT_EQ(book.Observe("s|y", "2", t0 + 5s), Duration::zero());  // another record
}

TEST(ObservationBookTest, StoresOfOneRuntimeShareABookAndOthersDoNot) {
  auto sim = SimulatedRuntime::Create();
  auto other = SimulatedRuntime::Create();
  auto real = Runtime::Create();
  EXPECT_EQ(ObservationBook::For(true, sim), ObservationBook::For(true, sim));
  EXPECT_NE(ObservationBook::For(true, sim), ObservationBook::For(true, other));
  EXPECT_NE(ObservationBook::For(false, sim), ObservationBook::For(false, sim));
  // Every store on the real clock shares one book, whichever runtime.
  EXPECT_EQ(ObservationBook::For(true, real), ObservationBook::For(true, Runtime::Default()));
  // A runtime that is gone takes its book's sharing with it.
  auto kept = ObservationBook::For(true, other);
  kept->Observe("k", "v", TimePoint{});
  other.reset();
  auto again = SimulatedRuntime::Create();
  EXPECT_NE(ObservationBook::For(true, again), kept);
}

TEST(ObservationWindowTest, TheRecordsTtlCappedAtAFactorOfOurs) {
  EXPECT_EQ(ObservationWindow(5s, 10s, 2.0), 5s);
  EXPECT_EQ(ObservationWindow(60s, 10s, 2.0), 20s);
  EXPECT_EQ(ObservationWindow(std::nullopt, 10s, 2.0), 20s);
  EXPECT_EQ(ObservationWindow(-1s, 10s, 1.0), 10s);
  EXPECT_EQ(ObservationWindow(Duration::max(), 1s, 1000.0), 1000s);
}

}  // namespace
}  // namespace leasehold::kit
