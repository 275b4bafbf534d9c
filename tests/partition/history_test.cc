// The partition checker must catch every violation it claims to, with the
// evidence, and parse nothing it does not understand.
#include "history.h"

#include <gtest/gtest.h>

#include <fstream>

#include "testing/temp_dir.h"

namespace leasehold::partition {
namespace {

History Parse(const std::vector<std::pair<std::string, std::string>>& holder_logs,
              const std::string& writes = "") {
  History h;
  for (const auto& [holder, text] : holder_logs) {
    Status s = ParseHolderLog(text, holder, holder + ".log", &h);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  Status s = ParseWriteLog(writes, "writes", &h);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return h;
}

TEST(HistoryTest, HandOffsWithoutOverlapPass) {
  const History h = Parse({{"h0",
                            "acquired 1 100\nalive 1 150\nalive 1 200\nended 1 210 lost\n"
                            "acquired 3 500\nalive 3 600\nended 3 650 released\n"},
                           {"h1", "acquired 2 300\nalive 2 400\nended 2 401 released\n"}},
                          "150 1 admitted h0\n400 2 admitted h1\n420 1 rejected h0\n"
                          "600 3 admitted h0\n");
  const Verdict v = Check(h);
  EXPECT_TRUE(v.ok()) << v.problems.front();
  EXPECT_EQ(v.tenures, 3);
  EXPECT_EQ(v.writes_admitted, 3);
  EXPECT_EQ(v.stale_writes_rejected, 1);
  EXPECT_EQ(v.stale_writes_accepted, 0);
}

TEST(HistoryTest, TwoHoldersBelievingAtOnceIsAnOverlap) {
  // h1 acquires at 180 while h0 still saw itself alive at 200.
  const History h = Parse({{"h0", "acquired 1 100\nalive 1 200\nended 1 300 lost\n"},
                           {"h1", "acquired 2 180\nalive 2 250\n"}});
  const Verdict v = Check(h);
  EXPECT_EQ(v.overlaps, 1);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.problems[0].find("two holders: h1 seq 2"), std::string::npos) << v.problems[0];
}

TEST(HistoryTest, AnOverlapWithAnEarlierLongTenureIsFound) {
  // h0's long tenure covers h2's, although h1's shorter one sits between.
  const History h = Parse({{"h0", "acquired 1 100\nalive 1 1000\n"},
                           {"h1", "acquired 2 200\nalive 2 300\n"},
                           {"h2", "acquired 3 500\nalive 3 600\n"}});
  EXPECT_EQ(Check(h).overlaps, 2);
}

TEST(HistoryTest, ARepeatedOrBackwardSequenceIsFound) {
  const History repeated = Parse({{"h0", "acquired 5 100\nalive 5 110\nended 5 120 released\n"},
                                  {"h1", "acquired 5 200\nalive 5 210\n"}});
  EXPECT_EQ(Check(repeated).repeated_sequences, 1);
  const History backward = Parse({{"h0", "acquired 5 100\nalive 5 110\nended 5 120 released\n"},
                                  {"h1", "acquired 4 200\nalive 4 210\n"}});
  const Verdict v = Check(backward);
  EXPECT_EQ(v.backward_sequences, 1);
  EXPECT_FALSE(v.ok());
}

TEST(HistoryTest, AStaleWriteTheFenceAdmittedIsFound) {
  const History h = Parse({}, "10 2 admitted h1\n20 1 admitted h0\n30 3 admitted h2\n");
  const Verdict v = Check(h);
  EXPECT_EQ(v.stale_writes_accepted, 1);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.problems[0].find("h0 seq 1 after h1 seq 2"), std::string::npos) << v.problems[0];
}

TEST(HistoryTest, HeldAgainIsTheFirstAliveMomentAfterTheHeal) {
  const History h = Parse({{"h0", "acquired 1 100\nalive 1 200\nended 1 210 lost\n"},
                           {"h1", "acquired 2 900\nalive 2 950\n"}});
  EXPECT_EQ(HeldAgainAfterNs(h, 500), 400);  // h1 from its acquire
  EXPECT_EQ(HeldAgainAfterNs(h, 920), 0);    // h1 already held at the heal
  EXPECT_FALSE(HeldAgainAfterNs(h, 1000).has_value());
}

TEST(HistoryTest, MalformedRecordsAreRefusedNamingTheLine) {
  History h;
  Status s = ParseHolderLog("acquired 1 100\nalive x 3\n", "h0", "h0.log", &h);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("h0.log:2"), std::string::npos) << s.ToString();
  EXPECT_EQ(ParseHolderLog("alive 7 100\n", "h0", "h0.log", &h).code(), StatusCode::kDataLoss);
  EXPECT_EQ(ParseHolderLog("acquired 8 100\nalive 8 50\n", "h0", "h0.log", &h).code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(ParseHolderLog("acquired 9 100\nended 9 200 vanished\n", "h0", "h0.log", &h).code(),
            StatusCode::kDataLoss);
  EXPECT_EQ(ParseWriteLog("10 2 maybe h1\n", "writes", &h).code(), StatusCode::kDataLoss);
}

TEST(HistoryTest, ReadHistoryReadsEveryHolderLogOfADirectory) {
  testing::TempDir dir("history");
  std::ofstream(dir.File("holder-h0.log")) << "acquired 1 100\nalive 1 200\nended 1 210 lost\n";
  std::ofstream(dir.File("holder-h1.log")) << "acquired 2 300\nalive 2 400\n";
  std::ofstream(dir.File("holder-h1.out")) << "not a log\n";
  std::ofstream(dir.File("writes")) << "200 1 admitted h0\n400 2 admitted h1\n";
  auto h = ReadHistory(dir.path());
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  ASSERT_EQ(h->tenures.size(), 2u);
  EXPECT_EQ(h->tenures[1].holder, "h1");
  EXPECT_EQ(h->writes.size(), 2u);
  EXPECT_TRUE(Check(*h).ok());
}

}  // namespace
}  // namespace leasehold::partition
